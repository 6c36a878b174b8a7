//! Criteria as plain data: what `--criterion`, rules files and the optimiser all speak.

use super::gradient::{Activation, Gradient, Taylor};
use super::integrated_gradients::IntegratedGradients;
use super::lrp::{GroupRules, Lrp, LrpConfig, Rule};
use super::normalize::{normalize_per_layer, LayerNormalization, RankingUse};
use super::random::Random;
use super::reader_input::{ReaderInput, ReaderMetric};
use super::weight::{WeightMagnitude, WeightNorm};
use super::{Criterion, Normalized, PerSample, Scores};
use crate::error::{Error, Result};
use crate::prune::components::ComponentSet;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A fully specified criterion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "criterion", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CriterionSpec {
    /// Layer-wise Relevance Propagation with per-depth-group rules.
    Lrp {
        /// Preset this configuration came from, for reports (e.g. `lrp-epsilon`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        lrp: LrpConfig,
        /// |R| per sample before summing (true), or signed R.
        #[serde(default = "yes")]
        absolute: bool,
    },
    /// Seeded uniform random scores.
    Random {
        #[serde(default)]
        seed: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        normalize: Option<LayerNormalization>,
    },
    /// L1 / L2 norm of each unit's weights.
    Weight {
        #[serde(default)]
        norm: WeightNorm,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        normalize: Option<LayerNormalization>,
    },
    /// Mean |activation|.
    Activation {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        normalize: Option<LayerNormalization>,
    },
    /// Gradient of the true-class logit.
    Gradient {
        #[serde(default = "yes")]
        absolute: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        normalize: Option<LayerNormalization>,
    },
    /// |activation × gradient|.
    Taylor {
        #[serde(default = "yes")]
        absolute: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        normalize: Option<LayerNormalization>,
    },
    /// Wanda-sp: the reader's |weight| column sums times the input's L2 norm per channel.
    WandaSp {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        normalize: Option<LayerNormalization>,
    },
    /// FLAP's fluctuation: the reader's squared column norms times the input's variance.
    Flap {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        normalize: Option<LayerNormalization>,
    },
    /// Integrated Gradients with a zero baseline at the latent read points.
    IntegratedGradients {
        #[serde(default = "twenty")]
        steps: usize,
        #[serde(default = "yes")]
        absolute: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        normalize: Option<LayerNormalization>,
    },
}

fn yes() -> bool {
    true
}
fn twenty() -> usize {
    20
}

/// Names accepted by [`CriterionSpec::from_name`].
pub const CRITERION_NAMES: &[&str] = &[
    "lrp",
    "lrp-epsilon",
    "lrp-zplus",
    "lrp-faithful",
    "lrp-epsilon-plus",
    "lrp-alpha2beta1",
    "random",
    "weight",
    "weight-l2",
    "activation",
    "gradient",
    "taylor",
    "integrated-gradients",
    "wanda-sp",
    "flap",
];

/// The default comparison: the LRP presets and every baseline.
pub const DEFAULT_COMPARISON: &[&str] = &[
    "lrp-epsilon",
    "lrp-zplus",
    "lrp-faithful",
    "random",
    "weight",
    "activation",
    "gradient",
    "taylor",
    "integrated-gradients",
];

fn lrp(label: &str, rules: GroupRules) -> CriterionSpec {
    CriterionSpec::Lrp { label: Some(label.into()), lrp: LrpConfig::new(rules), absolute: true }
}

