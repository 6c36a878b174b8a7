//! Convolution, BatchNorm and pooling over 2-d maps.

use super::{float_attr, ints_attr, one, Args, Arity, OpDef, BASE};
use crate::error::{Error, Result};
use crate::graph::ops::*;
use crate::graph::{Op, Role};
use crate::import::lower::{weight_base, Lower};
use crate::import::proto::ONode;
use tch::Tensor;

pub(super) const OPS: &[OpDef] = &[
    OpDef {
        name: "Conv",
        doc: "conv2d (2-d, groups, dilation; asymmetric or SAME padding adds a pad2d before it)",
        inputs: Arity::range(2, 3),
        attrs: conv_attrs,
        eval: conv,
        lower: Some(|l, i| l.conv(i)),
        ..BASE
    },
    OpDef {
        name: "BatchNormalization",
        doc: "batch_norm2d (inference form)",
        inputs: Arity::exactly(5),
        // Training mode adds the running statistics' updates (up to 5 outputs in older opsets).
        outputs: Arity::range(1, 5),
        attrs: |n| float_attr(n, "epsilon"),
        eval: |a| {
            let (s, b, m, v) = (a.x(1)?, a.x(2)?, a.x(3)?, a.x(4)?);
            let eps = a.n.float("epsilon", 1e-5) as f64;
            one(a.x(0)?.f_batch_norm(Some(s), Some(b), Some(m), Some(v), false, 0.0, eps, false)?)
        },
        lower: Some(|l, i| l.batch_norm(i)),
        ..BASE
    },
    OpDef {
        name: "Pad",
        doc: "pad2d: constant padding of a map's height and width, possibly asymmetric (TensorFlow's \"same\"); \
              identity when every pad is 0",
        inputs: Arity::range(1, 4),
        attrs: |n| match n.str("mode").unwrap_or("constant") {
            "constant" => float_attr(n, "value"),
            m => crate::bail!("`{m}` padding is not supported (only constant padding)"),
        },
        eval: |a| {
            let (t, pads, value) = pad_args(a)?;
            let rank = t.dim();
            // torch lists (begin, end) from the last axis backwards.
            let torch_pads: Vec<i64> = (0..rank).rev().flat_map(|d| [pads[d], pads[d + rank]]).collect();
            let shape: Vec<i64> = (0..rank).map(|d| t.size()[d] + pads[d] + pads[d + rank]).collect();
            super::bounded("Pad's output", &shape)?;
            one(t.f_pad(torch_pads.as_slice(), "constant", value)?)
        },
        lower: Some(|l, i| l.pad(i)),
        ..BASE
    },
];

/// What a Resize node does, in relprune's terms, and the scales it gives (None: sizes).
struct ResizeArgs {
    op: Resize2d,
    scales: Option<[f64; 2]>,
}

