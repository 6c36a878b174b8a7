//! The search space: plain data (YAML) the user can edit. Each entry is a parameter of the
//! attribution method; a list is a categorical choice, `{log: [lo, hi]}` / `{uniform: [lo, hi]}`
//! a continuous range, a scalar a fixed value; `when: {other: value}` makes a parameter
//! conditional (it exists only in trials where `other` took one of the given values).
//!
//! ```yaml
//! low_rule: [epsilon, gamma, zplus, alphabeta]
//! low_epsilon: {log: [1.0e-9, 1.0], when: {low_rule: epsilon}}
//! low_gamma: {log: [1.0e-3, 10.0], when: {low_rule: gamma}}
//! softmax: [attn_lrp, cp, zplus, zplus_bias]
//! absolute: [true, false]
//! ```
//!
//! Known parameters: `{low,mid,high,fc}_rule` (epsilon, gamma, zplus, alphabeta = α2β1), or,
//! finer, `d1_rule` … `dN_rule` for N equal depth groups over the layers before the classifier
//! (in place of low / mid / high; see [`GroupRules::depth`]), `{group}_epsilon`, `{group}_gamma`, `softmax` and `{group}_softmax` (the treatment of the
//! attention layers fed by that group's projections), `absolute`, `initial` (one_hot, logit),
//! `batch_norm` (merge, pass), `gate` (constant, uniform: how relevance passes multiplicative
//! gates such as squeeze-and-excitation), `refs_per_class`, `normalize` (none, max, l2, sum,
//! mean, lamp: per-layer scaling of the scores before the global ranking, which decides how many
//! units each layer loses) and `sum_first` (with `absolute: true`, |Σ R| over the references
//! instead of Σ |R|). Anything else is rejected.

use crate::attribution::lrp::{check_dense, depth_index, SoftmaxRule};
use crate::attribution::normalize::LayerNormalization;
use crate::attribution::CriterionSpec;
use crate::error::{Error, Result};
use crate::prune::components::DepthGroup;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Parameter values of one trial.
pub type Params = BTreeMap<String, Value>;

/// Where a parameter's values come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    Categorical(Vec<Value>),
    Float { low: f64, high: f64, log: bool },
}

/// One parameter of the space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub domain: Domain,
    /// Active only when the named (earlier) parameter takes one of these values.
    pub when: Option<(String, Vec<Value>)>,
}

impl Param {
    /// Where `v` lies in the domain, in [0, 1] (plots): a category's index over the count − 1,
    /// a float linearly (or logarithmically) between its bounds. None for a value outside it.
    pub fn position(&self, v: &Value) -> Option<f64> {
        match &self.domain {
            Domain::Categorical(c) => {
                let i = c.iter().position(|x| x == v)?;
                Some(if c.len() > 1 { i as f64 / (c.len() - 1) as f64 } else { 0.5 })
            }
            Domain::Float { low, high, log } => {
                let x = v.as_f64()?;
                let (a, b, x) = if *log { (low.ln(), high.ln(), x.ln()) } else { (*low, *high, x) };
                Some(if b > a { ((x - a) / (b - a)).clamp(0.0, 1.0) } else { 0.5 })
            }
        }
    }

    /// Labels of the domain's two ends (plots).
    pub fn ends(&self) -> (String, String) {
        match &self.domain {
            Domain::Categorical(c) => {
                let name = |v: Option<&Value>| v.map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()));
                (name(c.first()).unwrap_or_default(), name(c.last()).unwrap_or_default())
            }
            Domain::Float { low, high, .. } => (format!("{low:.0e}"), format!("{high:.0e}")),
        }
    }
}

/// An ordered list of parameters (conditions refer to earlier ones).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchSpace {
    pub params: Vec<Param>,
}

/// Largest search-space file accepted (the default space is under 1 KB).
const MAX_YAML_BYTES: usize = 1 << 20;
/// Most `[…]` / `{…}` collections a search space may open (the default opens about twenty).
const MAX_FLOW_COLLECTIONS: usize = 4096;

const RULES: [&str; 4] = ["epsilon", "gamma", "zplus", "alphabeta"];

