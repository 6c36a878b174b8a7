//! The README's library example, compiled with the tests so it stays true: curves of two
//! criteria on the zoo ResNet's filters on a 3-class task, then a model pruned to half its MACs,
//! through the same workflows the command line calls.
//!
//! cargo run --release --example library

use relprune::prelude::*;
use relprune::train::Silent;

fn main() -> relprune::Result<()> {
    let (model, data) = (ModelSource::named("fmnist-resnet18"), DataSource::default());
    let task = TaskSpec { classes: Some(3), ..TaskSpec::default() };
    let mut session = Session::open(&model, &data, &task, None)?;
    let lrp = CriterionSpec::from_name("lrp", Some("low=zplus,mid=gamma:0.25"), 0)?;
    let gradient = CriterionSpec::from_name("gradient", None, 0)?;
    let report = curves(&mut session, &[lrp.clone(), gradient], &RunOptions::default(), &mut ())?;
    for r in &report.results {
        println!("{:<40} A_PR {:.3}", r.criterion, r.curve.summary.a_pr);
    }
    let config = PruneConfig::new(lrp, Amount::Target("macs=0.5".parse::<Target>()?));
    let request = PruneRequest { model, data, task, component: None, config, out: "out/library".into() };
    let outcome = prune(&request, &mut Silent)?;
    let r = &outcome.pruned.report;
    println!("MACs {:.3}, accuracy {:?} → {:?}", r.macs_ratio, r.before.accuracy, r.after.accuracy);
    Ok(())
}
