//! `relprune demo`: the bundled demonstration.

use super::common::{progress, DataArgs, Output};
use clap::Args;
use relprune::evaluate::{count_correct, EvalOptions};
use relprune::models::Architecture;

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Test images to evaluate on.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
}

pub fn run(args: DemoArgs, out: &Output) -> anyhow::Result<()> {
    let splits = args.data.load()?;
    let arch = Architecture::parse("cifar_resnet18:width=16,in=1,size=28,classes=10")?;
    let g = arch.build(0)?;
    out.say(format!("model: {} (CIFAR-style ResNet-18, base width 16), {} parameters", arch.name(), g.num_parameters()));
    let test = splits.test.head(args.samples);
    let pb = progress(test.len() as u64, "evaluating");
    let correct = count_correct(&g, &test, &EvalOptions::default(), &mut |n| pb.set_position(n as u64))?;
    pb.finish_and_clear();
    let acc = correct as f64 / test.len() as f64;
    out.say(format!("untrained accuracy on {} Fashion-MNIST test images: {:.2} %", test.len(), 100.0 * acc));
    out.emit(&serde_json::json!({ "model": arch.name(), "samples": test.len(), "accuracy": acc }))
}