/// The group a per-group parameter name (`low_rule`, `d3_epsilon`) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GroupName {
    /// low / mid / high / fc.
    Group(DepthGroup),
    /// The k-th (0-based) of N equal depth groups, `d1`…`dN`.
    Depth(usize),
}

fn group_param(name: &str) -> Option<(GroupName, &str)> {
    let (g, what) = name.split_once('_')?;
    if let Ok(Some(k)) = depth_index(g) {
        return Some((GroupName::Depth(k), what));
    }
    Some((GroupName::Group(g.parse().ok()?), what))
}

/// Checks one value of a known parameter.
fn check_value(name: &str, v: &Value) -> Result<()> {
    let bad = |what: &str| Err(Error::invalid(format!("search space: `{name}` takes {what}, got {v}")));
    // Only the rule, its ε / γ and the softmax treatment exist per depth group (the equal
    // depth groups d1…dN have no softmax of their own).
    let what = match group_param(name) {
        Some((GroupName::Group(_), w @ ("rule" | "epsilon" | "gamma" | "softmax"))) => w,
        Some((GroupName::Depth(_), w @ ("rule" | "epsilon" | "gamma"))) => w,
        Some(_) => "",
        None => name,
    };
    match what {
        "rule" => match v.as_str() {
            Some(r) if RULES.contains(&r) => Ok(()),
            _ => bad("epsilon, gamma, zplus or alphabeta"),
        },
        "epsilon" => match v.as_f64() {
            Some(x) if x > 0.0 && x.is_finite() => Ok(()),
            _ => bad("a positive number"),
        },
        "gamma" => match v.as_f64() {
            Some(x) if x >= 0.0 && x.is_finite() => Ok(()),
            _ => bad("a non-negative number"),
        },
        "softmax" => match v.as_str().map(SoftmaxRule::parse) {
            Some(Ok(_)) => Ok(()),
            _ => bad("attn_lrp, cp, zplus or zplus_bias"),
        },
        "absolute" => match v {
            Value::Bool(_) => Ok(()),
            _ => bad("true or false"),
        },
        "initial" => match v.as_str() {
            Some("one_hot" | "logit") => Ok(()),
            _ => bad("one_hot or logit"),
        },
        "batch_norm" => match v.as_str() {
            Some("merge" | "pass") => Ok(()),
            _ => bad("merge or pass"),
        },
        "gate" => match v.as_str() {
            Some("constant" | "uniform") => Ok(()),
            _ => bad("constant or uniform"),
        },
        "normalize" => match v.as_str() {
            Some("none" | "max" | "l2" | "sum" | "mean" | "lamp") => Ok(()),
            _ => bad("none, max, l2, sum, mean or lamp"),
        },
        "sum_first" => match v {
            Value::Bool(_) => Ok(()),
            _ => bad("true or false"),
        },
        "refs_per_class" => match v.as_u64() {
            Some(n) if n >= 1 => Ok(()),
            _ => bad("a positive integer"),
        },
        _ => Err(Error::invalid(format!(
            "search space: unknown parameter `{name}`; known: {{low,mid,high,fc}}_rule or the equal depth groups \
             {{d1…dN}}_rule, {{group}}_epsilon, {{group}}_gamma, {{low,mid,high}}_softmax, softmax, absolute, initial, \
             batch_norm, gate, refs_per_class, normalize, sum_first"
        ))),
    }
}

fn is_float_param(name: &str) -> bool {
    matches!(group_param(name).map(|(_, w)| w), Some("epsilon" | "gamma"))
}

