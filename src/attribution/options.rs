//! The one text vocabulary of a criterion's options. A CLI rule string (`--rules
//! low=zplus,mid=gamma:0.25`), criterion options (`lrp-epsilon:softmax=cp`) and a search-space
//! trial (`low_rule: gamma, low_gamma: 0.3, normalize: lamp`, translated key by key in
//! `optimize::space`) all become `KEY=VALUE` pairs applied here, so each option is parsed, checked
//! and defaulted in one place. Rules files are the same data through serde.
//!
//! Keys: `all`, `low`, `mid`, `high`, `fc` or `d1`…`dN` = a rule (`epsilon[:ε]`, `gamma[:γ]`,
//! `zplus`, `alphabeta[:α:β]`); `softmax` and `{low,mid,high}_softmax` = attn_lrp | cp | zplus |
//! zplus_bias; `initial` = one_hot | logit; `target` = true | predicted; `batch_norm` = merge | pass; `gate` = constant |
//! uniform; `stabilizer` = a positive number; `sum_first[=true|false]`; `signed` or
//! `absolute=true|false`; `normalize` = none | max | l2 | sum | mean | lamp. `signed` / `absolute`
//! apply to every criterion with a sign choice and `normalize` to every criterion, the rest to
//! LRP only. A key given twice is an error, never "the last one wins".

use super::lrp::{BatchNormTreatment, ExplainedTarget, GateRule, InitialRelevance, SoftmaxRule};
use super::normalize::LayerNormalization;
use super::CriterionSpec;
use crate::error::{Error, Result};
use crate::prune::components::DepthGroup;
/// `KEY=VALUE` items, each key once (the splitter all option texts share).
pub use crate::util::parse_pairs;

/// The keys, for messages.
const KEYS: &str =
    "all, low, mid, high, fc, d1…dN (rules), softmax, {low,mid,high}_softmax, initial, target, batch_norm, \
                    gate, stabilizer, sum_first, signed, absolute, normalize";

/// Applies options to `spec`, in order (`all=…` first, then single groups, overrides).
pub fn apply(spec: &mut CriterionSpec, pairs: &[(String, String)]) -> Result<()> {
    let mut rules = Vec::new();
    for (k, v) in pairs {
        let (k, v) = (k.as_str(), v.as_str());
        match k {
            "normalize" => set_normalization(spec, v.parse()?)?,
            "signed" if v.is_empty() => set_absolute(spec, false)?,
            "absolute" => set_absolute(spec, flag(k, v)?)?,
            _ => {
                let CriterionSpec::Lrp { lrp, .. } = spec else {
                    crate::bail!(
                        "option `{k}` only applies to LRP criteria; {} takes signed, absolute and normalize",
                        spec.label()
                    );
                };
                match k {
                    "softmax" => lrp.softmax = SoftmaxRule::parse(v)?,
                    "initial" => {
                        lrp.initial =
                            named(k, v, &[("one_hot", InitialRelevance::OneHot), ("logit", InitialRelevance::Logit)])?
                    }
                    "target" => {
                        lrp.target =
                            named(k, v, &[("true", ExplainedTarget::True), ("predicted", ExplainedTarget::Predicted)])?
                    }
                    "batch_norm" => {
                        lrp.batch_norm =
                            named(k, v, &[("merge", BatchNormTreatment::Merge), ("pass", BatchNormTreatment::Pass)])?
                    }
                    "gate" => {
                        lrp.gate = named(k, v, &[("constant", GateRule::Constant), ("uniform", GateRule::Uniform)])?
                    }
                    "sum_first" => lrp.sum_first = v.is_empty() || flag(k, v)?,
                    "stabilizer" => {
                        lrp.stabilizer =
                            v.parse().ok().filter(|s: &f64| *s > 0.0 && s.is_finite()).ok_or_else(|| {
                                Error::invalid(format!("stabilizer takes a positive number, got `{v}`"))
                            })?
                    }
                    _ => match k.strip_suffix("_softmax").map(str::parse::<DepthGroup>) {
                        Some(Ok(g)) if g != DepthGroup::Fc => {
                            lrp.softmax_by_group.insert(g, SoftmaxRule::parse(v)?);
                        }
                        Some(_) => crate::bail!(
                            "unknown option `{k}`: a softmax treatment per depth group exists for low, mid and high \
                             (attention layers are fed by their projections' group)"
                        ),
                        None => rules.push((k.to_string(), v.to_string())),
                    },
                }
            }
        }
    }
    if !rules.is_empty() {
        let CriterionSpec::Lrp { lrp, .. } = spec else { unreachable!("rules are collected for LRP only") };
        lrp.rules.apply(&rules).map_err(|e| Error::invalid(format!("{e}; options known: {KEYS}")))?;
    }
    spec.check()
}