/// Reads a Resize node: a 4-d input resized in height and width only, by the modes PyTorch's
/// `F.interpolate` exports (others are refused, naming the attributes).
fn resize_args<'a>(a: &Args<'a>) -> Result<(&'a Tensor, ResizeArgs)> {
    let (n, t) = (a.n, a.x(0)?);
    if t.dim() != 4 {
        crate::bail!("resizes a tensor of rank {}; relprune resizes maps (N, C, H, W)", t.dim());
    }
    let mode = n.str("mode").unwrap_or("nearest");
    let transform = n.str("coordinate_transformation_mode").unwrap_or("half_pixel");
    let (h, w) = (t.size()[2], t.size()[3]);
    let sizes = a.opt(3).filter(|s| s.numel() > 0).map(crate::import::eval::int_list).transpose()?;
    let scales = a.opt(2).filter(|s| s.numel() > 0).map(|s| s.f_to_kind(tch::Kind::Double)).transpose()?;
    let (output, scales) = match (sizes, scales) {
        (Some(s), _) if s.len() == 4 && s[..2] == t.size()[..2] => ([s[2], s[3]], None),
        (None, Some(s)) if s.numel() == 4 => {
            let v: Vec<f64> = Vec::<f64>::try_from(&s)?;
            if v[0] != 1.0 || v[1] != 1.0 || !v[2..].iter().all(|x| x.is_finite() && *x > 0.0) {
                crate::bail!("Resize scales {v:?}; relprune resizes height and width only");
            }
            ([(h as f64 * v[2]).floor() as i64, (w as f64 * v[3]).floor() as i64], Some([v[2], v[3]]))
        }
        _ => crate::bail!("Resize needs 4 sizes or 4 scales, with batch and channels unchanged"),
    };
    super::bounded("Resize's output", &[t.size()[0], t.size()[1], output[0], output[1]])?;
    let half_pixel = matches!(transform, "half_pixel" | "pytorch_half_pixel");
    let (mode, align_corners) = match (mode, transform) {
        ("nearest", "asymmetric") if n.str("nearest_mode") == Some("floor") => (ResizeMode::Nearest, false),
        ("linear", _) if half_pixel => (ResizeMode::Bilinear, false),
        ("linear", "align_corners") => (ResizeMode::Bilinear, true),
        ("cubic", "align_corners") | ("cubic", _)
            if (half_pixel || transform == "align_corners")
                && (n.float("cubic_coeff_a", -0.75) + 0.75).abs() < 1e-6
                && n.int("exclude_outside", 0) == 0 =>
        {
            (ResizeMode::Bicubic, transform == "align_corners")
        }
        _ => crate::bail!(
            "Resize with mode `{mode}`, coordinate transformation `{transform}` and nearest mode `{}` is not \
             PyTorch's F.interpolate (nearest, bilinear or bicubic)",
            n.str("nearest_mode").unwrap_or("round_prefer_floor")
        ),
    };
    if output.iter().any(|&d| d < 1) {
        crate::bail!("Resize to {output:?}: an empty map");
    }
    Ok((t, ResizeArgs { op: Resize2d { output, mode, align_corners }, scales }))
}

/// Pad's input, its pads for every axis (begins, then ends) and the border value, from the
/// inputs (opset 11+, with optional axes since 18) or the attributes (before 11).
fn pad_args<'a>(a: &Args<'a>) -> Result<(&'a Tensor, Vec<i64>, f64)> {
    let t = a.x(0)?;
    let rank = t.dim();
    let given = match a.opt(1) {
        Some(p) => crate::import::eval::int_list(p)?,
        None => a.n.ints("pads").map(<[i64]>::to_vec).unwrap_or_default(),
    };
    let value = match a.opt(2) {
        Some(v) if v.numel() == 1 => crate::import::eval::float_scalar(v)?,
        Some(v) => crate::bail!("Pad's constant_value has {} values, not one", v.numel()),
        None => a.n.float("value", 0.0) as f64,
    };
    let axes: Vec<usize> = match a.opt(3) {
        Some(x) => crate::import::eval::int_list(x)?
            .iter()
            .map(|&ax| crate::import::eval::axis(ax, rank).map(|v| v as usize))
            .collect::<Result<_>>()?,
        None => (0..rank).collect(),
    };
    if given.len() != 2 * axes.len() {
        crate::bail!("{} pads for {} axes; Pad needs two per axis", given.len(), axes.len());
    }
    let mut pads = vec![0; 2 * rank];
    for (k, &ax) in axes.iter().enumerate() {
        pads[ax] = given[k];
        pads[ax + rank] = given[k + axes.len()];
    }
    if let Some(p) = pads.iter().find(|p| p.unsigned_abs() > crate::graph::MAX_SPATIAL as u64) {
        crate::bail!("a pad of {p} is beyond the {} the importer reads", crate::graph::MAX_SPATIAL);
    }
    Ok((t, pads, value))
}