impl SearchSpace {
    /// Parses and validates YAML (or JSON, a subset of YAML). Sizes are bounded first: the
    /// YAML parser takes quadratic time in the number of open flow collections (`[[[[…`), so
    /// a hostile file would otherwise keep it busy for hours.
    pub fn from_yaml(text: &str) -> Result<Self> {
        if text.len() > MAX_YAML_BYTES {
            crate::bail!("search space of {} bytes is larger than the limit of {MAX_YAML_BYTES} bytes", text.len());
        }
        let collections = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
        if collections > MAX_FLOW_COLLECTIONS {
            crate::bail!(
                "search space has {collections} `[` / `{{` collections, more than the limit of {MAX_FLOW_COLLECTIONS}"
            );
        }
        let raw: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(text)
            .map_err(|e| Error::invalid(format!("search space is not a YAML mapping: {e}")))?;
        let mut params = Vec::new();
        for (k, v) in raw {
            let name = k
                .as_str()
                .ok_or_else(|| Error::invalid(format!("search space key {k:?} is not a string")))?
                .to_string();
            let v: Value = serde_json::to_value(&v).map_err(Error::json(format!("search space entry `{name}`")))?;
            params.push(Self::parse_param(name, v)?);
        }
        let space = SearchSpace { params };
        space.validate()?;
        Ok(space)
    }

    fn parse_param(name: String, v: Value) -> Result<Param> {
        let (domain, when) = match v {
            Value::Array(choices) => (Domain::Categorical(choices), None),
            Value::Object(map) => {
                let mut domain = None;
                let mut when = None;
                for (k, val) in map {
                    match k.as_str() {
                        "log" | "uniform" => {
                            let pair: Option<(f64, f64)> = val.as_array().and_then(|a| match a.as_slice() {
                                [lo, hi] => Some((lo.as_f64()?, hi.as_f64()?)),
                                _ => None,
                            });
                            let (low, high) = pair.ok_or_else(|| {
                                Error::invalid(format!("search space: `{name}.{k}` needs [low, high]"))
                            })?;
                            domain = Some(Domain::Float { low, high, log: k == "log" });
                        }
                        "choice" => {
                            let c = val
                                .as_array()
                                .cloned()
                                .ok_or_else(|| Error::invalid(format!("search space: `{name}.choice` needs a list")))?;
                            domain = Some(Domain::Categorical(c));
                        }
                        "when" => {
                            let m = val.as_object().filter(|m| m.len() == 1).ok_or_else(|| {
                                Error::invalid(format!("search space: `{name}.when` needs one `param: value(s)` entry"))
                            })?;
                            let (p, vals) = m.iter().next().expect("one entry");
                            let vals = match vals {
                                Value::Array(a) => a.clone(),
                                v => vec![v.clone()],
                            };
                            when = Some((p.clone(), vals));
                        }
                        other => crate::bail!(
                            "search space: unknown key `{other}` in `{name}`; use log, uniform, choice and when"
                        ),
                    }
                }
                let domain = domain
                    .ok_or_else(|| Error::invalid(format!("search space: `{name}` needs log, uniform or choice")))?;
                (domain, when)
            }
            scalar => (Domain::Categorical(vec![scalar]), None),
        };
        Ok(Param { name, domain, when })
    }

    /// Rejects unknown names, impossible values, bad ranges, dangling conditions and spaces
    /// without a free parameter.
    pub fn validate(&self) -> Result<()> {
        let mut seen: Vec<&str> = Vec::new();
        let mut free = false;
        for p in &self.params {
            if seen.contains(&p.name.as_str()) {
                crate::bail!("search space: `{}` appears twice", p.name);
            }
            match &p.domain {
                Domain::Categorical(c) => {
                    if c.is_empty() {
                        crate::bail!("search space: `{}` has no choices", p.name);
                    }
                    for v in c {
                        check_value(&p.name, v)?;
                    }
                    free |= c.len() > 1;
                }
                Domain::Float { low, high, log } => {
                    if !is_float_param(&p.name) {
                        crate::bail!("search space: `{}` is not continuous; give a list of choices", p.name);
                    }
                    check_value(&p.name, &Value::from(*low))?;
                    check_value(&p.name, &Value::from(*high))?;
                    if low.partial_cmp(high) != Some(std::cmp::Ordering::Less) {
                        crate::bail!("search space: `{}` range [{low}, {high}] is empty", p.name);
                    }
                    if *log && *low <= 0.0 {
                        crate::bail!("search space: `{}` log range must be positive", p.name);
                    }
                    free = true;
                }
            }
            if let Some((other, vals)) = &p.when {
                let Some(o) = self.params.iter().find(|q| &q.name == other).filter(|_| seen.contains(&other.as_str()))
                else {
                    crate::bail!("search space: `{}` depends on `{other}`, which must be listed before it", p.name);
                };
                for v in vals {
                    check_value(&o.name, v)?;
                }
                // A condition no choice of the other parameter meets leaves `p` never active.
                if let Domain::Categorical(choices) = &o.domain {
                    if !vals.iter().any(|v| choices.contains(v)) {
                        crate::bail!(
                            "search space: `{}` is active only when `{other}` is one of {}, which its choices \
                             {} never are; it would never be searched (fix the condition or the choices)",
                            p.name,
                            Value::from(vals.clone()),
                            Value::from(choices.clone())
                        );
                    }
                }
            }
            seen.push(&p.name);
        }
        if !free {
            crate::bail!("the search space has no free parameter (every entry is fixed); nothing to optimise");
        }
        self.check_depth_groups()
    }

