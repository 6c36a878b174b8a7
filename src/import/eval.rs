//! A reference interpreter for the ONNX operators the importer reads, on libtorch. It folds the
//! shape arithmetic exporters emit into constants and gives the concrete value of every tensor
//! on an example input, which the importer uses to recognise patterns and to check each mapped
//! layer against the file's own semantics.

use super::proto::{AttrValue, ONode};
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// Normalises a possibly negative axis against `rank`.
pub fn axis(a: i64, rank: usize) -> Result<i64> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if !(0..r.max(1)).contains(&v) {
        crate::bail!("axis {a} is out of range for rank {rank}");
    }
    Ok(v)
}

/// ONNX `to` / element codes → libtorch kinds.
pub fn kind_of(code: i64) -> Result<Kind> {
    Ok(match code {
        1 => Kind::Float,
        2 => Kind::Uint8,
        3 => Kind::Int8,
        5 => Kind::Int16,
        6 => Kind::Int,
        7 => Kind::Int64,
        9 => Kind::Bool,
        10 => Kind::Half,
        11 => Kind::Double,
        16 => Kind::BFloat16,
        _ => crate::bail!("element type {code} is not supported"),
    })
}

/// The values of a 1-d integer tensor.
pub fn int_list(t: &Tensor) -> Result<Vec<i64>> {
    Ok(Vec::<i64>::try_from(t.f_to_kind(Kind::Int64)?.f_flatten(0, -1)?)?)
}

fn float_scalar(t: &Tensor) -> Result<f64> {
    Ok(t.f_to_kind(Kind::Double)?.f_flatten(0, -1)?.f_double_value(&[0])?)
}

fn is_int(t: &Tensor) -> bool {
    !t.is_floating_point()
}

/// Two operands with ONNX's type rule (both the same type): an integer operand meeting a float
/// one is cast (exporters only mix them in shape arithmetic).
fn promote(a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    if a.kind() == b.kind() {
        return Ok((a.shallow_clone(), b.shallow_clone()));
    }
    let k = if a.is_floating_point() {
        a.kind()
    } else if b.is_floating_point() {
        b.kind()
    } else {
        Kind::Int64
    };
    Ok((a.f_to_kind(k)?, b.f_to_kind(k)?))
}

/// Symmetric (begin, end) pads, or None.
pub fn symmetric_pads(pads: &[i64], spatial: usize) -> Option<Vec<i64>> {
    if pads.is_empty() {
        return Some(vec![0; spatial]);
    }
    if pads.len() != 2 * spatial || pads[..spatial] != pads[spatial..] {
        return None;
    }
    Some(pads[..spatial].to_vec())
}

fn reduce_axes(n: &ONode, xs: &[Option<&Tensor>], rank: usize) -> Result<Option<Vec<i64>>> {
    let raw = match (n.ints("axes"), xs.get(1).copied().flatten()) {
        (Some(a), _) => a.to_vec(),
        (None, Some(t)) => int_list(t)?,
        (None, None) => {
            return Ok(if n.int("noop_with_empty_axes", 0) == 1 { Some(Vec::new()) } else { None });
        }
    };
    Ok(Some(raw.iter().map(|&a| axis(a, rank)).collect::<Result<_>>()?))
}

fn need<'a>(n: &ONode, xs: &[Option<&'a Tensor>], i: usize) -> Result<&'a Tensor> {
    xs.get(i).copied().flatten().ok_or_else(|| Error::invalid(format!("{}: input {i} is missing", n.describe())))
}

