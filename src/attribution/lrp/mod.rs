//! Layer-wise Relevance Propagation: one explicit reverse sweep over the graph per batch
//! yields the relevance at every node's output.
//!
//! Conventions (zennit's, the oracle for CNNs): relevance is the quantity propagated, so the
//! relevance at a tensor is what arrives there (it is not multiplied by the activation again).
//! Linear layers use the rule of their depth group ([`rules`]); BatchNorm, activations and
//! dropout pass relevance through unchanged; residual additions and average pooling split it
//! in proportion to the summands (zennit `Norm`, stabiliser 1e-6); max-pooling routes it to the
//! maximum (the gradient); flattening reshapes it. With `batch_norm: merge` (default, zennit's
//! `SequentialMergeBatchNorm` canonizer) a BatchNorm directly after a conv is folded into the
//! conv's weights before the conv's rule is applied — computed on the fly, the graph is never
//! modified.

pub mod affine;
mod canonize;
pub mod rules;

pub use rules::Rule;
// The variants of the gate and softmax rules are defined with their ops (`Mul`, `Attention`),
// the graph being below attribution; they are part of the configuration here.
pub use crate::graph::ops::{GateRule, SoftmaxRule};

use super::{one_hot, token_mask, unit_values, LatentAttribution, Reduce};
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::graph::ops::{vjp, AffineOp, LrpContext};
use crate::graph::{Graph, Mode, NodeId, Role};
use crate::prune::components::{depth_groups, ComponentSet, DepthGroup};
use affine::Affine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

/// One rule per depth group: low / mid / high / fc, or, finer, N equal depth groups `d1`…`dN`
/// over the layers before the classifier (`depth`), with `fc` for the classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRules {
    pub low: Rule,
    pub mid: Rule,
    pub high: Rule,
    pub fc: Rule,
    /// When not empty: the rules of N equal depth groups. The layers that take a rule and read
    /// spatial or token maps (everything but the classifier's `fc` layers) are split, in graph
    /// order, into N consecutive runs whose lengths differ by at most one ([`depth_slots`]);
    /// the k-th run takes `depth[k]`, in place of low / mid / high.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depth: Vec<Rule>,
}

impl GroupRules {
    /// The same rule everywhere.
    pub fn all(rule: Rule) -> Self {
        GroupRules { low: rule.clone(), mid: rule.clone(), high: rule.clone(), fc: rule, depth: Vec::new() }
    }

    /// Low / mid / high / fc rules.
    pub fn by_group(low: Rule, mid: Rule, high: Rule, fc: Rule) -> Self {
        GroupRules { low, mid, high, fc, depth: Vec::new() }
    }

    /// The rule of a layer in depth group `group`, at position `slot` of the N equal groups
    /// (see [`depth_slots`]) when there are any.
    pub fn rule_at(&self, group: DepthGroup, slot: Option<usize>) -> &Rule {
        match slot {
            Some(k) if group != DepthGroup::Fc && !self.depth.is_empty() => &self.depth[k.min(self.depth.len() - 1)],
            _ => self.get(group),
        }
    }
    pub fn get(&self, g: DepthGroup) -> &Rule {
        match g {
            DepthGroup::Low => &self.low,
            DepthGroup::Mid => &self.mid,
            DepthGroup::High => &self.high,
            DepthGroup::Fc => &self.fc,
        }
    }
    pub fn set(&mut self, g: DepthGroup, rule: Rule) {
        match g {
            DepthGroup::Low => self.low = rule,
            DepthGroup::Mid => self.mid = rule,
            DepthGroup::High => self.high = rule,
            DepthGroup::Fc => self.fc = rule,
        }
    }

