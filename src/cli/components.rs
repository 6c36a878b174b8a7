//! `relprune components`: the prunable units of a model, per layer and depth group.

use super::common::{ModelArgs, Output};
use clap::Args;
use relprune::prune::components::{ComponentKind, ComponentSet};

#[derive(Args)]
pub struct ComponentsArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Which kind to list (default: all kinds the model has).
    #[arg(long)]
    component: Option<ComponentKind>,
}

pub fn run(args: ComponentsArgs, out: &Output) -> anyhow::Result<()> {
    let m = args.model.load()?;
    let kinds = match args.component {
        Some(k) => vec![k],
        None => vec![ComponentKind::Filters, ComponentKind::Neurons, ComponentKind::Heads],
    };
    let mut sets = Vec::new();
    for k in kinds {
        match ComponentSet::find(&m.graph, k) {
            Ok(s) => sets.push(s),
            Err(e) if args.component.is_some() => return Err(e.into()),
            Err(_) => {}
        }
    }
    for s in &sets {
        out.say(format!("{} ({} in {} layers)", s.kind, s.total, s.layers.len()));
        out.say(format!("  {:<34} {:>6} {:>8}  read at", "layer", "group", "units"));
        for l in &s.layers {
            out.say(format!("  {:<34} {:>6} {:>8}  {}", l.name, l.group.name(), l.count, m.graph.node(l.read_at).name));
        }
    }
    out.emit(&sets)
}
