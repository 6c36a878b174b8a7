//! The search space: plain data (YAML) the user can edit. Each entry is a parameter of the
//! attribution method; a list is a categorical choice, `{log: [lo, hi]}` / `{uniform: [lo, hi]}`
//! a continuous range, a scalar a fixed value; `when: {other: value}` makes a parameter
//! conditional (it exists only in trials where `other` took one of the given values; with
//! several entries, where all hold).
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
//! `target` (true, predicted: which next token a language model's relevance explains),
//! `batch_norm` (merge, pass), `gate` (constant, uniform: how relevance passes multiplicative
//! gates such as squeeze-and-excitation), `refs_per_class`, `normalize` (none, max, l2, sum,
//! mean, lamp: per-layer scaling of the scores before the global ranking, which decides how many
//! units each layer loses) and `sum_first` (with `absolute: true`, |Σ R| over the references
//! instead of Σ |R|), and `method` (lrp, gradient, taylor: the attribution method itself, so
//! that the gradient and Taylor criteria are points of the space; with another method than
//! lrp, every LRP-only parameter must be conditional on `method: lrp`). Anything else is
//! rejected.

use crate::attribution::lrp::{check_dense, depth_index, SoftmaxRule};
use crate::attribution::normalize::LayerNormalization;
use crate::attribution::CriterionSpec;
use crate::error::{Error, Result};
use crate::prune::budget::Selection;
use crate::prune::components::DepthGroup;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Parameter values of one trial.
pub type Params = BTreeMap<String, Value>;

/// What a model calls for in the default space ([`SearchSpace::default_for`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelTraits {
    /// It mixes tokens by attention: the softmax treatment is searched.
    pub attention: bool,
    /// It multiplies by computed gates (squeeze-and-excitation, SwiGLU): the gate rule is searched.
    pub gates: bool,
    /// It predicts the next token: which token the relevance explains is searched.
    pub language_model: bool,
}

impl ModelTraits {
    /// The traits of a graph.
    pub fn of(graph: &crate::graph::Graph) -> Self {
        Self { attention: graph.has_attention(), gates: graph.has_gates(), language_model: graph.is_language_model() }
    }
}

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
    /// Active only when each named (earlier) parameter takes one of its values (empty: always).
    #[serde(default, deserialize_with = "conditions")]
    pub when: Vec<(String, Vec<Value>)>,
}

/// A seed's choice of value for a parameter (None: the default's).
type Pick = dyn Fn(&str) -> Option<Value>;

/// Reads `when` as stored: a list of conditions, or as studies stored it before conditions could
/// name several parameters (null, or one `[name, values]` pair), so an old study still opens
/// (and is then compared with the current space).
fn conditions<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<(String, Vec<Value>)>, D::Error> {
    use serde::de::Error as _;
    let v = Value::deserialize(d)?;
    let one = |c: &Value| serde_json::from_value::<(String, Vec<Value>)>(c.clone());
    match &v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) if a.len() == 2 && a[0].is_string() => one(&v).map(|c| vec![c]).map_err(D::Error::custom),
        Value::Array(a) => a.iter().map(one).collect::<std::result::Result<_, _>>().map_err(D::Error::custom),
        _ => Err(D::Error::custom(format!("a condition list, got {v}"))),
    }
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

/// The attribution methods a space may choose between (`method`): LRP with the space's other
/// parameters, or the gradient and Taylor criteria (which take `absolute` and `normalize` only).
const METHODS: [&str; 3] = ["lrp", "gradient", "taylor"];