impl CriterionSpec {
    /// A named criterion, optionally with options: `NAME[:KEY=VALUE,…]` (see
    /// [`super::options`]), e.g. `lrp-epsilon:softmax=cp` or `gradient:normalize=mean`. For `lrp`,
    /// `rules` (`low=epsilon,mid=gamma:0.25,…`, any option of [`super::options`], or a rules
    /// file) sets the method, starting from ε everywhere; the presets take no `rules`. `seed`
    /// seeds the random baseline.
    pub fn from_name(name: &str, rules: Option<&str>, seed: u64) -> Result<Self> {
        if let Some((base, opts)) = name.split_once(':') {
            return Self::from_name(base, rules, seed)?.with_options(opts);
        }
        let eps = || Rule::Epsilon { epsilon: super::lrp::rules::default_epsilon() };
        if rules.is_some() && name != "lrp" {
            crate::bail!("--rules only applies to `--criterion lrp` (got `{name}`)");
        }
        let normalize = None;
        Ok(match name {
            "lrp" => match rules {
                Some(r) if Path::new(r).is_file() => Self::from_file(Path::new(r))?,
                Some(r) => {
                    let mut spec = CriterionSpec::Lrp { label: None, lrp: LrpConfig::default(), absolute: true };
                    super::options::apply(&mut spec, &super::options::parse_pairs(r)?)?;
                    spec
                }
                None => lrp("lrp-epsilon", GroupRules::all(eps())),
            },
            "lrp-epsilon" => lrp(name, GroupRules::all(eps())),
            "lrp-zplus" => lrp(name, GroupRules::all(Rule::Zplus)),
            // Input-faithful composite (zennit EpsilonGammaBox without the box rule, which acts only
            // on the input layer and so cannot change component scores): γ in the deep groups
            // (0.25 on convs, 0.05 on linear layers), ε on the classifier.
            "lrp-faithful" => {
                let mut r = GroupRules::all(Rule::Gamma { gamma: None });
                r.fc = eps();
                lrp(name, r)
            }
            // zennit EpsilonPlus: z+ in the deep groups, ε on the classifier.
            "lrp-epsilon-plus" => {
                let mut r = GroupRules::all(Rule::Zplus);
                r.fc = eps();
                lrp(name, r)
            }
            "lrp-alpha2beta1" => {
                let mut r = GroupRules::all(Rule::Alphabeta { alpha: 2.0, beta: 1.0 });
                r.fc = eps();
                lrp(name, r)
            }
            "random" => CriterionSpec::Random { seed, normalize },
            "weight" => CriterionSpec::Weight { norm: WeightNorm::L1, normalize },
            "weight-l2" => CriterionSpec::Weight { norm: WeightNorm::L2, normalize },
            "activation" => CriterionSpec::Activation { normalize },
            "gradient" => CriterionSpec::Gradient { absolute: true, normalize },
            "taylor" => CriterionSpec::Taylor { absolute: true, normalize },
            "wanda-sp" => CriterionSpec::WandaSp { normalize },
            "flap" => CriterionSpec::Flap { normalize },
            "integrated-gradients" | "ig" => {
                CriterionSpec::IntegratedGradients { steps: 20, absolute: true, normalize }
            }
            other => crate::bail!("unknown criterion `{other}`; known: {}", CRITERION_NAMES.join(", ")),
        })
    }

    /// A criterion as the command line names it: `file:RULES.yaml` (a rules file, e.g. from
    /// `relprune optimize`) or a name with options ([`Self::from_name`]). `rules` applies to
    /// `lrp` only; beside a rules file it is an error, not ignored.
    pub fn parse(text: &str, rules: Option<&str>, seed: u64) -> Result<Self> {
        match text.strip_prefix("file:") {
            Some(_) if rules.is_some() => {
                crate::bail!("--rules and a rules file (`{text}`) both set the method; give one")
            }
            Some(path) => Self::from_file(Path::new(path)),
            None => Self::from_name(text, rules, seed),
        }
    }

    /// Applies `KEY=VALUE` options separated by `;` or `,` (the vocabulary of
    /// [`super::options`]): e.g. `softmax=cp`, `signed`, `initial=logit`, `batch_norm=pass`,
    /// `normalize=mean`. A preset's label records them (`lrp-epsilon:softmax=cp`).
    pub fn with_options(mut self, opts: &str) -> Result<Self> {
        super::options::apply(&mut self, &super::options::parse_pairs(opts)?)?;
        if let CriterionSpec::Lrp { label: Some(l), .. } = &mut self {
            *l = format!("{l}:{opts}");
        }
        Ok(self)
    }