    /// Parses `all=epsilon` / `low=epsilon,mid=gamma:0.25,high=zplus,fc=epsilon:1e-3`, or N
    /// equal depth groups `d1=gamma:0.25,d2=epsilon,d3=epsilon,d4=zplus[,fc=…]` (all of d1…dN
    /// given); groups not named keep the rules of `base`.
    pub fn parse(text: &str, base: GroupRules) -> Result<Self> {
        let mut out = base;
        out.apply(&crate::util::parse_pairs(text)?)?;
        Ok(out)
    }

    /// Applies `GROUP=RULE` pairs (groups not named keep theirs): `all`, low / mid / high /
    /// fc, or the equal depth groups d1…dN (all of them, and not beside low / mid / high).
    pub fn apply(&mut self, pairs: &[(String, String)]) -> Result<()> {
        let mut depth: BTreeMap<usize, Rule> = BTreeMap::new();
        let mut named = false;
        for (group, rule) in pairs {
            let group = group.trim();
            if rule.is_empty() {
                crate::bail!("`{group}` is not GROUP=RULE (groups: all, low, mid, high, fc, or d1…dN)");
            }
            let rule = Rule::parse(rule)?;
            match group {
                "all" => *self = GroupRules { depth: std::mem::take(&mut self.depth), ..GroupRules::all(rule) },
                g => match depth_index(g)? {
                    Some(k) => {
                        depth.insert(k, rule);
                    }
                    None => {
                        let g: DepthGroup = g.parse()?;
                        named |= g != DepthGroup::Fc;
                        self.set(g, rule);
                    }
                },
            }
        }
        if !depth.is_empty() {
            if named {
                crate::bail!("give either low / mid / high or the equal depth groups d1…dN, not both");
            }
            self.depth = dense_depth(depth)?;
        }
        Ok(())
    }

    pub fn check(&self) -> Result<()> {
        DepthGroup::ALL.iter().try_for_each(|g| self.get(*g).check())?;
        self.depth.iter().try_for_each(Rule::check)
    }

    pub fn label(&self) -> String {
        if self.depth.is_empty() {
            return format!(
                "low={},mid={},high={},fc={}",
                self.low.label(),
                self.mid.label(),
                self.high.label(),
                self.fc.label()
            );
        }
        let ds: Vec<String> = self.depth.iter().enumerate().map(|(k, r)| format!("d{}={}", k + 1, r.label())).collect();
        format!("{},fc={}", ds.join(","), self.fc.label())
    }
}

/// `dK` (K ≥ 1) as the 0-based index K − 1; None for another name.
pub fn depth_index(name: &str) -> Result<Option<usize>> {
    let Some(k) = name.strip_prefix('d').filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit())) else {
        return Ok(None);
    };
    match k.parse::<usize>() {
        Ok(k @ 1..=MAX_DEPTH_GROUPS) => Ok(Some(k - 1)),
        _ => Err(Error::invalid(format!("depth group `{name}`: the equal depth groups are d1 to d{MAX_DEPTH_GROUPS}"))),
    }
}

/// Most equal depth groups (`d1`…`d64`).
pub const MAX_DEPTH_GROUPS: usize = 64;

/// The rules of d1…dN from an index map that must hold every index below its largest.
pub fn dense_depth(depth: BTreeMap<usize, Rule>) -> Result<Vec<Rule>> {
    check_dense(depth.keys().copied())?;
    Ok(depth.into_values().collect())
}

/// Checks that the 0-based indices of d1…dN (ascending, each once) leave no gap below the
/// largest, naming the missing groups.
pub fn check_dense(indices: impl Iterator<Item = usize> + Clone) -> Result<()> {
    let n = indices.clone().last().map_or(0, |k| k + 1);
    if indices.clone().count() != n {
        let missing: Vec<String> =
            (0..n).filter(|k| !indices.clone().any(|i| i == *k)).map(|k| format!("d{}", k + 1)).collect();
        crate::bail!("equal depth groups d1…d{n} need a rule each; missing: {}", missing.join(", "));
    }
    Ok(())
}

