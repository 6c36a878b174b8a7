//! `relprune info`: a model's layers, parameters and MACs.

use super::common::{thousands, ModelArgs, Output};
use clap::Args;
use relprune::graph::{stats, Mode};
use serde::Serialize;

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Tokens per sample for the MACs of token models [range: 1..=the model's positions;
    /// default: 128, or the model's positions when fewer].
    #[arg(long, value_parser = super::ranges::size(1, 1 << 20))]
    seq_len: Option<i64>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    import: Option<relprune::import::ImportReport>,
}

pub fn run(args: InfoArgs, out: &Output) -> anyhow::Result<()> {
    let m = args.model.load()?;
    let g = &m.graph;
    let seq_len = args.seq_len.unwrap_or_else(|| stats::max_tokens(g).unwrap_or(128).min(128));
    stats::check_seq_len(g, seq_len)?;
    let inputs = stats::example_inputs(g, seq_len);
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
        macs: stats::macs(g, seq_len)?,
        layers,
        import: m.import,
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
