//! Constant padding of a map's height and width, possibly asymmetric: TensorFlow's "same"
//! padding (`tf_` ports in timm pad one more row and column at the end than at the start), or a
//! max pooling's −∞ border.
//!
//! LRP: the padded positions are constants, not inputs, so the relevance that reaches them stays
//! there; the input receives the relevance of its own positions (zero padding before a
//! convolution contributes nothing to z, so with the ε- and z-rules none reaches the border).

use super::{check_range, map_rank, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// What the border holds (JSON has no −∞, so the value is named).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fill {
    /// Zeros (convolution padding).
    #[default]
    Zero,
    /// −∞: a max pooling's border, never the maximum.
    NegInfinity,
}

impl Fill {
    /// The border's value.
    pub fn value(self) -> f64 {
        match self {
            Fill::Zero => 0.0,
            Fill::NegInfinity => f64::NEG_INFINITY,
        }
    }
}

/// Pads [top, left, bottom, right] and what they hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pad2d {
    pub pads: [i64; 4],
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fill: Fill,
}

fn is_zero(f: &Fill) -> bool {
    *f == Fill::Zero
}

impl Pad2d {
    /// Zero padding.
    pub fn zeros(pads: [i64; 4]) -> Self {
        Pad2d { pads, fill: Fill::Zero }
    }
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        // torch's order: (left, right, top, bottom).
        let [t, l, b, r] = self.pads;
        Ok(x.f_pad([l, r, t, b], "constant", self.fill.value())?)
    }
}

impl OpKind for Pad2d {
    fn describe(&self) -> String {
        let [t, l, b, r] = self.pads;
        let fill = if self.fill == Fill::Zero { "" } else { " with −∞" };
        format!("top {t} left {l} bottom {b} right {r}{fill}")
    }
    fn check(&self) -> std::result::Result<(), String> {
        self.pads.iter().try_for_each(|&p| check_range("pads", p, 0, super::super::MAX_SPATIAL))
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        map_rank(inputs[0])
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        self.apply(xs[0])
    }
    fn lrp(&self, _cx: &dyn LrpContext, xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (h, w) = (xs[0].size()[xs[0].dim() - 2], xs[0].size()[xs[0].dim() - 1]);
        let inner = r.f_narrow(-2, self.pads[0], h)?.f_narrow(-1, self.pads[1], w)?;
        Ok(vec![Some(inner)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let [t, l, b, r] = self.pads;
        let pads = cx.ints("pads", &[0, 0, t, l, 0, 0, b, r])?;
        let value = cx.scalar("value", self.fill.value() as f32)?;
        Ok(cx.output("Pad", &[cx.x(0), pads, value], &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_the_sides_it_names() {
        let x = Tensor::ones([1, 1, 2, 3], (tch::Kind::Float, tch::Device::Cpu));
        let y = Pad2d::zeros([1, 0, 0, 2]).apply(&x).unwrap();
        assert_eq!(y.size(), [1, 1, 3, 5]);
        assert_eq!(y.sum(tch::Kind::Float).double_value(&[]), 6.0);
        assert_eq!(y.double_value(&[0, 0, 0, 0]), 0.0);
        assert_eq!(y.double_value(&[0, 0, 1, 0]), 1.0);
    }
}
