//! `relprune run`: a model's outputs for given inputs, to check equivalence with another
//! framework in one line.

use super::common::{ModelArgs, Output};
use clap::Args;
use relprune::graph::{InputKind, Mode};
use serde::Serialize;
use std::path::PathBuf;
use tch::{Kind, Tensor};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A `.npy` array per model input, in the model's input order (images: float (N, C, H, W);
    /// token models: int token ids (N, T), then the int attention mask (N, T)); several after one
    /// `--input` (`--input ids.npy mask.npy`) or the flag repeated.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Write the output as a `.npy` array (float32) instead of printing it.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Serialize)]
struct RunReport {
    model: String,
    shape: Vec<i64>,
    /// The outputs, one row per sample.
    values: Vec<Vec<f32>>,
    /// The top class per sample.
    argmax: Vec<i64>,
}

/// Converts a user's array to what the input expects (float32 images, int64 tokens), or says
/// what it expects.
fn fit(t: Tensor, kind: &InputKind, path: &std::path::Path, index: usize) -> anyhow::Result<Tensor> {
    let t = match kind {
        InputKind::Image { .. } if t.is_floating_point() => t.to_kind(Kind::Float),
        InputKind::TokenIds { .. } | InputKind::AttentionMask { .. } if !t.is_floating_point() => {
            t.to_kind(Kind::Int64)
        }
        _ => t,
    };
    if !kind.accepts(&t) {
        anyhow::bail!(
            "{}: input {index} has shape {:?} ({:?}); the model expects {}",
            path.display(),
            t.size(),
            t.kind(),
            kind.expectation()
        );
    }
    Ok(t)
}

pub fn run(args: RunArgs, out: &Output) -> anyhow::Result<()> {
    let m = args.model.load()?;
    let g = &m.graph;
    let kinds = g.input_kinds();
    if args.input.len() != kinds.len() {
        anyhow::bail!(
            "{} takes {} input(s) ({}); got {} --input file(s)",
            m.name,
            kinds.len(),
            kinds.iter().map(|k| k.expectation()).collect::<Vec<_>>().join("; "),
            args.input.len()
        );
    }
    let mut inputs = Vec::new();
    for (i, (path, kind)) in args.input.iter().zip(&kinds).enumerate() {
        inputs.push(fit(relprune::data::npy::read(path)?, kind, path, i)?);
    }
    let batch = inputs[0].size()[0];
    if inputs.iter().any(|t| t.size()[0] != batch) {
        anyhow::bail!("the inputs have different numbers of samples");
    }
    // Token ids and their attention mask go together position by position.
    let tokens: Vec<(usize, Vec<i64>)> = kinds
        .iter()
        .zip(&inputs)
        .enumerate()
        .filter(|(_, (k, _))| matches!(k, InputKind::TokenIds { .. } | InputKind::AttentionMask { .. }))
        .map(|(i, (_, t))| (i, t.size()))
        .collect();
    if let [(i, a), (j, b), ..] = tokens.as_slice() {
        if a != b {
            anyhow::bail!(
                "input {i} ({}) has shape {a:?} and input {j} ({}) {b:?}; token ids and their attention mask must have \
                 the same shape (batch, tokens)",
                args.input[*i].display(),
                args.input[*j].display()
            );
        }
    }
    let y = tch::no_grad(|| g.forward(&inputs, Mode::Eval))?;
    if let Some(path) = &args.output {
        relprune::data::npy::write(path, &y)?;
        out.say(format!("wrote {} (shape {:?})", path.display(), y.size()));
    }
    let rows = y.reshape([batch, -1]);
    let report = RunReport {
        model: m.name.clone(),
        shape: y.size(),
        values: Vec::<Vec<f32>>::try_from(rows.to_kind(Kind::Float))?,
        argmax: Vec::<i64>::try_from(rows.argmax(1, false))?,
    };
    if args.output.is_none() {
        out.say(format!("{} ({}): output shape {:?}", m.name, m.origin, report.shape));
        for (i, (row, top)) in report.values.iter().zip(&report.argmax).enumerate() {
            let shown: Vec<String> = row.iter().map(|v| format!("{v:.6}")).collect();
            out.say(format!("{i:>4}  argmax {top:>4}  [{}]", shown.join(", ")));
        }
    }
    out.emit(&report)
}