pub(super) const POOLING: &[OpDef] = &[
    OpDef {
        name: "MaxPool",
        doc: "max_pool2d (symmetric padding, ceil_mode)",
        // The second output holds the indices.
        outputs: Arity::range(1, 2),
        attrs: pool_attrs,
        eval: |a| {
            let (k, stride, pads, ceil) = pool_geometry(a.n)?;
            let dil = a.n.ints("dilations").map(<[i64]>::to_vec).unwrap_or(vec![1, 1]);
            one(a.x(0)?.f_max_pool2d(k.as_slice(), stride.as_slice(), pads.as_slice(), dil.as_slice(), ceil)?)
        },
        lower: Some(|l, i| l.pool(i, max_pool)),
        ..BASE
    },
    OpDef {
        name: "AveragePool",
        doc: "avg_pool2d (ceil mode and padding counted or not, as the attributes say)",
        attrs: pool_attrs,
        eval: |a| {
            let (k, stride, pads, ceil) = pool_geometry(a.n)?;
            let include = a.n.int("count_include_pad", 0) == 1;
            one(a.x(0)?.f_avg_pool2d(k.as_slice(), stride.as_slice(), pads.as_slice(), ceil, include, None::<i64>)?)
        },
        lower: Some(|l, i| l.pool(i, avg_pool)),
        ..BASE
    },
    OpDef {
        name: "Resize",
        doc: "resize2d: nearest (PyTorch's: asymmetric, floor), bilinear or bicubic (half-pixel or aligned \
              corners) resizing of a map's height and width; constant tables are folded (interpolated position \
              tables)",
        inputs: Arity::range(1, 4),
        attrs: |n| float_attr(n, "cubic_coeff_a"),
        eval: |a| {
            let (t, r) = resize_args(a)?;
            let (sh, sw) = (r.scales.map(|s| s[0]), r.scales.map(|s| s[1]));
            one(match r.op.mode {
                ResizeMode::Nearest => t.f_upsample_nearest2d(r.op.output, sh, sw)?,
                ResizeMode::Bilinear => t.f_upsample_bilinear2d(r.op.output, r.op.align_corners, sh, sw)?,
                ResizeMode::Bicubic => t.f_upsample_bicubic2d(r.op.output, r.op.align_corners, sh, sw)?,
            })
        },
        lower: Some(|l, i| l.resize(i)),
        ..BASE
    },
    OpDef {
        name: "GlobalAveragePool",
        doc: "adaptive_avg_pool2d to 1×1; mean_pool of tokens seen as (N, C, T) (a 1-d pooler, Swin)",
        eval: |a| {
            let t = a.x(0)?;
            if t.dim() < 3 {
                crate::bail!("needs (N, C, …), gets rank {}", t.dim());
            }
            let spatial: Vec<i64> = (2..t.dim() as i64).collect();
            one(t.f_mean_dim(spatial.as_slice(), true, t.kind())?)
        },
        lower: Some(|l, i| l.global_average(i)),
        ..BASE
    },
];

/// Strides and dilations positive, pads four and not negative, groups positive.
fn conv_attrs(n: &ONode) -> Result<()> {
    if let Some(k) = n.ints("kernel_shape").filter(|k| k.len() != 2) {
        crate::bail!(
            "a {}-d convolution is not supported: relprune reads 2-d convolutions (1-d ones are ECA's channel \
             attention, 3-d ones lambda layers)",
            k.len()
        );
    }
    ints_attr(n, "strides", 2, 1)?;
    ints_attr(n, "dilations", 2, 1)?;
    ints_attr(n, "pads", 4, 0)?;
    if n.int("group", 1) < 1 {
        crate::bail!("`group` {} must be at least 1", n.int("group", 1));
    }
    auto_pad(n)
}

fn auto_pad(n: &ONode) -> Result<()> {
    match n.str("auto_pad") {
        None | Some("NOTSET" | "VALID" | "SAME_UPPER" | "SAME_LOWER") => Ok(()),
        Some(other) => crate::bail!("auto_pad `{other}` is not an ONNX padding mode"),
    }
}

/// A 2-d kernel, strides and dilations positive, pads four and not negative.
fn pool_attrs(n: &ONode) -> Result<()> {
    if n.ints("kernel_shape").is_none_or(|k| k.len() != 2) {
        crate::bail!("only 2-d pooling is supported (kernel_shape {:?})", n.ints("kernel_shape").unwrap_or_default());
    }
    ints_attr(n, "kernel_shape", 2, 1)?;
    ints_attr(n, "strides", 2, 1)?;
    ints_attr(n, "dilations", 2, 1)?;
    ints_attr(n, "pads", 4, 0)?;
    auto_pad(n)
}