/// The position of every rule-taking layer before the classifier among `n` equal depth groups,
/// from the layers' depth `groups` ([`depth_groups`]); None for the classifier's layers and for
/// nodes without a rule, all None when `n` is 0.
pub fn depth_slots(groups: &[Option<DepthGroup>], n: usize) -> Vec<Option<usize>> {
    let deep: Vec<NodeId> = (0..groups.len()).filter(|&id| groups[id].is_some_and(|g| g != DepthGroup::Fc)).collect();
    let mut slots = vec![None; groups.len()];
    if n == 0 {
        return slots;
    }
    for (i, &id) in deep.iter().enumerate() {
        // Layer i of m goes to run ⌊i·n/m⌋: n runs whose lengths differ by at most one.
        slots[id] = Some((i * n / deep.len().max(1)).min(n - 1));
    }
    slots
}

/// Relevance that starts the backward sweep at the output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialRelevance {
    /// One-hot of the true class (value 1).
    #[default]
    OneHot,
    /// One-hot of the true class times its logit.
    Logit,
}

/// Which output the initial relevance explains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplainedTarget {
    /// The true class (a language model: the true next token at every position).
    #[default]
    True,
    /// The model's own top prediction (a language model: its predicted next token), as LXT's
    /// examples explain generation.
    Predicted,
}

impl ExplainedTarget {
    fn is_true(&self) -> bool {
        *self == ExplainedTarget::True
    }

    /// The targets to explain: `labels`, or the top prediction where a label is given (a
    /// negative label, a position without a target, stays without one).
    pub fn labels(self, labels: &Tensor, logits: &Tensor) -> Result<Tensor> {
        let labels = labels.f_to_device(logits.device())?;
        match self {
            ExplainedTarget::True => Ok(labels),
            ExplainedTarget::Predicted => Ok(logits.f_argmax(-1, false)?.f_where_self(&labels.f_ge(0)?, &labels)?),
        }
    }
}

/// How BatchNorm is treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchNormTreatment {
    /// Fold a BatchNorm that directly follows a conv into the conv (zennit's canonizer).
    #[default]
    Merge,
    /// Leave BatchNorm as a separate pass-through layer.
    Pass,
}

/// Everything that defines an LRP variant (plain data, shared by CLI, rules files and the optimiser).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrpConfig {
    pub rules: GroupRules,
    /// How relevance passes the attention softmax (transformers only).
    #[serde(default)]
    pub softmax: SoftmaxRule,
    /// Per depth group, a softmax treatment that replaces `softmax` there (an attention layer
    /// belongs to the group of the projection that feeds it).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub softmax_by_group: std::collections::BTreeMap<DepthGroup, SoftmaxRule>,
    #[serde(default)]
    pub initial: InitialRelevance,
    /// Which output's relevance is propagated.
    #[serde(default, skip_serializing_if = "ExplainedTarget::is_true")]
    pub target: ExplainedTarget,
    #[serde(default)]
    pub batch_norm: BatchNormTreatment,
    /// How relevance passes multiplicative gates.
    #[serde(default)]
    pub gate: GateRule,
    /// Stabiliser of the z⁺, γ and αβ rules and of the proportional split at additions and
    /// average pools (zennit composites' `stabilizer`).
    #[serde(default = "default_stabilizer")]
    pub stabilizer: f64,
    /// How the references' relevances become a unit's score with `absolute`: false (default)
    /// sums |R| over the references; true takes |Σ R|, so relevance of opposite sign on
    /// different samples cancels.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sum_first: bool,
    /// Per-layer scaling of the scores before the global ranking, part of the method so that a
    /// rules file carries it (`none`: the paper's raw ranking). Absent: the ranking's default
    /// ([`LayerNormalization::default_for`](crate::attribution::normalize::LayerNormalization::default_for)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<crate::attribution::normalize::LayerNormalization>,
}

fn default_stabilizer() -> f64 {
    rules::STABILIZER
}

