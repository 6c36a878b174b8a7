//! An affine layer (Conv2d, Linear, ChannelLinear) as LRP's rules see it: the op's map
//! z = W·x + b and its transpose ([`AffineOp`], implemented by each op in its own file), with
//! the parameters the rule works on (the layer's, or a BatchNorm folded in).

use crate::graph::ops::AffineOp;
use tch::Tensor;

/// An affine layer with (possibly modified) parameters.
pub struct Affine<'a> {
    pub op: &'a dyn AffineOp,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}