    /// The equal depth groups, where used: a rule for each of d1…dN, and no low / mid / high
    /// rule beside them (both would claim the same layers).
    fn check_depth_groups(&self) -> Result<()> {
        let mut rules = std::collections::BTreeSet::new();
        let mut coarse = None;
        for p in &self.params {
            match group_param(&p.name) {
                Some((GroupName::Depth(k), "rule")) => {
                    rules.insert(k);
                }
                Some((GroupName::Depth(k), _)) if !self.params.iter().any(|q| q.name == format!("d{}_rule", k + 1)) => {
                    crate::bail!("search space: `{}` needs `d{}_rule`", p.name, k + 1)
                }
                Some((GroupName::Group(g), "rule")) if g != DepthGroup::Fc => coarse = Some(p.name.clone()),
                _ => {}
            }
        }
        if rules.is_empty() {
            return Ok(());
        }
        if let Some(c) = coarse {
            crate::bail!(
                "search space: `{c}` and the equal depth groups d1…dN both set the same layers' rules; keep one"
            );
        }
        check_dense(rules.iter().copied()).map_err(|e| Error::invalid(format!("search space: {e}")))
    }

    /// This space with `normalize` fixed to `how` (replacing a searched `normalize`), or
    /// unchanged without one: `optimize --normalize` makes the normalisation part of every trial.
    pub fn with_fixed_normalization(mut self, how: Option<LayerNormalization>) -> Result<Self> {
        let Some(how) = how else { return Ok(self) };
        let fixed =
            Param { name: "normalize".into(), domain: Domain::Categorical(vec![Value::from(how.name())]), when: None };
        match self.params.iter_mut().find(|p| p.name == "normalize") {
            Some(p) => *p = fixed,
            None => self.params.push(fixed),
        }
        self.validate()?;
        Ok(self)
    }

    /// Whether parameter `p` is active given the values chosen so far.
    pub fn active(p: &Param, chosen: &Params) -> bool {
        match &p.when {
            None => true,
            Some((other, vals)) => chosen.get(other).is_some_and(|v| vals.contains(v)),
        }
    }

    /// The default space: a rule per depth group with its ε / γ, |R| vs signed R, for
    /// transformers the softmax treatment, and for models with multiplicative gates the gate
    /// rule.
    pub fn default_for(transformer: bool, gated: bool) -> Self {
        let mut yaml = String::new();
        for g in ["low", "mid", "high", "fc"] {
            yaml += &format!(
                "{g}_rule: [epsilon, gamma, zplus, alphabeta]\n\
                 {g}_epsilon: {{log: [1.0e-9, 1.0], when: {{{g}_rule: epsilon}}}}\n\
                 {g}_gamma: {{log: [1.0e-3, 10.0], when: {{{g}_rule: gamma}}}}\n"
            );
        }
        if transformer {
            for g in ["low", "mid", "high"] {
                yaml += &format!("{g}_softmax: [attn_lrp, cp, zplus, zplus_bias]\n");
            }
        }
        if gated {
            yaml += "gate: [constant, uniform]\n";
        }
        yaml += "absolute: [true, false]\n";
        yaml += "sum_first: {choice: [false, true], when: {absolute: true}}\n";
        yaml += "normalize: [none, mean, max]\n";
        Self::from_yaml(&yaml).expect("the default space is valid")
    }