/// LRP-ε (ε = 1e-6) in every group, every other treatment at its default.
impl Default for LrpConfig {
    fn default() -> Self {
        LrpConfig::new(GroupRules::all(Rule::Epsilon { epsilon: rules::default_epsilon() }))
    }
}

impl LrpConfig {
    pub fn new(rules: GroupRules) -> Self {
        LrpConfig {
            rules,
            softmax: SoftmaxRule::default(),
            softmax_by_group: Default::default(),
            initial: InitialRelevance::default(),
            target: ExplainedTarget::default(),
            batch_norm: BatchNormTreatment::default(),
            gate: GateRule::default(),
            stabilizer: default_stabilizer(),
            sum_first: false,
            normalize: None,
        }
    }
    pub fn check(&self) -> Result<()> {
        self.rules.check()?;
        if !(self.stabilizer > 0.0 && self.stabilizer.is_finite()) {
            crate::bail!("stabilizer must be positive, got {}", self.stabilizer);
        }
        Ok(())
    }
}

/// The LRP criterion: relevance at each component's read point, summed per unit.
pub struct Lrp {
    pub config: LrpConfig,
    pub label: String,
}

impl LatentAttribution for Lrp {
    fn name(&self) -> String {
        self.label.clone()
    }
    fn attribute(&self, graph: &Graph, comps: &ComponentSet, batch: &Batch) -> Result<Vec<Tensor>> {
        let mut keep = vec![false; graph.nodes().len()];
        for l in &comps.layers {
            keep[l.read_at] = true;
        }
        let rel = relevances(graph, &batch.inputs, &batch.labels, &self.config, &keep)?;
        let mask = token_mask(graph, batch);
        comps
            .layers
            .iter()
            .map(|l| match &rel[l.read_at] {
                Some(r) => unit_values(r, l, mask, Reduce::Sum),
                // No path carries relevance here (a gate held constant, a dead branch): by
                // LRP's conservation every unit has relevance zero.
                None => Ok(Tensor::zeros([batch.labels.size()[0], l.count as i64], (tch::Kind::Float, graph.device()))),
            })
            .collect()
    }
}

fn add_into(slot: &mut Option<Tensor>, r: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(prev) => prev.f_add(&r)?,
        None => r,
    });
    Ok(())
}

/// Runs the forward pass and the LRP sweep; returns, for every node with `keep[id]`, the
/// relevance at its output (None where no relevance arrives). `labels` select the target class.
pub fn relevances(
    graph: &Graph,
    inputs: &[Tensor],
    labels: &Tensor,
    config: &LrpConfig,
    keep: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    config.check()?;
    tch::no_grad(|| -> Result<Vec<Option<Tensor>>> {
        let outs = graph.forward_all(inputs, Mode::Eval)?;
        let logits = &outs[graph.output()];
        if logits.dim() != 2 && !(logits.dim() == 3 && labels.dim() == 2) {
            crate::bail!(
                "LRP needs a (batch, classes) output, or (batch, tokens, vocabulary) with next-token targets; the \
                 model gives {:?}",
                logits.size()
            );
        }
        let mut init = one_hot(&config.target.labels(labels, logits)?, logits)?;
        if config.initial == InitialRelevance::Logit {
            let _ = init.f_mul_(logits)?;
        }
        let groups = depth_groups(graph);
        let depth = Depth { slots: depth_slots(&groups, config.rules.depth.len()), groups };
        let n = graph.nodes().len();
        let mut rel: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        let mut kept: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        rel[graph.output()] = Some(init);
        for id in (0..n).rev() {
            let Some(r) = rel[id].take() else { continue };
            if keep[id] {
                kept[id] = Some(r.shallow_clone());
            }
            let node = graph.node(id);
            let xs: Vec<&Tensor> = node.inputs.iter().map(|&i| &outs[i]).collect();
            let ins = propagate_node(graph, id, &xs, &outs[id], &r, config, &depth).map_err(|e| Error::Node {
                node: node.name.clone(),
                op: node.op.kind_name().into(),
                message: format!("LRP: {e}"),
            })?;
            for (&i, ri) in node.inputs.iter().zip(ins) {
                if let Some(ri) = ri {
                    add_into(&mut rel[i], ri)?;
                }
            }
        }
        Ok(kept)
    })
}