fn flag(key: &str, v: &str) -> Result<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => crate::bail!("`{key}` takes true or false, got `{v}`"),
    }
}

fn named<T: Copy>(key: &str, v: &str, choices: &[(&str, T)]) -> Result<T> {
    choices.iter().find(|(n, _)| *n == v).map(|(_, t)| *t).ok_or_else(|| {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        Error::invalid(format!("`{key}` takes {}, got `{v}`", names.join(" or ")))
    })
}

fn set_absolute(spec: &mut CriterionSpec, value: bool) -> Result<()> {
    match spec {
        CriterionSpec::Lrp { absolute, .. }
        | CriterionSpec::Gradient { absolute, .. }
        | CriterionSpec::Taylor { absolute, .. }
        | CriterionSpec::IntegratedGradients { absolute, .. } => {
            *absolute = value;
            Ok(())
        }
        _ => crate::bail!("{} has no sign to choose (signed / absolute)", spec.label()),
    }
}

/// Fixes `spec`'s normalisation; one it already fixes differently is a conflict, never
/// silently replaced (a rules file says what a study scored).
pub fn set_normalization(spec: &mut CriterionSpec, how: LayerNormalization) -> Result<()> {
    let slot = spec.normalization_mut();
    match *slot {
        Some(had) if had != how => crate::bail!(
            "the criterion already ranks with normalize: {had}, and {how} was asked for as well; give one (edit \
             the rules file or drop --normalize)"
        ),
        _ => {
            *slot = Some(how);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::lrp::Rule;

    fn lrp(text: &str) -> Result<CriterionSpec> {
        let mut s = CriterionSpec::from_name("lrp-epsilon", None, 0)?;
        apply(&mut s, &parse_pairs(text)?)?;
        Ok(s)
    }

    #[test]
    fn every_key_lands_in_its_field() {
        let CriterionSpec::Lrp { lrp, absolute, .. } =
            lrp("low=zplus;mid=gamma:0.3,high=epsilon:0.01,fc=alphabeta,softmax=cp,high_softmax=zplus,initial=logit,\
             target=predicted,batch_norm=pass,gate=uniform,stabilizer=1e-4,sum_first,signed,normalize=lamp")
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(lrp.rules.low, Rule::Zplus);
        assert_eq!(lrp.rules.mid, Rule::Gamma { gamma: Some(0.3) });
        assert_eq!(lrp.rules.high, Rule::Epsilon { epsilon: 0.01 });
        assert_eq!(lrp.rules.fc, Rule::Alphabeta { alpha: 2.0, beta: 1.0 });
        assert_eq!(lrp.softmax, SoftmaxRule::Cp);
        assert_eq!(lrp.softmax_by_group[&DepthGroup::High], SoftmaxRule::Zplus);
        assert_eq!(lrp.initial, InitialRelevance::Logit);
        assert_eq!(lrp.target, ExplainedTarget::Predicted);
        assert_eq!(lrp.batch_norm, BatchNormTreatment::Pass);
        assert_eq!(lrp.gate, GateRule::Uniform);
        assert_eq!(lrp.stabilizer, 1e-4);
        assert!(lrp.sum_first && !absolute);
        assert_eq!(lrp.normalize, Some(LayerNormalization::Lamp));
    }

    #[test]
    fn twice_unknown_and_misplaced_keys_are_refused() {
        for (text, want) in [
            ("low=zplus,low=epsilon", "given twice"),
            ("normalize=mean;normalize=max", "given twice"),
            ("middle=zplus", "unknown depth group"),
            ("mid", "not GROUP=RULE"),
            ("d1=zplus,low=epsilon", "not both"),
            ("d1=zplus,d3=zplus", "missing: d2"),
            ("gate=half", "constant or uniform"),
            ("normalize=median", "unknown normalisation"),
            ("fc_softmax=cp", "low, mid and high"),
            ("stabilizer=-1", "positive"),
        ] {
            let e = lrp(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        let mut g = CriterionSpec::from_name("gradient", None, 0).unwrap();
        let e = apply(&mut g, &parse_pairs("softmax=cp").unwrap()).unwrap_err().to_string();
        assert!(e.contains("only applies to LRP"), "{e}");
        apply(&mut g, &parse_pairs("signed,normalize=max").unwrap()).unwrap();
        assert_eq!(g.normalization(), Some(LayerNormalization::Max));
    }

    #[test]
    fn a_fixed_normalisation_is_not_silently_replaced() {
        let mut s = lrp("normalize=lamp").unwrap();
        set_normalization(&mut s, LayerNormalization::Lamp).unwrap();
        let e = set_normalization(&mut s, LayerNormalization::Mean).unwrap_err().to_string();
        assert!(e.contains("normalize: lamp") && e.contains("mean"), "{e}");
    }
}
