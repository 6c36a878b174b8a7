//! `relprune components`: the prunable units of a model, per dependency group (layers that lose
//! their units together: a gated MLP's gate and up projections, residual-coupled convs) and
//! depth group, named by the model's own modules.

use super::common::{ModelArgs, Output};
use clap::Args;
use relprune::prune::components::{coupled_groups, ComponentKind, ComponentSet, Components};

#[derive(Args)]
pub struct ComponentsArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Which kind to list (default: all kinds the model has).
    #[arg(long)]
    component: Option<Components>,
}

pub fn run(args: ComponentsArgs, out: &Output) -> anyhow::Result<()> {
    let m = args.model.load()?;
    let kinds: Vec<Components> = match &args.component {
        Some(k) => vec![k.clone()],
        None => [ComponentKind::Filters, ComponentKind::Neurons, ComponentKind::Heads].map(Components::from).to_vec(),
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
        let groups = coupled_groups(&m.graph, s)?;
        let units: usize = groups.iter().map(|g| g.units).sum();
        out.say(format!(
            "{} ({} units in {} groups; {} components in {} layers)",
            s.kinds,
            units,
            groups.len(),
            s.total,
            s.layers.len()
        ));
        out.say(format!("  {:<34} {:>6} {:>8}  layers", "group", "depth", "units"));
        for g in &groups {
            let members: Vec<&str> = g.members.iter().map(|&i| s.layers[i].name.as_str()).collect();
            let name = g.name(s);
            let layers = if members == [name.as_str()] { String::new() } else { members.join(" + ") };
            let blocked = g.blocked.as_ref().map_or(String::new(), |b| format!("  (not removable: {b})"));
            let depth = s.layers[g.members[0]].group.name();
            out.say(format!("  {name:<34} {depth:>6} {:>8}  {layers}{blocked}", g.units));
        }
    }
    out.emit(&sets)
}