fn conv(a: &Args) -> Result<Vec<Tensor>> {
    let (n, t, w) = (a.n, a.x(0)?, a.x(1)?);
    if w.dim() != 4 {
        crate::bail!("only 2-d convolutions are supported");
    }
    if t.dim() != 4 {
        crate::bail!("the input has rank {}; a 2-d convolution reads (N, C, H, W)", t.dim());
    }
    let pads = conv_pads(n, t, w)?;
    let stride = n.ints("strides").map(<[i64]>::to_vec).unwrap_or(vec![1, 1]);
    let dil = n.ints("dilations").map(<[i64]>::to_vec).unwrap_or(vec![1, 1]);
    let t = t.f_constant_pad_nd([pads[1], pads[3], pads[0], pads[2]].as_slice())?;
    one(t.f_conv2d(w, a.opt(2), stride.as_slice(), [0, 0].as_slice(), dil.as_slice(), n.int("group", 1))?)
}

/// A pooling node's kernel, strides, symmetric pads (one per spatial axis) and ceil mode.
type PoolGeometry = (Vec<i64>, Vec<i64>, Vec<i64>, bool);

/// A pooling node's [`PoolGeometry`].
fn pool_geometry(n: &ONode) -> Result<PoolGeometry> {
    let k = n.ints("kernel_shape").map(<[i64]>::to_vec).unwrap_or_default();
    let stride = n.ints("strides").map(<[i64]>::to_vec).unwrap_or(vec![1, 1]);
    Ok((k, stride, pool_pads(n)?, n.int("ceil_mode", 0) == 1))
}

/// A conv's explicit pads [top, left, bottom, right], resolving `auto_pad` (attributes checked
/// by [`conv_attrs`], input a 4-d map, weight 4-d).
fn conv_pads(n: &ONode, t: &Tensor, w: &Tensor) -> Result<Vec<i64>> {
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
        other => crate::bail!("auto_pad `{other}`"),
    }
}

/// A pooling node's symmetric pads (asymmetric pooling pads are refused).
fn pool_pads(n: &ONode) -> Result<Vec<i64>> {
    if !matches!(n.str("auto_pad").unwrap_or("NOTSET"), "NOTSET" | "VALID") {
        crate::bail!("auto_pad SAME is not supported for pooling; export with explicit padding");
    }
    let pads = n.ints("pads").map(<[i64]>::to_vec).unwrap_or_default();
    symmetric_pads(&pads, 2)
        .ok_or_else(|| Error::invalid(format!("asymmetric pooling pads {pads:?} are not supported")))
}

