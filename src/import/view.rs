//! How an ONNX value relates to the relprune tensor that carries it.
//!
//! Exporters reshape and transpose freely (torch's attention works on (T, B, E), ConvNeXt
//! permutes to channels-last, a classifier flattens), while relprune's ops keep one canonical
//! layout: (B, C, H, W) maps, (B, T, C) tokens, (B, C) features. A [`View`] records, for every
//! element of the ONNX value on the example input, its flat index in the canonical tensor. Layout
//! ops only change the view (they are run on the index tensor itself, by the same interpreter
//! that runs the file), and the importer then asks the view what it is: the canonical tensor, a
//! flatten of a map, patches as tokens, or rows with the channel dimension last.

use crate::error::Result;
use tch::{Kind, Tensor};

/// The identity index of a canonical shape.
pub fn identity(shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    Tensor::arange(n, (Kind::Int64, crate::device::HOST)).reshape(shape)
}

/// Whether `index` is exactly the canonical tensor of `canon`.
pub fn is_identity(index: &Tensor, canon: &[i64]) -> bool {
    index.size() == canon && index.equal(&identity(canon))
}

/// The channel dimension of a canonical shape: 1 for maps (rank 4), the last otherwise.
pub fn channel_dim(canon: &[i64]) -> usize {
    if canon.len() == 4 {
        1
    } else {
        canon.len() - 1
    }
}

/// Stride of the channel dimension in the canonical flat index.
fn channel_stride(canon: &[i64]) -> i64 {
    canon[channel_dim(canon) + 1..].iter().product()
}

/// Whether the view's last dimension runs over the canonical channels in order (so an op over
/// the last dimension is the canonical op over channels) and every row starts at channel 0.
pub fn channels_last(index: &Tensor, canon: &[i64]) -> bool {
    let c = canon[channel_dim(canon)];
    let size = index.size();
    if size.last() != Some(&c) || size.len() < 2 {
        return false;
    }
    let stride = channel_stride(canon);
    let rows = index.reshape([-1, c]);
    let base = rows.narrow(1, 0, 1);
    let steps = Tensor::arange(c, (Kind::Int64, crate::device::HOST)).g_mul_scalar(stride).unsqueeze(0);
    let starts_at_zero = base.divide_scalar_mode(stride, "floor").remainder(c).eq(0).all().int64_value(&[]) == 1;
    starts_at_zero && rows.g_sub(&base).equal(&steps.expand_as(&rows))
}

/// The view of an op's output that keeps the rows of a [`channels_last`] input view and has
/// `new_c` channels.
pub fn with_channels(index: &Tensor, canon: &[i64], new_c: i64) -> Result<(Tensor, Vec<i64>)> {
    let ch = channel_dim(canon);
    let c = canon[ch];
    let stride = channel_stride(canon);
    let mut new_canon = canon.to_vec();
    new_canon[ch] = new_c;
    let rows = index.f_reshape([-1, c])?;
    let base = rows.f_narrow(1, 0, 1)?;
    // base = outer·(c·stride) + inner (channel 0): re-spread with new_c channels.
    let outer = base.f_divide_scalar_mode(c * stride, "floor")?;
    let inner = base.f_remainder(stride)?;
    let new_base = outer.f_mul_scalar(new_c * stride)?.f_add(&inner)?;
    let steps = Tensor::f_arange(new_c, (Kind::Int64, crate::device::HOST))?.f_mul_scalar(stride)?.f_unsqueeze(0)?;
    let mut shape = index.size();
    *shape.last_mut().expect("rank ≥ 2") = new_c;
    Ok((new_base.f_add(&steps)?.f_reshape(shape.as_slice())?, new_canon))
}

/// Whether the view is `flatten(start_dim=1)` of a canonical map: (B, C·H·W) in order.
pub fn is_flatten_of_map(index: &Tensor, canon: &[i64]) -> bool {
    canon.len() == 4
        && index.size() == [canon[0], canon[1] * canon[2] * canon[3]]
        && index.equal(&identity(canon).reshape([canon[0], -1]))
}

/// The view of tokens transposed: (B, C, T) of canonical (B, T, C), `x.transpose(1, 2)`.
pub fn transposed_tokens(canon: &[i64]) -> Tensor {
    identity(canon).transpose(1, 2)
}

/// Whether the view is tokens transposed (what a token-mixing layer or a 1-d pooler reads).
pub fn is_transposed_tokens(index: &Tensor, canon: &[i64]) -> bool {
    canon.len() == 3 && index.size() == [canon[0], canon[2], canon[1]] && index.equal(&transposed_tokens(canon))
}

/// Whether the view is a map's patches as tokens: (B, H·W, C), `x.flatten(2).transpose(1, 2)`.
pub fn is_patches_to_tokens(index: &Tensor, canon: &[i64]) -> bool {
    canon.len() == 4
        && index.size() == [canon[0], canon[2] * canon[3], canon[1]]
        && index.equal(&identity(canon).flatten(2, 3).transpose(1, 2))
}

/// The ONNX value of a canonical tensor seen through `index`.
pub fn from_canonical(canonical: &Tensor, index: &Tensor) -> Result<Tensor> {
    Ok(canonical.f_flatten(0, -1)?.f_index_select(0, &index.f_flatten(0, -1)?)?.f_reshape(index.size().as_slice())?)
}