/// Runs one node. `xs` holds the inputs (None for omitted optional ones).
pub fn run(n: &ONode, xs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
    let x = || need(n, xs, 0);
    let one = |t: Tensor| Ok(vec![t]);
    match n.op.as_str() {
        "Identity" | "Dropout" => one(x()?.shallow_clone()),
        "Constant" => {
            let t = match n.attrs.iter().next() {
                Some((_, AttrValue::Tensor(t))) => t.shallow_clone(),
                Some((k, AttrValue::Float(v))) if k == "value_float" => Tensor::from(*v),
                Some((k, AttrValue::Int(v))) if k == "value_int" => Tensor::from(*v),
                Some((k, AttrValue::Ints(v))) if k == "value_ints" => Tensor::from_slice(v),
                Some((k, AttrValue::Floats(v))) if k == "value_floats" => Tensor::from_slice(v),
                _ => crate::bail!("{}: unsupported Constant form", n.describe()),
            };
            one(t)
        }
        "Shape" => {
            let s = x()?.size();
            let r = s.len() as i64;
            let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
            let (a, b) = (clamp(n.int("start", 0)), clamp(n.int("end", r)));
            one(Tensor::from_slice(&s[a as usize..b.max(a) as usize]))
        }
        "Size" => one(Tensor::from(x()?.numel() as i64)),
        "ConstantOfShape" => {
            let shape = int_list(x()?)?;
            let t = match n.attrs.get("value") {
                Some(AttrValue::Tensor(v)) => v.f_reshape([1])?.f_expand(shape.as_slice(), false)?.f_contiguous()?,
                _ => Tensor::f_zeros(shape.as_slice(), (Kind::Float, crate::device::HOST))?,
            };
            one(t)
        }
        "Range" => {
            let (s, l, d) = (need(n, xs, 0)?, need(n, xs, 1)?, need(n, xs, 2)?);
            if is_int(s) {
                let (s, l, d) = (int_list(s)?[0], int_list(l)?[0], int_list(d)?[0]);
                one(Tensor::f_arange_start_step(s, l, d, (Kind::Int64, crate::device::HOST))?)
            } else {
                let (a, b, c) = (float_scalar(s)?, float_scalar(l)?, float_scalar(d)?);
                one(Tensor::f_arange_start_step(a, b, c, (s.kind(), crate::device::HOST))?)
            }
        }
        "Cast" => one(x()?.f_to_kind(kind_of(n.int("to", 1))?)?),
        "CastLike" => one(x()?.f_to_kind(need(n, xs, 1)?.kind())?),
        "Reshape" => {
            let t = x()?;
            let mut shape = int_list(need(n, xs, 1)?)?;
            if n.int("allowzero", 0) == 0 {
                for (i, d) in shape.iter_mut().enumerate() {
                    if *d == 0 {
                        *d =
                            *t.size().get(i).ok_or_else(|| Error::invalid(format!("{}: 0 past rank", n.describe())))?;
                    }
                }
            }
            one(t.f_reshape(shape.as_slice())?)
        }
        "Flatten" => {
            let t = x()?;
            let a = axis(n.int("axis", 1), t.dim() + 1)?;
            let s = t.size();
            let lead: i64 = s[..a as usize].iter().product();
            one(t.f_reshape([lead, -1])?)
        }
        "Transpose" => {
            let t = x()?;
            let perm: Vec<i64> = match n.ints("perm") {
                Some(p) => p.to_vec(),
                None => (0..t.dim() as i64).rev().collect(),
            };
            one(t.f_permute(perm.as_slice())?)
        }
        "Squeeze" => {
            let t = x()?;
            let axes = match (n.ints("axes"), xs.get(1).copied().flatten()) {
                (Some(a), _) => a.to_vec(),
                (None, Some(a)) => int_list(a)?,
                (None, None) => (0..t.dim() as i64).filter(|&d| t.size()[d as usize] == 1).collect(),
            };
            let mut axes: Vec<i64> = axes.iter().map(|&a| axis(a, t.dim())).collect::<Result<_>>()?;
            axes.sort_unstable();
            let mut t = t.shallow_clone();
            for &a in axes.iter().rev() {
                t = t.f_squeeze_dim(a)?;
            }
            one(t)
        }
        "Unsqueeze" => {
            let t = x()?;
            let axes = match (n.ints("axes"), xs.get(1).copied().flatten()) {
                (Some(a), _) => a.to_vec(),
                (None, Some(a)) => int_list(a)?,
                _ => crate::bail!("{}: no axes", n.describe()),
            };
            let out_rank = t.dim() + axes.len();
            let mut axes: Vec<i64> = axes.iter().map(|&a| axis(a, out_rank)).collect::<Result<_>>()?;
            axes.sort_unstable();
            let mut t = t.shallow_clone();
            for &a in &axes {
                t = t.f_unsqueeze(a)?;
            }
            one(t)
        }
        "Expand" => {
            let t = x()?;
            let shape = int_list(need(n, xs, 1)?)?;
            // Bidirectional broadcast: the result has the broadcast of both shapes.
            let ones = Tensor::f_ones(shape.as_slice(), (t.kind(), crate::device::HOST))?;
            let full = broadcast_shape(&t.size(), &ones.size())?;
            one(t.f_expand(full.as_slice(), false)?.f_contiguous()?)
        }
        "Gather" => {
            let (t, idx) = (x()?, need(n, xs, 1)?);
            let a = axis(n.int("axis", 0), t.dim())?;
            let dim = t.size()[a as usize];
            // Negative indices count from the end.
            let idx = idx.f_to_kind(Kind::Int64)?;
            let idx = idx.f_add(&idx.f_lt(0)?.f_to_kind(Kind::Int64)?.f_mul_scalar(dim)?)?;
            let flat = idx.f_flatten(0, -1)?;
            let picked = t.f_index_select(a, &flat)?;
            let mut shape = t.size()[..a as usize].to_vec();
            shape.extend(idx.size());
            shape.extend(&t.size()[a as usize + 1..]);
            one(picked.f_reshape(shape.as_slice())?)
        }
        "Slice" => {
            let t = x()?;
            let starts = int_list(need(n, xs, 1)?)?;
            let ends = int_list(need(n, xs, 2)?)?;
            let axes = match xs.get(3).copied().flatten() {
                Some(a) => int_list(a)?,
                None => (0..starts.len() as i64).collect(),
            };
            let steps = match xs.get(4).copied().flatten() {
                Some(s) => int_list(s)?,
                None => vec![1; starts.len()],
            };
            let mut t = t.shallow_clone();
            for i in 0..starts.len() {
                let a = axis(axes[i], t.dim())?;
                let dim = t.size()[a as usize];
                let step = steps[i];
                if step <= 0 {
                    crate::bail!("{}: only positive Slice steps are supported", n.describe());
                }
                let norm = |v: i64| if v < 0 { (v + dim).max(0) } else { v.min(dim) };
                let (s, e) = (norm(starts[i]), norm(ends[i]));
                t = t.f_slice(a, s, e.max(s), step)?;
            }
            one(t)
        }
        "Split" => {
            let t = x()?;
            let a = axis(n.int("axis", 0), t.dim())?;
            let dim = t.size()[a as usize];
            let sizes = match (xs.get(1).copied().flatten(), n.ints("split")) {
                (Some(s), _) => int_list(s)?,
                (None, Some(s)) => s.to_vec(),
                (None, None) => {
                    let parts = n.int("num_outputs", n.outputs.len() as i64).max(1);
                    let each = (dim + parts - 1) / parts;
                    (0..parts).map(|i| each.min(dim - i * each)).collect()
                }
            };
            Ok(t.f_split_with_sizes(sizes.as_slice(), a)?)
        }
        "Concat" => {
            let ts: Vec<&Tensor> = xs.iter().flatten().copied().collect();
            let a = axis(n.int("axis", 0), ts[0].dim())?;
            let k = if ts.iter().all(|t| t.kind() == ts[0].kind()) { ts[0].kind() } else { Kind::Float };
            let ts: Vec<Tensor> = ts.iter().map(|t| t.f_to_kind(k)).collect::<std::result::Result<_, _>>()?;
            one(Tensor::f_cat(&ts, a)?)
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Less" | "Greater" | "And" | "Or" | "Max" | "Min" | "Mod" => {
            let (a, b) = promote(need(n, xs, 0)?, need(n, xs, 1)?)?;
            one(match n.op.as_str() {
                "Add" => a.f_add(&b)?,
                "Sub" => a.f_sub(&b)?,
                "Mul" => a.f_mul(&b)?,
                "Div" if is_int(&a) => a.f_div_tensor_mode(&b, "trunc")?,
                "Div" => a.f_div(&b)?,
                "Pow" => need(n, xs, 0)?.f_pow(need(n, xs, 1)?)?.f_to_kind(need(n, xs, 0)?.kind())?,
                "Equal" => a.f_eq_tensor(&b)?,
                "Less" => a.f_lt_tensor(&b)?,
                "Greater" => a.f_gt_tensor(&b)?,
                "And" => a.f_logical_and(&b)?,
                "Or" => a.f_logical_or(&b)?,
                "Max" => a.f_maximum(&b)?,
                "Min" => a.f_minimum(&b)?,
                _ => a.f_remainder_tensor(&b)?,
            })
        }
        "Sum" => {
            let ts: Vec<&Tensor> = xs.iter().flatten().copied().collect();
            let mut acc = ts[0].shallow_clone();
            for t in &ts[1..] {
                acc = acc.f_add(t)?;
            }
            one(acc)
        }
        "Where" => {
            let (c, a, b) = (need(n, xs, 0)?, need(n, xs, 1)?, need(n, xs, 2)?);
            let (a, b) = promote(a, b)?;
            one(a.f_where_self(&c.f_to_kind(Kind::Bool)?, &b)?)
        }
        "Not" => one(x()?.f_logical_not()?),
        "Neg" => one(x()?.f_neg()?),
        "Abs" => one(x()?.f_abs()?),
        "Sqrt" => one(x()?.f_sqrt()?),
        "Reciprocal" => one(x()?.f_reciprocal()?),
        "Exp" => one(x()?.f_exp()?),
        "Log" => one(x()?.f_log()?),
        "Erf" => one(x()?.f_erf()?),
        "Tanh" => one(x()?.f_tanh()?),
        "Sigmoid" => one(x()?.f_sigmoid()?),
        "Relu" => one(x()?.f_relu()?),
        "CumSum" => {
            let t = x()?;
            let a = axis(int_list(need(n, xs, 1)?)?[0], t.dim())?;
            if n.int("exclusive", 0) != 0 || n.int("reverse", 0) != 0 {
                crate::bail!("{}: exclusive / reverse CumSum is not supported", n.describe());
            }
            one(t.f_cumsum(a, t.kind())?)
        }
        "HardSigmoid" => {
            let (al, be) = (n.float("alpha", 0.2) as f64, n.float("beta", 0.5) as f64);
            one(x()?.f_mul_scalar(al)?.f_add_scalar(be)?.f_clamp(0.0, 1.0)?)
        }
        "HardSwish" => one(x()?.f_hardswish()?),
        "Gelu" => one(x()?.f_gelu(if n.str("approximate") == Some("tanh") { "tanh" } else { "none" })?),
        "Clip" => {
            let mut t = x()?.shallow_clone();
            if let Some(lo) = xs.get(1).copied().flatten() {
                t = t.f_clamp_min(float_scalar(lo)?)?;
            } else if let Some(AttrValue::Float(lo)) = n.attrs.get("min") {
                t = t.f_clamp_min(*lo as f64)?;
            }
            if let Some(hi) = xs.get(2).copied().flatten() {
                t = t.f_clamp_max(float_scalar(hi)?)?;
            } else if let Some(AttrValue::Float(hi)) = n.attrs.get("max") {
                t = t.f_clamp_max(*hi as f64)?;
            }
            one(t)
        }
        "Softmax" => {
            let t = x()?;
            one(t.f_softmax(axis(n.int("axis", -1), t.dim())?, t.kind())?)
        }
        "MatMul" => {
            let (a, b) = promote(need(n, xs, 0)?, need(n, xs, 1)?)?;
            one(a.f_matmul(&b)?)
        }
        "Gemm" => {
            let (mut a, mut b) = (need(n, xs, 0)?.shallow_clone(), need(n, xs, 1)?.shallow_clone());
            if n.int("transA", 0) == 1 {
                a = a.f_tr()?;
            }
            if n.int("transB", 0) == 1 {
                b = b.f_tr()?;
            }
            let mut y = a.f_matmul(&b)?.f_mul_scalar(n.float("alpha", 1.0) as f64)?;
            if let Some(c) = xs.get(2).copied().flatten() {
                y = y.f_add(&c.f_mul_scalar(n.float("beta", 1.0) as f64)?)?;
            }
            one(y)
        }
        "Conv" => {
            let (t, w) = (x()?, need(n, xs, 1)?);
            let spatial = w.dim() - 2;
            if spatial != 2 {
                crate::bail!("{}: only 2-d convolutions are supported", n.describe());
            }
            let pads = conv_pads(n, t, w)?;
            let stride = n.ints("strides").map(<[i64]>::to_vec).unwrap_or(vec![1, 1]);
            let dil = n.ints("dilations").map(<[i64]>::to_vec).unwrap_or(vec![1, 1]);
            let t = t.f_constant_pad_nd([pads[1], pads[3], pads[0], pads[2]].as_slice())?;
            one(t.f_conv2d(
                w,
                xs.get(2).copied().flatten(),
                stride.as_slice(),
                [0, 0].as_slice(),
                dil.as_slice(),
                n.int("group", 1),
            )?)
        }
        "BatchNormalization" => {
            let t = x()?;
            let (s, b, m, v) = (need(n, xs, 1)?, need(n, xs, 2)?, need(n, xs, 3)?, need(n, xs, 4)?);
            one(t.f_batch_norm(
                Some(s),
                Some(b),
                Some(m),
                Some(v),
                false,
                0.0,
                n.float("epsilon", 1e-5) as f64,
                false,
            )?)
        }
        "LayerNormalization" => {
            let t = x()?;
            let a = axis(n.int("axis", -1), t.dim())?;
            let shape: Vec<i64> = t.size()[a as usize..].to_vec();
            let w = xs.get(1).copied().flatten();
            let b = xs.get(2).copied().flatten();
            one(t.f_layer_norm(shape.as_slice(), w, b, n.float("epsilon", 1e-5) as f64, false)?)
        }
        "MaxPool" | "AveragePool" => {
            let t = x()?;
            let k = n.ints("kernel_shape").map(<[i64]>::to_vec).unwrap_or_default();
            if k.len() != 2 {
                crate::bail!("{}: only 2-d pooling is supported", n.describe());
            }
            let stride = n.ints("strides").map(<[i64]>::to_vec).unwrap_or(vec![1, 1]);
            let pads = pool_pads(n)?;
            let ceil = n.int("ceil_mode", 0) == 1;
            one(if n.op == "MaxPool" {
                let dil = n.ints("dilations").map(<[i64]>::to_vec).unwrap_or(vec![1, 1]);
                t.f_max_pool2d(k.as_slice(), stride.as_slice(), pads.as_slice(), dil.as_slice(), ceil)?
            } else {
                let include = n.int("count_include_pad", 0) == 1;
                t.f_avg_pool2d(k.as_slice(), stride.as_slice(), pads.as_slice(), ceil, include, None::<i64>)?
            })
        }
        "GlobalAveragePool" => one(x()?.f_adaptive_avg_pool2d([1, 1])?),
        "ReduceMean" | "ReduceSum" | "ReduceMax" => {
            let t = x()?;
            let keep = n.int("keepdims", 1) == 1;
            let axes = reduce_axes(n, xs, t.dim())?;
            let axes = match axes {
                Some(a) if a.is_empty() => return one(t.shallow_clone()),
                Some(a) => a,
                None => (0..t.dim() as i64).collect(),
            };
            one(match n.op.as_str() {
                "ReduceMean" => t.f_mean_dim(axes.as_slice(), keep, t.kind())?,
                "ReduceSum" => t.f_sum_dim_intlist(axes.as_slice(), keep, t.kind())?,
                _ => t.f_amax(axes.as_slice(), keep)?,
            })
        }
        other => Err(Error::invalid(format!("{other} is not an operator relprune can read"))),
    }
}

