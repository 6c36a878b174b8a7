//! Matrix products: linear layers (and, inside attention, the score and value products).

use super::{float_attr, one, Arity, OpDef, BASE};
use crate::error::Result;
use crate::graph::ops::*;
use crate::graph::{Op, Role};
use crate::import::eval::promote;
use crate::import::lower::{weight_base, Lower};
use crate::import::view;

pub(super) const OPS: &[OpDef] = &[
    OpDef {
        name: "Gemm",
        doc: "linear (transB either way, alpha = beta = 1); channel_linear on channels-last maps",
        inputs: Arity::range(2, 3),
        attrs: |n| float_attr(n, "alpha").and_then(|_| float_attr(n, "beta")),
        eval: |a| {
            let n = a.n;
            let (mut x, mut w) = (a.x(0)?.shallow_clone(), a.x(1)?.shallow_clone());
            if n.int("transA", 0) == 1 {
                x = x.f_tr()?;
            }
            if n.int("transB", 0) == 1 {
                w = w.f_tr()?;
            }
            let mut y = x.f_matmul(&w)?.f_mul_scalar(n.float("alpha", 1.0) as f64)?;
            if let Some(c) = a.opt(2) {
                y = y.f_add(&c.f_mul_scalar(n.float("beta", 1.0) as f64)?)?;
            }
            one(y)
        },
        lower: Some(|l, i| l.linear(i, true)),
        ..BASE
    },
    OpDef {
        name: "MatMul",
        doc: "linear with a constant weight (+ the following Add as its bias); token_linear over tokens seen \
              transposed (MLP-Mixer); inside attention: the score and value products",
        inputs: Arity::exactly(2),
        eval: |a| {
            let (x, y) = promote(a.x(0)?, a.x(1)?)?;
            one(x.f_matmul(&y)?)
        },
        lower: Some(|l, i| l.linear(i, false)),
        ..BASE
    },
];

impl Lower<'_> {
    /// A product with a constant matrix (Gemm when `gemm`, else MatMul): linear, or
    /// channel_linear on a channels-last map; a flattened map gets a flatten node first.
    fn linear(&mut self, i: usize, gemm: bool) -> Result<()> {
        let g = self.g;
        let n = &g.model.nodes[i];
        let out = &n.outputs[0];
        let wname = &n.inputs[1];
        if !g.is_const(wname) {
            return Err(self.unsupported(n, "a matrix product of two data tensors outside attention"));
        }
        let w = &g.values[wname];
        if w.dim() != 2 {
            return Err(self.unsupported(n, "a matrix product with a weight that is not a matrix"));
        }
        let weight = if gemm {
            if n.int("transA", 0) != 0 || n.float("alpha", 1.0) != 1.0 || n.float("beta", 1.0) != 1.0 {
                return Err(self.unsupported(n, "Gemm with transA, alpha or beta"));
            }
            if n.int("transB", 0) == 1 {
                w.shallow_clone()
            } else {
                w.f_tr()?.f_contiguous()?
            }
        } else {
            w.f_tr()?.f_contiguous()?
        };
        let bias = if gemm { n.inputs.get(2).filter(|v| !v.is_empty()) } else { None };
        let (out_f, in_f) = (weight.size()[0], weight.size()[1]);
        let b = self.bound(&n.inputs[0], n)?;
        let (mut x, mut idx) = (b.id, self.index(b));
        let mut canon = self.canon[x].clone();
        let from = n.name.clone();
        let base = weight_base(g, n, 1).unwrap_or_else(|| g.module_name(n));
        // A map seen as (B, C, H·W) is its patch tokens transposed.
        if canon.len() == 4 && idx.equal(&view::identity(&canon).reshape([canon[0], canon[1], -1])) {
            let tokens = vec![canon[0], canon[2] * canon[3], canon[1]];
            let name = format!("{}.patches_to_tokens", self.nodes[x].name);
            x = self.add(&name, Op::PatchesToTokens(PatchesToTokens), &[x], Vec::new(), tokens.clone(), &from);
            canon = tokens;
            idx = view::transposed_tokens(&canon);
        }
        // Tokens seen transposed, (B, C, T): a linear layer over the tokens.
        if canon.len() == 3 && idx.size() == [canon[0], canon[2], canon[1]] {
            if !view::is_transposed_tokens(&idx, &canon) {
                return Err(self.unsupported(n, "a linear layer over something other than the features or tokens"));
            }
            if canon[1] != in_f {
                return Err(self.unsupported(n, "a linear layer over tokens whose weight does not match their count"));
            }
            let origin = if gemm { None } else { g.transposed_origin(wname) };
            let op = Op::TokenLinear(TokenLinear { in_tokens: in_f, out_tokens: out_f, bias: false });
            let out_canon = vec![canon[0], out_f, canon[2]];
            let v = view::transposed_tokens(&out_canon);
            let id = self.add(&base, op, &[x], vec![(Role::Weight, origin, weight)], out_canon, &from);
            self.bind(out, id, Some(v));
            return Ok(());
        }
        // A flattened map first becomes features.
        let flattened = view::is_flatten_of_map(&idx, &canon);
        if flattened {
            let fc = vec![canon[0], canon[1] * canon[2] * canon[3]];
            x = self.add(
                &format!("{base}.flatten"),
                Op::Flatten(Flatten { start_dim: 1 }),
                &[x],
                Vec::new(),
                fc.clone(),
                &from,
            );
            canon = fc;
        } else if !view::channels_last(&idx, &canon) {
            return Err(self.unsupported(n, "a linear layer over something other than the features"));
        }
        if canon[view::channel_dim(&canon)] != in_f {
            return Err(self.unsupported(n, "a linear layer whose weight does not match its input's features"));
        }
        // The initializer's name only where relprune's weight has its layout (a front end slices
        // the user's tensor of that name by the pruning plan).
        let origin =
            if gemm { g.const_origin(wname).filter(|_| n.int("transB", 0) == 1) } else { g.transposed_origin(wname) };
        let mut params = vec![(Role::Weight, origin, weight)];
        if let Some(bv) = bias {
            let t = g
                .values
                .get(bv)
                .filter(|_| g.is_const(bv))
                .ok_or_else(|| self.unsupported(n, "a bias that is not a constant"))?;
            if t.numel() as i64 != out_f {
                return Err(self.unsupported(n, "a Gemm bias that is not one value per output"));
            }
            params.push((Role::Bias, g.const_origin(bv), t.f_flatten(0, -1)?));
        }
        let op = if canon.len() == 4 {
            Op::ChannelLinear(ChannelLinear { in_channels: in_f, out_channels: out_f, bias: bias.is_some() })
        } else {
            Op::Linear(Linear { in_features: in_f, out_features: out_f, bias: bias.is_some() })
        };
        let (v, out_canon) = if !flattened {
            let (v, c) = view::with_channels(&idx, &canon, out_f)?;
            (Some(v), c)
        } else {
            let mut c = canon.clone();
            *c.last_mut().expect("rank ≥ 2") = out_f;
            (None, c)
        };
        let id = self.add(&base, op, &[x], params, out_canon, &from);
        self.bind(out, id, v);
        Ok(())
    }
}
