//! `relprune info`: a model's layers, parameters and MACs.

use super::common::{thousands, ModelArgs, Output};
use clap::Args;

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Tokens per sample for the MACs of token models [range: 1..=the model's positions;
    /// default: 128, or the model's positions when fewer].
    #[arg(long, value_parser = super::ranges::size(1, 1 << 20))]
    seq_len: Option<i64>,
}

pub fn run(args: InfoArgs, out: &Output) -> anyhow::Result<()> {
    let report = relprune::workflow::info::model_info(args.model.load()?, args.seq_len)?;
    out.say(format!("{} ({})", report.model, report.origin));
    out.say(format!("{:<34} {:<18} {:<28} {:<20} {:>12}", "node", "kind", "detail", "output", "params"));
    for l in &report.layers {
        out.say(format!(
            "{:<34} {:<18} {:<28} {:<20} {:>12}",
            l.name,
            l.kind,
            l.detail,
            format!("{:?}", l.output_shape),
            if l.parameters > 0 { thousands(l.parameters) } else { String::new() }
        ));
    }
    out.say(format!("parameters: {}   MACs per sample: {}", thousands(report.parameters), thousands(report.macs)));
    if let Some(r) = &report.import {
        out.say(format!(
            "imported in {:.2} s: {} ONNX nodes → {} relprune nodes ({} folded into constants, {} reshapes / \
             transposes absorbed, {} unused); output equals the file's to {:.1e} (relative) on an example input",
            r.seconds,
            r.onnx_nodes,
            r.mapped.len(),
            r.folded,
            r.layout,
            r.dead,
            r.max_difference
        ));
        for f in &r.fused {
            out.say(format!("  fused: {f}"));
        }
    }
    out.emit(&report)
}