/// NumPy broadcast of two shapes.
pub fn broadcast_shape(a: &[i64], b: &[i64]) -> Result<Vec<i64>> {
    let r = a.len().max(b.len());
    let at = |s: &[i64], i: usize| if i + s.len() >= r { s[i + s.len() - r] } else { 1 };
    (0..r)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            (x, y) => Err(Error::invalid(format!("shapes {a:?} and {b:?} do not broadcast ({x} vs {y})"))),
        })
        .collect()
}

/// A conv's explicit pads [top, left, bottom, right], resolving `auto_pad`.
pub fn conv_pads(n: &ONode, t: &Tensor, w: &Tensor) -> Result<Vec<i64>> {
    let auto = n.str("auto_pad").unwrap_or("NOTSET");
    match auto {
        "NOTSET" => Ok(n.ints("pads").map(<[i64]>::to_vec).unwrap_or(vec![0; 4])),
        "VALID" => Ok(vec![0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let stride = n.ints("strides").map(<[i64]>::to_vec).unwrap_or(vec![1, 1]);
            let dil = n.ints("dilations").map(<[i64]>::to_vec).unwrap_or(vec![1, 1]);
            let mut begin = [0; 2];
            let mut end = [0; 2];
            for i in 0..2 {
                let inp = t.size()[2 + i];
                let k = (w.size()[2 + i] - 1) * dil[i] + 1;
                let out = (inp + stride[i] - 1) / stride[i];
                let total = ((out - 1) * stride[i] + k - inp).max(0);
                let small = total / 2;
                let (b, e) = if auto == "SAME_UPPER" { (small, total - small) } else { (total - small, small) };
                begin[i] = b;
                end[i] = e;
            }
            Ok(vec![begin[0], begin[1], end[0], end[1]])
        }
        other => crate::bail!("{}: auto_pad `{other}`", n.describe()),
    }
}

/// A pooling node's symmetric pads (asymmetric pooling pads are refused).
pub fn pool_pads(n: &ONode) -> Result<Vec<i64>> {
    if !matches!(n.str("auto_pad").unwrap_or("NOTSET"), "NOTSET" | "VALID") {
        crate::bail!("{}: auto_pad SAME is not supported for pooling; export with explicit padding", n.describe());
    }
    let pads = n.ints("pads").map(<[i64]>::to_vec).unwrap_or_default();
    symmetric_pads(&pads, 2)
        .ok_or_else(|| Error::invalid(format!("{}: asymmetric pooling pads {pads:?} are not supported", n.describe())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn gather_counts_negative_indices_from_the_end() {
        let n = ONode {
            name: "g".into(),
            op: "Gather".into(),
            domain: String::new(),
            inputs: vec!["x".into(), "i".into()],
            outputs: vec!["y".into()],
            attrs: HashMap::from([("axis".to_string(), AttrValue::Int(1))]),
            position: 0,
            scope: None,
        };
        let x = Tensor::arange(6, (Kind::Int64, crate::device::HOST)).reshape([2, 3]);
        let y = run(&n, &[Some(&x), Some(&Tensor::from_slice(&[-1i64, 0]))]).unwrap().remove(0);
        assert!(y.equal(&Tensor::from_slice(&[2i64, 0, 5, 3]).reshape([2, 2])));
    }
}