    /// The same criterion under another report label (LRP only: the other criteria are named by
    /// their kind), e.g. `lrp-optimised` for a study's winner.
    pub fn labelled(self, name: &str) -> Self {
        match self {
            CriterionSpec::Lrp { lrp, absolute, .. } => CriterionSpec::Lrp { label: Some(name.into()), lrp, absolute },
            other => other,
        }
    }

    /// Whether scoring needs reference samples (all but the weight and random criteria).
    pub fn needs_references(&self) -> bool {
        !matches!(self, CriterionSpec::Weight { .. } | CriterionSpec::Random { .. })
    }

    /// The per-layer normalisation this criterion fixes (None: the ranking's default).
    pub fn normalization(&self) -> Option<LayerNormalization> {
        match self {
            CriterionSpec::Lrp { lrp, .. } => lrp.normalize,
            CriterionSpec::Random { normalize, .. }
            | CriterionSpec::Weight { normalize, .. }
            | CriterionSpec::Activation { normalize }
            | CriterionSpec::Gradient { normalize, .. }
            | CriterionSpec::Taylor { normalize, .. }
            | CriterionSpec::WandaSp { normalize }
            | CriterionSpec::Flap { normalize }
            | CriterionSpec::IntegratedGradients { normalize, .. } => *normalize,
        }
    }

    /// Where the normalisation is kept (set it with [`super::options::set_normalization`]).
    pub(crate) fn normalization_mut(&mut self) -> &mut Option<LayerNormalization> {
        match self {
            CriterionSpec::Lrp { lrp, .. } => &mut lrp.normalize,
            CriterionSpec::Random { normalize, .. }
            | CriterionSpec::Weight { normalize, .. }
            | CriterionSpec::Activation { normalize }
            | CriterionSpec::Gradient { normalize, .. }
            | CriterionSpec::Taylor { normalize, .. }
            | CriterionSpec::WandaSp { normalize }
            | CriterionSpec::Flap { normalize }
            | CriterionSpec::IntegratedGradients { normalize, .. } => normalize,
        }
    }

    /// This criterion with its normalisation fixed to `how` where it leaves it open (`--normalize`);
    /// a different one it fixes already is an error.
    pub fn with_normalization(mut self, how: Option<LayerNormalization>) -> Result<Self> {
        if let Some(how) = how {
            super::options::set_normalization(&mut self, how)?;
        }
        Ok(self)
    }

    /// The normalisation a ranking for `purpose` uses: the criterion's own, else the default.
    pub fn normalization_for(&self, comps: &ComponentSet, purpose: RankingUse) -> LayerNormalization {
        self.normalization().unwrap_or(LayerNormalization::default_for(&comps.kinds, purpose))
    }

    /// Scores of this criterion (from [`Criterion::score`] of [`Self::build`], which applies a
    /// normalisation the criterion fixes) ready for a ranking for `purpose`: where the criterion
    /// leaves its normalisation open, the default of [`LayerNormalization::default_for`].
    pub fn ranking_scores(&self, scores: &Scores, comps: &ComponentSet, purpose: RankingUse) -> Scores {
        match self.normalization() {
            Some(_) => scores.clone(),
            None => normalize_per_layer(scores, comps, LayerNormalization::default_for(&comps.kinds, purpose)),
        }
    }

