//! The README's library example, compiled with the tests so it stays true:
//! prune the zoo ResNet's filters by LRP with per-group rules on a 3-class task.
//!
//! cargo run --release --example library

use relprune::attribution::CriterionSpec;
use relprune::components::{ComponentKind, ComponentSet};
use relprune::data::fashion_mnist;
use relprune::experiment::{run_criterion, RunOptions, Task, TaskSpec};
use relprune::models::load_model;

fn main() -> relprune::Result<()> {
    let mut model = load_model("fmnist-resnet18", None, 0)?;
    let splits = fashion_mnist::load_splits(&fashion_mnist::resolve_dir(None))?;
    let task = Task::prepare(&splits, 10, &TaskSpec { classes: Some(3), ..TaskSpec::default() })?;
    let filters = ComponentSet::find(&model.graph, ComponentKind::Filters)?;
    let lrp = CriterionSpec::from_name("lrp", Some("low=zplus,mid=gamma:0.25"), 0)?;
    let result = run_criterion(&mut model.graph, &filters, &task, &lrp, &RunOptions::default(), &mut |_| {})?;
    println!("A_PR {:.3}", result.curve.summary.a_pr);
    Ok(())
}