    /// YAML text of this space (what `from_yaml` reads).
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for p in &self.params {
            let dom = match &p.domain {
                Domain::Categorical(c) if c.len() == 1 => c[0].to_string(),
                Domain::Categorical(c) => {
                    format!("[{}]", c.iter().map(|v| v.to_string().replace('"', "")).collect::<Vec<_>>().join(", "))
                }
                Domain::Float { low, high, log } => {
                    format!("{}: [{low:e}, {high:e}]", if *log { "log" } else { "uniform" })
                }
            };
            out += &match (&p.domain, &p.when) {
                (Domain::Float { .. }, Some((o, v))) => format!("{}: {{{dom}, when: {{{o}: {}}}}}\n", p.name, v[0]),
                (Domain::Float { .. }, None) => format!("{}: {{{dom}}}\n", p.name),
                (_, Some((o, v))) => format!("{}: {{choice: {dom}, when: {{{o}: {}}}}}\n", p.name, v[0]),
                (_, None) => format!("{}: {dom}\n", p.name),
            };
        }
        out
    }

    /// The parameters of the default configuration (LRP-ε everywhere, |R|) where the space
    /// allows them; enqueued as a study's first trial.
    pub fn default_params(&self) -> Params {
        let mut p = Params::new();
        for param in &self.params {
            if !Self::active(param, &p) {
                continue;
            }
            let want: Value = match group_param(&param.name).map(|(_, w)| w).unwrap_or(&param.name) {
                "rule" => "epsilon".into(),
                "epsilon" => crate::attribution::lrp::rules::default_epsilon().into(),
                // A searched γ needs a number where the rule's default is per op (0.25 on
                // convolutions, 0.05 on linear layers): the start is the convolutions'.
                "gamma" => 0.25.into(),
                "softmax" => "attn_lrp".into(),
                "absolute" => true.into(),
                "initial" => "one_hot".into(),
                "batch_norm" => "merge".into(),
                "gate" => "constant".into(),
                "sum_first" => false.into(),
                "normalize" => "none".into(),
                _ => 10.into(),
            };
            let v = match &param.domain {
                Domain::Categorical(c) => {
                    if c.contains(&want) {
                        want
                    } else {
                        c[0].clone()
                    }
                }
                Domain::Float { low, high, .. } => want.as_f64().unwrap_or(*low).clamp(*low, *high).into(),
            };
            p.insert(param.name.clone(), v);
        }
        p
    }

    /// The LRP criterion (and references per class, if searched) a trial's parameters describe.
    /// The parameters are translated key by key into the options of
    /// [`crate::attribution::options`] (a group's `_rule` with its `_epsilon` / `_gamma` becomes
    /// one rule, e.g. `low=gamma:0.3`), which parse, check and default them as `--rules` does.
    pub fn criterion(params: &Params) -> Result<(CriterionSpec, Option<usize>)> {
        let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
        let mut pairs = Vec::new();
        let mut refs = None;
        for (name, v) in params {
            match group_param(name) {
                Some((_, "rule")) => {
                    let prefix = &name[..name.len() - "_rule".len()];
                    let rule = text(v);
                    let value = match rule.as_str() {
                        "epsilon" | "gamma" => match params.get(&format!("{prefix}_{rule}")) {
                            Some(x) => format!("{rule}:{}", text(x)),
                            None => rule,
                        },
                        _ => rule,
                    };
                    pairs.push((prefix.to_string(), value));
                }
                // Folded into their group's rule above.
                Some((_, "epsilon" | "gamma")) => {}
                _ if name == "refs_per_class" => {
                    refs =
                        Some(v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                            Error::invalid(format!("refs_per_class takes a positive integer, got {v}"))
                        })? as usize)
                }
                _ => pairs.push((name.clone(), text(v))),
            }
        }
        let mut spec = CriterionSpec::Lrp { label: None, lrp: Default::default(), absolute: true };
        crate::attribution::options::apply(&mut spec, &pairs)
            .map_err(|e| Error::invalid(format!("trial parameters: {e}")))?;
        Ok((spec, refs))
    }
}