/// Parameters every method takes; the others configure LRP only.
const SHARED: [&str; 5] = ["method", "absolute", "normalize", "refs_per_class", "selection"];

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
        "target" => match v {
            // YAML reads `true` as a boolean; `predicted` stays text.
            Value::Bool(true) => Ok(()),
            _ if v.as_str().is_some_and(|t| t == "true" || t == "predicted") => Ok(()),
            _ => bad("true or predicted"),
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
        "selection" => match v.as_str() {
            Some("relevance" | "cost-aware") => Ok(()),
            _ => bad("relevance or cost-aware"),
        },
        "sum_first" => match v {
            Value::Bool(_) => Ok(()),
            _ => bad("true or false"),
        },
        "refs_per_class" => match v.as_u64() {
            Some(n) if n >= 1 => Ok(()),
            _ => bad("a positive integer"),
        },
        "method" => match v.as_str() {
            Some(m) if METHODS.contains(&m) => Ok(()),
            _ => bad("lrp, gradient or taylor"),
        },
        _ => Err(Error::invalid(format!(
            "search space: unknown parameter `{name}`; known: {{low,mid,high,fc}}_rule or the equal depth groups \
             {{d1…dN}}_rule, {{group}}_epsilon, {{group}}_gamma, {{low,mid,high}}_softmax, softmax, absolute, initial, target, \
             batch_norm, gate, refs_per_class, normalize, sum_first, method, selection"
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
            Value::Array(choices) => (Domain::Categorical(choices), Vec::new()),
            Value::Object(map) => {
                let mut domain = None;
                let mut when = Vec::new();
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
                            let m = val.as_object().filter(|m| !m.is_empty()).ok_or_else(|| {
                                Error::invalid(format!(
                                    "search space: `{name}.when` needs `param: value(s)` entries (all must hold)"
                                ))
                            })?;
                            when = m
                                .iter()
                                .map(|(p, vals)| match vals {
                                    Value::Array(a) => (p.clone(), a.clone()),
                                    v => (p.clone(), vec![v.clone()]),
                                })
                                .collect();
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
            scalar => (Domain::Categorical(vec![scalar]), Vec::new()),
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
            for (other, vals) in &p.when {
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
        self.check_methods()?;
        self.check_depth_groups()
    }

    /// Where `method` may be other than LRP, every LRP-only parameter is active only for LRP
    /// (`when: {method: lrp}`, directly or through the parameter it depends on), so that no
    /// trial of another method carries an option that method does not take.
    fn check_methods(&self) -> Result<()> {
        let others = self.params.iter().find(|p| p.name == "method").is_some_and(
            |p| matches!(&p.domain, Domain::Categorical(c) if c.iter().any(|v| v.as_str() != Some("lrp"))),
        );
        if !others {
            return Ok(());
        }
        let mut lrp_only: Vec<&str> = Vec::new();
        for p in &self.params {
            let gated = p.when.iter().any(|(o, vals)| {
                (o == "method" && vals.iter().all(|v| v.as_str() == Some("lrp"))) || lrp_only.contains(&o.as_str())
            });
            if gated {
                lrp_only.push(&p.name);
            } else if !SHARED.contains(&p.name.as_str()) {
                crate::bail!(
                    "search space: `{}` configures LRP only, but `method` may be another method; add `when: {{method: \
                     lrp}}` to it",
                    p.name
                );
            }
        }
        Ok(())
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
        let fixed = Param {
            name: "normalize".into(),
            domain: Domain::Categorical(vec![Value::from(how.name())]),
            when: vec![],
        };
        match self.params.iter_mut().find(|p| p.name == "normalize") {
            Some(p) => *p = fixed,
            None => self.params.push(fixed),
        }
        self.validate()?;
        Ok(self)
    }

    /// Whether parameter `p` is active given the values chosen so far.
    pub fn active(p: &Param, chosen: &Params) -> bool {
        p.when.iter().all(|(other, vals)| chosen.get(other).is_some_and(|v| vals.contains(v)))
    }

    /// The default space: the method, a rule per depth group with its ε / γ, |R| vs signed R,
    /// the normalisation, and what the model calls for: for transformers the softmax
    /// treatment, for models with multiplicative gates the gate rule, for language models which
    /// token the initial relevance explains (the true next token or the predicted one) and its
    /// value (one-hot or the logit).
    pub fn default_for(model: ModelTraits) -> Self {
        let mut yaml = String::from("method: [lrp, gradient, taylor]\n");
        for g in ["low", "mid", "high", "fc"] {
            yaml += &format!(
                "{g}_rule: {{choice: [epsilon, gamma, zplus, alphabeta], when: {{method: lrp}}}}\n\
                 {g}_epsilon: {{log: [1.0e-9, 1.0], when: {{{g}_rule: epsilon}}}}\n\
                 {g}_gamma: {{log: [1.0e-3, 10.0], when: {{{g}_rule: gamma}}}}\n"
            );
        }
        if model.attention {
            for g in ["low", "mid", "high"] {
                yaml += &format!("{g}_softmax: {{choice: [attn_lrp, cp, zplus, zplus_bias], when: {{method: lrp}}}}\n");
            }
        }
        if model.gates {
            yaml += "gate: {choice: [constant, uniform], when: {method: lrp}}\n";
        }
        if model.language_model {
            yaml += "target: {choice: [true, predicted], when: {method: lrp}}\n";
            yaml += "initial: {choice: [one_hot, logit], when: {method: lrp}}\n";
        }
        yaml += "absolute: [true, false]\n";
        yaml += "sum_first: {choice: [false, true], when: {absolute: true, method: lrp}}\n";
        yaml += "normalize: [none, mean, max]\n";
        Self::from_yaml(&yaml).expect("the default space is valid")
    }

    /// YAML text of this space (what `from_yaml` reads).
    pub fn to_yaml(&self) -> String {
        let list = |v: &[Value]| v.iter().map(|x| x.to_string().replace('"', "")).collect::<Vec<_>>().join(", ");
        let mut out = String::new();
        for p in &self.params {
            let dom = match &p.domain {
                Domain::Categorical(c) if c.len() == 1 => c[0].to_string(),
                Domain::Categorical(c) => format!("[{}]", list(c)),
                Domain::Float { low, high, log } => {
                    format!("{}: [{low:e}, {high:e}]", if *log { "log" } else { "uniform" })
                }
            };
            let conds: Vec<String> = p.when.iter().map(|(o, v)| format!("{o}: [{}]", list(v))).collect();
            let when = if conds.is_empty() { String::new() } else { format!(", when: {{{}}}", conds.join(", ")) };
            out += &match &p.domain {
                Domain::Float { .. } => format!("{}: {{{dom}{when}}}\n", p.name),
                _ if when.is_empty() => format!("{}: {dom}\n", p.name),
                _ => format!("{}: {{choice: {dom}{when}}}\n", p.name),
            };
        }
        out
    }

    /// The parameters of the default configuration (LRP-ε everywhere, |R|) where the space
    /// allows them: the first of [`Self::seeds`].
    pub fn default_params(&self) -> Params {
        self.point(&|_| None).expect("the default takes every value from the space")
    }

    /// The study's first trials: each stand-alone criterion that is a point of this space, by
    /// name. LRP-ε (the default configuration); the presets `lrp-zplus`, `lrp-epsilon-plus` and
    /// `lrp-alpha2beta1` where the space has their rules; `gradient` and `taylor` where `method`
    /// offers them. Every other parameter takes its default (|R|, no normalisation), so each
    /// seed scores as the criterion of that name does on a curve. `lrp-faithful` is not a point
    /// of any space: its γ is per op (0.25 on convolutions, 0.05 on linear layers), a searched γ
    /// one number. Seeds that coincide in a narrow space are listed once.
    pub fn seeds(&self) -> Vec<(String, Params)> {
        let rule = |name: &str, deep: &str, fc: &str| -> Option<Value> {
            match group_param(name)? {
                (GroupName::Group(DepthGroup::Fc), "rule") => Some(fc.into()),
                (_, "rule") => Some(deep.into()),
                _ => None,
            }
        };
        let method = |m: &'static str| move |name: &str| (name == "method").then(|| Value::from(m));
        let candidates: [(&str, Box<Pick>); 6] = [
            ("lrp-epsilon", Box::new(|_: &str| None)),
            ("lrp-zplus", Box::new(move |n: &str| rule(n, "zplus", "zplus"))),
            ("lrp-epsilon-plus", Box::new(move |n: &str| rule(n, "zplus", "epsilon"))),
            ("lrp-alpha2beta1", Box::new(move |n: &str| rule(n, "alphabeta", "epsilon"))),
            ("gradient", Box::new(method("gradient"))),
            ("taylor", Box::new(method("taylor"))),
        ];
        // A preset sets every layer's rule: the space must search each group's (a group it
        // leaves out keeps LRP-ε, which would be another criterion under the preset's name).
        let has = |n: &str| self.params.iter().any(|p| p.name == n);
        let all_rules = has("fc_rule")
            && (["low_rule", "mid_rule", "high_rule"].iter().all(|n| has(n))
                || self.params.iter().any(|p| matches!(group_param(&p.name), Some((GroupName::Depth(_), "rule")))));
        let mut out: Vec<(String, Params)> = Vec::new();
        for (name, pick) in candidates {
            if name.starts_with("lrp-") && name != "lrp-epsilon" && !all_rules {
                continue;
            }
            if let Some(p) = self.point(pick.as_ref()) {
                if !out.iter().any(|(_, q)| *q == p) {
                    out.push((name.to_string(), p));
                }
            }
        }
        out
    }

    /// The point of this space that takes `pick(name)`'s value where it gives one and the
    /// default elsewhere, walking the parameters in order (so conditions follow the values
    /// chosen); None where `pick` asks for a value the space does not hold.
    fn point(&self, pick: &Pick) -> Option<Params> {
        let mut p = Params::new();
        for param in &self.params {
            if !Self::active(param, &p) {
                continue;
            }
            if let Some(want) = pick(&param.name) {
                let allowed = match &param.domain {
                    Domain::Categorical(c) => c.contains(&want),
                    Domain::Float { low, high, .. } => want.as_f64().is_some_and(|x| (*low..=*high).contains(&x)),
                };
                if !allowed {
                    return None;
                }
                p.insert(param.name.clone(), want);
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
                "target" => true.into(),
                "batch_norm" => "merge".into(),
                "gate" => "constant".into(),
                "sum_first" => false.into(),
                "normalize" => "none".into(),
                "method" => "lrp".into(),
                "selection" => "relevance".into(),
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
        Some(p)
    }

    /// The criterion (and references per class, if searched) a trial's parameters describe:
    /// LRP, or the gradient / Taylor criterion where `method` says so. The parameters are
    /// translated key by key into the options of
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
                // A pruning setting, not the criterion's: see [`SearchSpace::selection`].
                _ if name == "selection" => {}
                _ if name == "refs_per_class" => {
                    refs =
                        Some(v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                            Error::invalid(format!("refs_per_class takes a positive integer, got {v}"))
                        })? as usize)
                }
                _ => pairs.push((name.clone(), text(v))),
            }
        }
        let method = pairs.iter().position(|(k, _)| k == "method").map(|i| pairs.remove(i).1);
        let mut spec = match method.as_deref() {
            None | Some("lrp") => CriterionSpec::Lrp { label: None, lrp: Default::default(), absolute: true },
            Some(m @ ("gradient" | "taylor")) => CriterionSpec::from_name(m, None, 0)?,
            Some(other) => crate::bail!("trial parameters: method `{other}`; use lrp, gradient or taylor"),
        };
        crate::attribution::options::apply(&mut spec, &pairs)
            .map_err(|e| Error::invalid(format!("trial parameters: {e}")))?;
        Ok((spec, refs))
    }

    /// The order a trial's units go in on a MACs or parameter axis (`selection`: relevance, or
    /// cost-aware: least relevance per unit of cost first), where the trial chose one. It is a
    /// setting of the pruning, not of the criterion, so a rules file does not hold it; `prune
    /// --optimize` applies the winner's.
    pub fn selection(params: &Params) -> Result<Option<Selection>> {
        let Some(v) = params.get("selection") else { return Ok(None) };
        // Selection's own parser; a space holds only the two orders a curve can be measured in.
        match v.as_str().map(str::parse::<Selection>) {
            Some(Ok(s @ (Selection::Relevance | Selection::CostAware))) => Ok(Some(s)),
            _ => Err(Error::invalid(format!("trial parameters: selection {v}; use relevance or cost-aware"))),
        }
    }

    /// This space with the selection order as a choice (relevance, cost-aware), unless it has one.
    pub fn with_selection_choice(mut self) -> Result<Self> {
        if !self.params.iter().any(|p| p.name == "selection") {
            let choice = vec![Value::from("relevance"), Value::from("cost-aware")];
            self.params.push(Param { name: "selection".into(), domain: Domain::Categorical(choice), when: Vec::new() });
        }
        self.validate()?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_may_name_several_parameters_and_all_must_hold() {
        let yaml = "method: [lrp, taylor]\nabsolute: [true, false]\n\
                    sum_first: {choice: [false, true], when: {absolute: true, method: lrp}}\n";
        let space = SearchSpace::from_yaml(yaml).unwrap();
        let p = space.params.iter().find(|p| p.name == "sum_first").unwrap();
        let chosen = |m: &str, a: bool| Params::from([("method".into(), m.into()), ("absolute".into(), a.into())]);
        assert!(SearchSpace::active(p, &chosen("lrp", true)));
        assert!(!SearchSpace::active(p, &chosen("lrp", false)));
        assert!(!SearchSpace::active(p, &chosen("taylor", true)));
        assert_eq!(SearchSpace::from_yaml(&space.to_yaml()).unwrap(), space, "{}", space.to_yaml());
    }

    #[test]
    fn conditions_stored_by_older_studies_still_read() {
        let read = |json: &str| serde_json::from_str::<Param>(json).unwrap().when;
        let dom = r#""name": "low_epsilon", "domain": {"float": {"low": 1e-9, "high": 1.0, "log": true}}"#;
        assert_eq!(read(&format!("{{{dom}, \"when\": null}}")), vec![]);
        let old = read(&format!("{{{dom}, \"when\": [\"low_rule\", [\"epsilon\"]]}}"));
        assert_eq!(old, vec![("low_rule".to_string(), vec![Value::from("epsilon")])]);
        let p = serde_json::from_str::<Param>(&format!("{{{dom}, \"when\": [\"low_rule\", [\"epsilon\"]]}}")).unwrap();
        assert_eq!(read(&serde_json::to_string(&p).unwrap()), old, "the current form reads back");
    }

    #[test]
    fn lrp_options_are_gated_on_lrp_where_another_method_is_searched() {
        let err =
            SearchSpace::from_yaml("method: [lrp, taylor]\nlow_rule: [epsilon, zplus]\n").unwrap_err().to_string();
        assert!(err.contains("`low_rule` configures LRP only") && err.contains("when: {method: lrp}"), "{err}");
        // Gated directly, or through the rule it depends on.
        SearchSpace::from_yaml(
            "method: [lrp, taylor]\nlow_rule: {choice: [epsilon, zplus], when: {method: lrp}}\n\
             low_epsilon: {log: [1.0e-6, 1.0], when: {low_rule: epsilon}}\nnormalize: [none, mean]\n",
        )
        .unwrap();
        // LRP alone needs no condition.
        SearchSpace::from_yaml("method: lrp\nlow_rule: [epsilon, zplus]\n").unwrap();
    }

    #[test]
    fn seeds_are_the_stand_alone_criteria_the_space_holds() {
        // (A transformer's space sets each group's softmax treatment to the default one: the
        // same scores, another description; its seeds are named alike.)
        let seed_names = |s: &SearchSpace| s.seeds().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(
            seed_names(&SearchSpace::default_for(ModelTraits { attention: true, gates: true, language_model: false })),
            seed_names(&SearchSpace::default_for(ModelTraits { gates: true, ..Default::default() }))
        );
        let space = SearchSpace::default_for(ModelTraits { gates: true, ..Default::default() });
        let seeds = space.seeds();
        let names: Vec<&str> = seeds.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["lrp-epsilon", "lrp-zplus", "lrp-epsilon-plus", "lrp-alpha2beta1", "gradient", "taylor"]);
        assert_eq!(seeds[0].1, space.default_params());
        for (name, params) in &seeds {
            let (spec, refs) = SearchSpace::criterion(params).unwrap();
            let alone =
                CriterionSpec::parse(name, None, 0).unwrap().with_normalization(Some(Default::default())).unwrap();
            assert_eq!(spec.labelled("x"), alone.labelled("x"), "{name}");
            assert_eq!(refs, None);
        }
        // A space that leaves groups' rules out holds no preset (those layers keep LRP-ε), and
        // one without `method` neither gradient nor Taylor.
        let narrow = SearchSpace::from_yaml("low_rule: [epsilon, zplus]\nabsolute: [true, false]\n").unwrap();
        assert_eq!(seed_names(&narrow), ["lrp-epsilon"]);
    }

    #[test]
    fn a_language_models_space_searches_which_token_the_relevance_explains() {
        let lm = SearchSpace::default_for(ModelTraits { attention: true, gates: true, language_model: true });
        let names: Vec<&str> = lm.params.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"target") && names.contains(&"initial"), "{names:?}");
        assert!(!SearchSpace::default_for(ModelTraits::default()).params.iter().any(|p| p.name == "target"));
        assert_eq!(SearchSpace::from_yaml(&lm.to_yaml()).unwrap(), lm, "{}", lm.to_yaml());
        // The seeds are the stand-alone criteria still: the true token, one-hot.
        let seeds = lm.seeds();
        assert_eq!(seeds[0].1["target"], Value::Bool(true));
        let mut p = lm.default_params();
        p.insert("target".into(), "predicted".into());
        p.insert("initial".into(), "logit".into());
        let (spec, _) = SearchSpace::criterion(&p).unwrap();
        let CriterionSpec::Lrp { lrp, .. } = spec else { panic!("an LRP trial") };
        assert_eq!(lrp.target, crate::attribution::lrp::ExplainedTarget::Predicted);
        assert_eq!(lrp.initial, crate::attribution::lrp::InitialRelevance::Logit);
        let bad = SearchSpace::from_yaml("target: [true, guessed]\n").unwrap_err().to_string();
        assert!(bad.contains("true or predicted"), "{bad}");
    }

    #[test]
    fn the_selection_order_is_a_pruning_setting_a_space_may_search() {
        let space = SearchSpace::default_for(ModelTraits::default()).with_selection_choice().unwrap();
        assert_eq!(space.clone().with_selection_choice().unwrap(), space, "added once");
        let mut p = space.default_params();
        assert_eq!(SearchSpace::selection(&p).unwrap(), Some(Selection::Relevance), "the default order");
        let (plain, _) = SearchSpace::criterion(&p).unwrap();
        p.insert("selection".into(), "cost-aware".into());
        assert_eq!(SearchSpace::selection(&p).unwrap(), Some(Selection::CostAware));
        assert_eq!(SearchSpace::criterion(&p).unwrap().0, plain, "the criterion is the same");
        assert_eq!(SearchSpace::selection(&Params::new()).unwrap(), None);
        // Every method takes it: it needs no condition on `method: lrp`.
        SearchSpace::from_yaml("method: [lrp, taylor]\nselection: [relevance, cost-aware]\n").unwrap();
        let bad = SearchSpace::from_yaml("selection: [uniform]\n").unwrap_err().to_string();
        assert!(bad.contains("relevance or cost-aware"), "{bad}");
    }
}
