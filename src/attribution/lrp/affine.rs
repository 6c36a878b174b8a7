//! A linear layer (Conv2d or Linear) as LRP sees it: z = W·x + b, and the transposed map that
//! carries a signal from the output back to the input (the gradient of W·x with respect to x).

use crate::error::Result;
use crate::graph::Conv2d;
use tch::Tensor;

/// Which linear map.
#[derive(Clone, Debug)]
pub enum AffineKind {
    Conv(Conv2d),
    Linear,
    /// A linear map over dimension 1 of a map (channels).
    ChannelLinear,
}

/// A linear layer with (possibly modified) parameters.
pub struct Affine<'a> {
    pub kind: &'a AffineKind,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl AffineKind {
    /// W·x + b with the given parameters.
    pub fn forward(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        Ok(match self {
            AffineKind::Conv(c) => x.f_conv2d(w, b, c.stride, c.padding, c.dilation, c.groups)?,
            AffineKind::Linear => x.f_linear(w, b)?,
            AffineKind::ChannelLinear => x.f_movedim_int(1, -1)?.f_linear(w, b)?.f_movedim_int(-1, 1)?,
        })
    }

    /// Wᵀ·g: the gradient of W·x with respect to x for output gradient `g`, shaped like `x`.
    pub fn backward(&self, g: &Tensor, w: &Tensor, x_size: &[i64]) -> Result<Tensor> {
        Ok(match self {
            AffineKind::Conv(c) => {
                let out = g.size();
                let pad = |d: usize| {
                    x_size[2 + d]
                        - ((out[2 + d] - 1) * c.stride[d] - 2 * c.padding[d] + c.dilation[d] * (c.kernel[d] - 1) + 1)
                };
                g.f_conv_transpose2d(w, None::<&Tensor>, c.stride, c.padding, [pad(0), pad(1)], c.groups, c.dilation)?
            }
            AffineKind::Linear => g.f_matmul(w)?,
            AffineKind::ChannelLinear => g.f_movedim_int(1, -1)?.f_matmul(w)?.f_movedim_int(-1, 1)?,
        })
    }
}
