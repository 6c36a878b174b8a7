//! `relprune info`: a model's layers, parameters and MACs.

use super::common::{thousands, ModelArgs, Output};
use clap::Args;
use relprune::graph::{stats, Mode};
use serde::Serialize;

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Tokens per sample for the MACs of token models [range: 1..=the model's positions].
    #[arg(long, default_value_t = 128, value_parser = super::ranges::size(1, 1 << 20))]
    seq_len: i64,
}

#[derive(Serialize)]
struct LayerRow {
    name: String,
    kind: String,
    detail: String,
    output_shape: Vec<i64>,
    parameters: i64,
}

#[derive(Serialize)]
struct InfoReport {
    model: String,
    origin: String,
    parameters: i64,
    macs: i64,
    layers: Vec<LayerRow>,
}

pub fn run(args: InfoArgs, out: &Output) -> anyhow::Result<()> {
    let m = args.model.load()?;
    let g = &m.graph;
    stats::check_seq_len(g, args.seq_len)?;
    let inputs = stats::example_inputs(g, args.seq_len);
    let values = tch::no_grad(|| g.forward_all(&inputs, Mode::Eval))?;
    let layers: Vec<LayerRow> = g
        .nodes()
        .iter()
        .enumerate()
        .map(|(id, n)| LayerRow {
            name: n.name.clone(),
            kind: n.op.kind_name().into(),
            detail: n.op.kind().describe(),
            output_shape: values[id].size(),
            parameters: n
                .op
                .kind()
                .params()
                .iter()
                .filter(|p| p.kind == relprune::graph::ParamKind::Weight)
                .map(|p| p.shape.iter().product::<i64>())
                .sum(),
        })
        .collect();
    let report = InfoReport {
        model: m.name.clone(),
        origin: m.origin.clone(),
        parameters: g.num_parameters(),
        macs: stats::macs(g, args.seq_len)?,
        layers,
    };
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
    out.emit(&report)
}