/// Where every node sits in depth: its group (low / mid / high / fc) and its slot among the
/// equal depth groups of [`GroupRules::depth`].
struct Depth {
    groups: Vec<Option<DepthGroup>>,
    slots: Vec<Option<usize>>,
}

/// Relevance at each input of node `id` (None for inputs that receive none, e.g. masks).
fn propagate_node(
    graph: &Graph,
    id: NodeId,
    xs: &[&Tensor],
    out: &Tensor,
    r: &Tensor,
    config: &LrpConfig,
    depth: &Depth,
) -> Result<Vec<Option<Tensor>>> {
    let input_group = graph.node(id).inputs.first().and_then(|&i| depth.groups[i]);
    let cx = LrpCx { graph, id, config, group: depth.groups[id], slot: depth.slots[id], input_group };
    graph.node(id).op.kind().lrp(&cx, xs, out, r)
}

/// What an op's LRP rule sees besides its tensors ([`LrpContext`]): its node, the configuration
/// and its depth group's rule.
pub struct LrpCx<'a> {
    pub graph: &'a Graph,
    pub id: NodeId,
    pub config: &'a LrpConfig,
    group: Option<DepthGroup>,
    /// Position among the equal depth groups, when the rules have them.
    slot: Option<usize>,
    /// Depth group of the node's first input (for attention: its projection).
    input_group: Option<DepthGroup>,
}

impl LrpContext for LrpCx<'_> {
    fn param(&self, role: Role) -> Result<&Tensor> {
        self.graph.require_param(self.id, role)
    }
    fn stabilizer(&self) -> f64 {
        self.config.stabilizer
    }
    fn stabilize(&self, z: &Tensor) -> Result<Tensor> {
        rules::stabilize(z, self.config.stabilizer)
    }
    fn gate_rule(&self) -> GateRule {
        self.config.gate
    }
    /// The softmax treatment at this node: its input's group's, else the configuration's.
    fn softmax_rule(&self) -> SoftmaxRule {
        self.input_group.and_then(|g| self.config.softmax_by_group.get(&g).copied()).unwrap_or(self.config.softmax)
    }
    fn norm_rule(&self, x: &Tensor, z: &Tensor, r: &Tensor, f: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let s = r.f_div(&self.stabilize(z)?)?;
        Ok(x.f_mul(&vjp(x, &s, f)?)?)
    }
    /// With `batch_norm: merge`, a BatchNorm that solely follows the layer is folded into its
    /// weights first (zennit's canonizer, computed on the fly).
    fn affine_rule(&self, op: &dyn AffineOp, x: &Tensor, out: &Tensor, r: &Tensor) -> Result<Tensor> {
        let (graph, id) = (self.graph, self.id);
        // The layer's own output is its z unless a BatchNorm is merged into its weights.
        let (weight, bias, z) = match graph.following_batchnorm(id) {
            Some(bn) if self.config.batch_norm == BatchNormTreatment::Merge => {
                let (w, b) = canonize::merge_batchnorm(graph, id, bn)?;
                (w, b, None)
            }
            _ => (
                graph.require_param(id, Role::Weight)?.shallow_clone(),
                graph.param(id, Role::Bias).map(|b| b.shallow_clone()),
                Some(out),
            ),
        };
        let group = self.group.ok_or_else(|| Error::invalid("layer has no depth group"))?;
        self.config.rules.rule_at(group, self.slot).apply(&Affine { op, weight, bias }, x, z, r, self.config.stabilizer)
    }
}