    /// Reads a criterion (typically an LRP rules file written by `relprune optimize`) from
    /// JSON or YAML. Unknown keys are errors.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::util::read_text(path)?;
        let spec: CriterionSpec = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(Error::json(path.display().to_string()))?
        } else {
            serde_yaml_ng::from_str(&text)
                .map_err(|e| Error::invalid(format!("invalid rules file {}: {e}", path.display())))?
        };
        spec.check()?;
        Ok(spec)
    }

    /// Writes this criterion as YAML (or JSON for a `.json` path), atomically.
    pub fn to_file(&self, path: &Path) -> Result<()> {
        if path.extension().is_some_and(|e| e == "json") {
            return crate::util::write_json_atomic(path, self);
        }
        let text = serde_yaml_ng::to_string(self).map_err(|e| Error::invalid(format!("cannot write YAML: {e}")))?;
        crate::util::write_atomic(path, text.as_bytes())
    }

    /// Rejects impossible parameters.
    pub fn check(&self) -> Result<()> {
        match self {
            CriterionSpec::Lrp { lrp, .. } => lrp.check(),
            CriterionSpec::IntegratedGradients { steps: 0, .. } => {
                crate::bail!("integrated gradients needs at least one step")
            }
            _ => Ok(()),
        }
    }

    /// Name for tables and plots.
    pub fn label(&self) -> String {
        match self {
            CriterionSpec::Lrp { label: Some(l), .. } => l.clone(),
            CriterionSpec::Lrp { lrp, absolute, .. } => format!(
                "lrp[{}{}{}]",
                lrp.rules.label(),
                match (*absolute, lrp.sum_first) {
                    (false, _) => ",signed",
                    (true, true) => ",|sum|",
                    (true, false) => "",
                },
                match lrp.normalize {
                    Some(n) if !n.is_none() => format!(",{n}"),
                    _ => String::new(),
                },
            ),
            CriterionSpec::Random { .. } => "random".into(),
            CriterionSpec::Weight { norm: WeightNorm::L1, .. } => "weight".into(),
            CriterionSpec::Weight { norm: WeightNorm::L2, .. } => "weight-l2".into(),
            CriterionSpec::Activation { .. } => "activation".into(),
            CriterionSpec::Gradient { .. } => "gradient".into(),
            CriterionSpec::Taylor { .. } => "taylor".into(),
            CriterionSpec::WandaSp { .. } => "wanda-sp".into(),
            CriterionSpec::Flap { .. } => "flap".into(),
            CriterionSpec::IntegratedGradients { .. } => "integrated-gradients".into(),
        }
    }

    /// The executable criterion; sample-based ones process `batch_size` references at a time.
    /// Its scores carry the normalisation the criterion fixes (none where it leaves it open).
    pub fn build(&self, batch_size: usize) -> Result<Box<dyn Criterion>> {
        self.check()?;
        let b = batch_size.max(1);
        let scored: Box<dyn Criterion> = match self.clone() {
            CriterionSpec::Lrp { lrp, absolute, .. } => {
                let sum_first = lrp.sum_first;
                let inner = Lrp { config: lrp, label: self.label() };
                Box::new(PerSample { inner, absolute, sum_first, batch_size: b })
            }
            CriterionSpec::Random { seed, .. } => Box::new(Random { seed }),
            CriterionSpec::Weight { norm, .. } => Box::new(WeightMagnitude { norm }),
            CriterionSpec::Activation { .. } => Box::new(PerSample::new(Activation, true, b)),
            CriterionSpec::Gradient { absolute, .. } => Box::new(PerSample::new(Gradient, absolute, b)),
            CriterionSpec::Taylor { absolute, .. } => Box::new(PerSample::new(Taylor, absolute, b)),
            CriterionSpec::WandaSp { .. } => Box::new(ReaderInput { metric: ReaderMetric::Wanda, batch_size: b }),
            CriterionSpec::Flap { .. } => Box::new(ReaderInput { metric: ReaderMetric::Fluctuation, batch_size: b }),
            CriterionSpec::IntegratedGradients { steps, absolute, .. } => {
                Box::new(PerSample::new(IntegratedGradients { steps }, absolute, b))
            }
        };
        Ok(match self.normalization() {
            Some(how) if !how.is_none() => Box::new(Normalized { inner: scored, how }),
            _ => scored,
        })
    }
}