impl Lower<'_> {
    /// A convolution with constant weights: conv2d.
    fn conv(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let base = g.module_name(n);
        let from = n.name.clone();
        let out = n.outputs[0].clone();
        let x = self.canonical(&n.inputs[0], n, "a convolution")?;
        let w = self.cval(n, 1).ok_or_else(|| self.unsupported(n, "a convolution whose weight is not a constant"))?;
        if w.dim() != 4 {
            return Err(self.unsupported(n, "only 2-d convolutions are supported"));
        }
        let pads = conv_pads(n, &g.values[&n.inputs[0]], w).map_err(|e| self.unsupported(n, &e.to_string()))?;
        // Asymmetric padding (SAME_UPPER): the convolution keeps the symmetric part, a pad2d
        // before it adds the rest.
        let pad = [pads[0].min(pads[2]), pads[1].min(pads[3])];
        let extra = [pads[0] - pad[0], pads[1] - pad[1], pads[2] - pad[0], pads[3] - pad[1]];
        let x = if extra.iter().any(|&p| p != 0) {
            let canon = self.canon[x].clone();
            let (h, w) = (canon[2] + extra[0] + extra[2], canon[3] + extra[1] + extra[3]);
            let op = Op::Pad2d(Pad2d::zeros(extra));
            self.add(&format!("{base}.pad"), op, &[x], Vec::new(), vec![canon[0], canon[1], h, w], &from)
        } else {
            x
        };
        let s = w.size();
        let groups = n.int("group", 1);
        let bias = self.cval(n, 2);
        let op = Op::Conv2d(Conv2d {
            in_channels: s[1] * groups,
            out_channels: s[0],
            kernel: [s[2], s[3]],
            stride: pair(n, "strides", 1),
            padding: [pad[0], pad[1]],
            dilation: pair(n, "dilations", 1),
            groups,
            bias: bias.is_some(),
        });
        let mut params = vec![(Role::Weight, g.const_origin(&n.inputs[1]), w.shallow_clone())];
        if let Some(b) = bias {
            params.push((Role::Bias, g.const_origin(&n.inputs[2]), b.shallow_clone()));
        }
        let base = weight_base(g, n, 1).unwrap_or(base);
        let id = self.add(&base, op, &[x], params, g.values[&out].size(), &from);
        self.bind(&out, id, None);
        Ok(())
    }

    /// Inference BatchNorm over a map: batch_norm2d.
    fn batch_norm(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let base = g.module_name(n);
        let from = n.name.clone();
        let out = n.outputs[0].clone();
        let x = self.canonical(&n.inputs[0], n, "a BatchNorm")?;
        if self.canon[x].len() != 4 {
            return Err(self.unsupported(n, "BatchNorm over something other than a 4-d map"));
        }
        let mut params = Vec::new();
        for (k, role) in [(1, Role::Weight), (2, Role::Bias), (3, Role::RunningMean), (4, Role::RunningVar)] {
            let t =
                self.cval(n, k).ok_or_else(|| self.unsupported(n, "BatchNorm statistics that are not constants"))?;
            params.push((role, g.const_origin(&n.inputs[k]), t.f_flatten(0, -1)?));
        }
        let op = Op::BatchNorm2d(BatchNorm2d {
            features: self.canon[x][1],
            eps: n.float("epsilon", 1e-5) as f64,
            momentum: 0.1,
        });
        let base = weight_base(g, n, 1).unwrap_or(base);
        let id = self.add(&base, op, &[x], params, g.values[&out].size(), &from);
        self.bind(&out, id, None);
        Ok(())
    }

    /// Constant padding of a map's height and width: pad2d (nothing when every pad is 0, as
    /// exporters write for "same" padding that the input size makes empty).
    fn pad(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let xs: Vec<Option<&Tensor>> =
            n.inputs.iter().map(|v| if v.is_empty() { None } else { Some(&g.values[v]) }).collect();
        let (_, pads, value) = pad_args(&Args::new(n, &xs)).map_err(|e| self.unsupported(n, &e.to_string()))?;
        if pads.iter().all(|&p| p == 0) {
            let b = self.bound(&n.inputs[0], n)?;
            let (id, v) = (b.id, b.view.as_ref().map(|t| t.shallow_clone()));
            self.env.insert(n.outputs[0].clone(), crate::import::lower::Bound { id, view: v });
            return Ok(());
        }
        let x = self.canonical(&n.inputs[0], n, "padding")?;
        let rank = pads.len() / 2;
        if rank != 4 || self.canon[x].len() != 4 || pads[..2] != [0, 0] || pads[4..6] != [0, 0] {
            return Err(self.unsupported(n, "padding other than of a map's height and width"));
        }
        if pads.iter().any(|&p| p < 0) {
            return Err(self.unsupported(n, "negative padding (a crop)"));
        }
        let fill = match value {
            0.0 => Fill::Zero,
            f64::NEG_INFINITY => Fill::NegInfinity,
            v => return Err(self.unsupported(n, &format!("padding with {v} (0 and −∞ are supported)"))),
        };
        let op = Op::Pad2d(Pad2d { pads: [pads[2], pads[3], pads[6], pads[7]], fill });
        let out = &n.outputs[0];
        let id = self.add(&g.module_name(n), op, &[x], Vec::new(), g.values[out].size(), &n.name);
        self.bind(out, id, None);
        Ok(())
    }

    /// Resizing a map's height and width: resize2d.
    fn resize(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let xs: Vec<Option<&Tensor>> =
            n.inputs.iter().map(|v| if v.is_empty() { None } else { Some(&g.values[v]) }).collect();
        let (_, r) = resize_args(&Args::new(n, &xs)).map_err(|e| self.unsupported(n, &e.to_string()))?;
        let x = self.canonical(&n.inputs[0], n, "resizing")?;
        let out = &n.outputs[0];
        let id = self.add(&g.module_name(n), Op::Resize2d(r.op), &[x], Vec::new(), g.values[out].size(), &n.name);
        self.bind(out, id, None);
        Ok(())
    }

    /// A global average: of a map, adaptive_avg_pool2d to 1×1; of tokens transposed to
    /// (N, C, T), the mean over the tokens.
    fn global_average(&mut self, i: usize) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let b = self.bound(&n.inputs[0], n)?;
        let (id, idx, canon) = (b.id, self.index(b), self.canon[b.id].clone());
        if canon.len() == 3 && idx.size() == [canon[0], canon[2], canon[1]] {
            if !crate::import::view::is_transposed_tokens(&idx, &canon) {
                return Err(self.unsupported(n, "a mean over something other than the tokens"));
            }
            let out = &n.outputs[0];
            let pooled = vec![canon[0], canon[2]];
            let pid = self.add(&g.module_name(n), Op::MeanPool(MeanPool), &[id], Vec::new(), pooled.clone(), &n.name);
            let v = crate::import::view::identity(&pooled).reshape(g.values[out].size().as_slice());
            self.bind(out, pid, Some(v));
            return Ok(());
        }
        self.pool(i, |_, _| Ok(Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d { output: [1, 1] })))
    }

    /// Pooling: the relprune op `op` makes of the node.
    fn pool(&mut self, i: usize, op: fn(&Lower, &ONode) -> Result<Op>) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let out = &n.outputs[0];
        let x = self.canonical(&n.inputs[0], n, "pooling")?;
        let op = op(self, n)?;
        let id = self.add(&g.module_name(n), op, &[x], Vec::new(), g.values[out].size(), &n.name);
        self.bind(out, id, None);
        Ok(())
    }
}

/// A 2-d attribute (checked to have two entries when present), or `[d, d]`.
fn pair(n: &ONode, k: &str, d: i64) -> [i64; 2] {
    let v = n.ints(k).map(<[i64]>::to_vec).unwrap_or(vec![d, d]);
    [v[0], *v.get(1).unwrap_or(&v[0])]
}

/// Undilated max pooling: max_pool2d.
fn max_pool(l: &Lower, n: &ONode) -> Result<Op> {
    let p = pool_pads(n).map_err(|e| l.unsupported(n, &e.to_string()))?;
    let (kernel, stride, padding) = (pair(n, "kernel_shape", 1), pair(n, "strides", 1), [p[0], p[1]]);
    if pair(n, "dilations", 1) != [1, 1] {
        return Err(l.unsupported(n, "dilated max pooling"));
    }
    Ok(Op::MaxPool2d(MaxPool2d { kernel, stride, padding, ceil_mode: n.int("ceil_mode", 0) == 1 }))
}

/// Average pooling that counts the padding, as PyTorch's default: avg_pool2d.
fn avg_pool(l: &Lower, n: &ONode) -> Result<Op> {
    let p = pool_pads(n).map_err(|e| l.unsupported(n, &e.to_string()))?;
    let (kernel, stride, padding) = (pair(n, "kernel_shape", 1), pair(n, "strides", 1), [p[0], p[1]]);
    Ok(Op::AvgPool2d(AvgPool2d {
        kernel,
        stride,
        padding,
        ceil_mode: n.int("ceil_mode", 0) == 1,
        count_include_pad: n.int("count_include_pad", 0) == 1,
    }))
}

/// Symmetric (begin, end) pads, or None.
fn symmetric_pads(pads: &[i64], spatial: usize) -> Option<Vec<i64>> {
    if pads.is_empty() {
        return Some(vec![0; spatial]);
    }
    if pads.len() != 2 * spatial || pads[..spatial] != pads[spatial..] {
        return None;
    }
    Some(pads[..spatial].to_vec())
}
