//! Executing a graph: one sweep over the nodes in topological order.

use super::{Graph, InputKind, Mode, Node, NodeId, Op};
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// Additive bias that removes masked keys from the softmax (as Hugging Face does).
const MASK_BIAS: f64 = -3.402_823_466e38;

impl Graph {
    /// Runs the graph and returns its output. Intermediate results are freed as soon as their
    /// last consumer has run. Gradients are tracked as usual; wrap in `tch::no_grad` for inference.
    pub fn forward(&self, inputs: &[Tensor], mode: Mode) -> Result<Tensor> {
        let last_use = self.last_use();
        let mut values: Vec<Option<Tensor>> = (0..self.nodes().len()).map(|_| None).collect();
        self.bind_inputs(inputs, &mut values)?;
        for id in 0..self.nodes().len() {
            if values[id].is_none() {
                let node = self.node(id);
                let xs: Vec<&Tensor> = node.inputs.iter().map(|&i| values[i].as_ref().expect("topological")).collect();
                let y = self.run_node(id, &xs, mode)?;
                values[id] = Some(y);
                for &i in &node.inputs {
                    if last_use[i] == id && i != self.output() {
                        values[i] = None;
                    }
                }
            }
        }
        Ok(values[self.output()].take().expect("output computed"))
    }

    /// Runs the graph and keeps every node's output (index = node id).
    pub fn forward_all(&self, inputs: &[Tensor], mode: Mode) -> Result<Vec<Tensor>> {
        self.forward_with(inputs, mode, &mut |_, _| None)
    }

    /// Like [`Graph::forward_all`], but `hook(id, output)` may replace a node's output before
    /// its consumers see it (used by interventions such as gating attention heads).
    pub fn forward_with(
        &self,
        inputs: &[Tensor],
        mode: Mode,
        hook: &mut dyn FnMut(NodeId, &Tensor) -> Option<Tensor>,
    ) -> Result<Vec<Tensor>> {
        let mut values: Vec<Option<Tensor>> = (0..self.nodes().len()).map(|_| None).collect();
        self.bind_inputs(inputs, &mut values)?;
        for id in 0..self.nodes().len() {
            let y = match values[id].take() {
                Some(v) => v,
                None => {
                    let node = self.node(id);
                    let xs: Vec<&Tensor> =
                        node.inputs.iter().map(|&i| values[i].as_ref().expect("topological")).collect();
                    self.run_node(id, &xs, mode)?
                }
            };
            values[id] = Some(hook(id, &y).unwrap_or(y));
        }
        Ok(values.into_iter().map(|v| v.expect("all computed")).collect())
    }

    /// Index of the last node that reads each node's output.
    fn last_use(&self) -> Vec<NodeId> {
        let mut last = (0..self.nodes().len()).collect::<Vec<_>>();
        for (id, n) in self.nodes().iter().enumerate() {
            for &i in &n.inputs {
                last[i] = last[i].max(id);
            }
        }
        last
    }

    fn bind_inputs(&self, inputs: &[Tensor], values: &mut [Option<Tensor>]) -> Result<()> {
        if inputs.len() != self.inputs().len() {
            crate::bail!(
                "the model takes {} input tensor(s) ({}), got {}",
                self.inputs().len(),
                self.inputs().iter().map(|&i| self.node(i).name.as_str()).collect::<Vec<_>>().join(", "),
                inputs.len()
            );
        }
        for (&id, t) in self.inputs().iter().zip(inputs) {
            let Op::Input(kind) = &self.node(id).op else { unreachable!("validated") };
            check_input(&self.node(id).name, kind, t)?;
            values[id] = Some(t.shallow_clone());
        }
        Ok(())
    }

    /// Computes one node's output from its inputs.
    pub fn run_node(&self, id: NodeId, xs: &[&Tensor], mode: Mode) -> Result<Tensor> {
        let node = self.node(id);
        self.eval_op(id, node, xs, mode).map_err(|e| Error::Node {
            node: node.name.clone(),
            op: node.op.kind_name().into(),
            message: match e {
                Error::Torch(t) => first_line(&t.to_string()),
                other => other.to_string(),
            },
        })
    }

    fn eval_op(&self, id: NodeId, node: &Node, xs: &[&Tensor], mode: Mode) -> Result<Tensor> {
        let train = mode == Mode::Train;
        let p = |role: &str| self.require_param(id, role);
        let x = xs.first().copied();
        Ok(match &node.op {
            Op::Input(_) => unreachable!("inputs are bound, not run"),
            Op::Conv2d(c) => x.unwrap().f_conv2d(
                p("weight")?,
                if c.bias { Some(p("bias")?) } else { None },
                c.stride,
                c.padding,
                c.dilation,
                c.groups,
            )?,
            Op::BatchNorm2d { eps, momentum, .. } => {
                let y = Tensor::f_batch_norm(
                    x.unwrap(),
                    Some(p("weight")?),
                    Some(p("bias")?),
                    Some(p("running_mean")?),
                    Some(p("running_var")?),
                    train,
                    *momentum,
                    *eps,
                    false,
                )?;
                if train {
                    if let Some(n) = self.param(id, "num_batches_tracked") {
                        tch::no_grad(|| n.shallow_clone().f_add_scalar_(1)).map(|_| ())?;
                    }
                }
                y
            }
            Op::Relu => x.unwrap().f_relu()?,
            Op::MaxPool2d { kernel, stride, padding, ceil_mode } => {
                x.unwrap().f_max_pool2d(kernel, stride, padding, [1, 1], *ceil_mode)?
            }
            Op::AvgPool2d { kernel, stride, padding } => {
                x.unwrap().f_avg_pool2d(kernel, stride, padding, false, true, None)?
            }
            Op::AdaptiveAvgPool2d { output } => x.unwrap().f_adaptive_avg_pool2d(output)?,
            Op::Linear { bias, .. } => {
                x.unwrap().f_linear(p("weight")?, if *bias { Some(p("bias")?) } else { None })?
            }
            Op::Flatten { start_dim } => x.unwrap().f_flatten(*start_dim, -1)?,
            Op::Add => {
                let mut acc = xs[0].f_add(xs[1])?;
                for t in &xs[2..] {
                    acc = acc.f_add(t)?;
                }
                acc
            }
            Op::Dropout { p: prob } => {
                if train {
                    x.unwrap().f_dropout(*prob, true)?
                } else {
                    x.unwrap().shallow_clone()
                }
            }
            Op::LayerNorm { dim, eps } => {
                x.unwrap().f_layer_norm([*dim], Some(p("weight")?), Some(p("bias")?), *eps, false)?
            }
            Op::Gelu { tanh } => x.unwrap().f_gelu(if *tanh { "tanh" } else { "none" })?,
            Op::Tanh => x.unwrap().f_tanh()?,
            Op::Attention { heads, head_dim, packed } => {
                let (q, k, v, mask) = split_attention_inputs(xs, *packed, *heads * *head_dim)?;
                let probs = attention_probs(&q, &k, mask, *heads, *head_dim)?;
                attention_output(&probs, &v, *heads, *head_dim)?
            }
            Op::Embedding { num, .. } => {
                let ids = x.unwrap();
                let (lo, hi) = (ids.f_min()?.int64_value(&[]), ids.f_max()?.int64_value(&[]));
                if lo < 0 || hi >= *num {
                    crate::bail!("token id out of range [{lo}, {hi}] for a vocabulary of {num}");
                }
                Tensor::f_embedding(p("weight")?, ids, -1, false, false)?
            }
            Op::PositionEmbedding { max_len, leading_one, .. } => {
                let x = x.unwrap();
                let t = x.size()[1];
                if t > *max_len {
                    crate::bail!(
                        "sequence of {t} tokens is longer than the position table ({max_len}); truncate the input"
                    );
                }
                let w = p("weight")?;
                let table = if *leading_one { w.f_narrow(1, 0, t)? } else { w.f_narrow(0, 0, t)?.f_unsqueeze(0)? };
                x.f_add(&table)?
            }
            Op::SegmentEmbedding { .. } => x.unwrap().f_add(&p("weight")?.f_select(0, 0)?)?,
            Op::PatchesToTokens => x.unwrap().f_flatten(2, -1)?.f_transpose(1, 2)?,
            Op::ClassToken { dim } => {
                let x = x.unwrap();
                let b = x.size()[0];
                let tok = p("weight")?.f_expand([b, 1, *dim], false)?;
                Tensor::f_cat(&[&tok, x], 1)?
            }
            Op::SelectToken { index } => x.unwrap().f_select(1, *index)?,
            Op::MeanPool => mean_pool(xs[0], xs.get(1).copied())?,
        })
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

fn check_input(name: &str, kind: &InputKind, t: &Tensor) -> Result<()> {
    let size = t.size();
    let ok = match kind {
        InputKind::Image { channels, height, width } => {
            size.len() == 4 && size[1..] == [*channels, *height, *width] && t.is_floating_point()
        }
        InputKind::TokenIds { max_len } | InputKind::AttentionMask { max_len } => {
            size.len() == 2 && size[1] <= *max_len && t.kind() == Kind::Int64
        }
    };
    if !ok {
        crate::bail!(
            "input `{name}` expects {}, got a {:?} tensor of shape {size:?}",
            match kind {
                InputKind::Image { channels, height, width } =>
                    format!("float images of shape (B, {channels}, {height}, {width})"),
                InputKind::TokenIds { max_len } => format!("int64 token ids of shape (B, T ≤ {max_len})"),
                InputKind::AttentionMask { max_len } => format!("an int64 mask of shape (B, T ≤ {max_len})"),
            },
            t.kind()
        );
    }
    Ok(())
}

/// Splits attention inputs into (q, k, v, optional mask), each (B, T, width).
pub(crate) fn split_attention_inputs<'a>(
    xs: &[&'a Tensor],
    packed: bool,
    width: i64,
) -> Result<(Tensor, Tensor, Tensor, Option<&'a Tensor>)> {
    if packed {
        let qkv = xs[0];
        if qkv.size().last() != Some(&(3 * width)) {
            crate::bail!("packed q|k|v input has last dimension {:?}, expected 3·{width}", qkv.size().last());
        }
        let q = qkv.f_narrow(-1, 0, width)?;
        let k = qkv.f_narrow(-1, width, width)?;
        let v = qkv.f_narrow(-1, 2 * width, width)?;
        Ok((q, k, v, xs.get(1).copied()))
    } else {
        for t in &xs[..3] {
            if t.size().last() != Some(&width) {
                crate::bail!("q/k/v input has last dimension {:?}, expected {width}", t.size().last());
            }
        }
        Ok((xs[0].shallow_clone(), xs[1].shallow_clone(), xs[2].shallow_clone(), xs.get(3).copied()))
    }
}

/// (B, T, H·dh) → (B, H, T, dh).
pub(crate) fn split_heads(x: &Tensor, heads: i64, head_dim: i64) -> Result<Tensor> {
    let s = x.size();
    Ok(x.f_reshape([s[0], s[1], heads, head_dim])?.f_transpose(1, 2)?)
}

/// (B, H, T, dh) → (B, T, H·dh).
pub(crate) fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let s = x.size();
    Ok(x.f_transpose(1, 2)?.f_reshape([s[0], s[2], s[1] * s[3]])?)
}

/// Attention scores before the softmax, (B, H, T, T): q·kᵀ/√dh plus the key mask bias.
pub(crate) fn attention_scores(
    q: &Tensor,
    k: &Tensor,
    mask: Option<&Tensor>,
    heads: i64,
    head_dim: i64,
) -> Result<Tensor> {
    let q = split_heads(q, heads, head_dim)?;
    let k = split_heads(k, heads, head_dim)?;
    let scores = q.f_matmul(&k.f_transpose(-2, -1)?)?.f_div_scalar((head_dim as f64).sqrt())?;
    match mask {
        Some(m) => Ok(scores.f_add(&key_mask_bias(m, scores.kind())?)?),
        None => Ok(scores),
    }
}

/// (B, T) 0/1 mask → (B, 1, 1, T) additive bias.
pub(crate) fn key_mask_bias(mask: &Tensor, kind: Kind) -> Result<Tensor> {
    let m = mask.f_to_kind(kind)?;
    Ok(m.f_neg()?.f_add_scalar(1.0)?.f_mul_scalar(MASK_BIAS)?.f_unsqueeze(1)?.f_unsqueeze(1)?)
}

pub(crate) fn attention_probs(
    q: &Tensor,
    k: &Tensor,
    mask: Option<&Tensor>,
    heads: i64,
    head_dim: i64,
) -> Result<Tensor> {
    let scores = attention_scores(q, k, mask, heads, head_dim)?;
    Ok(scores.f_softmax(-1, scores.kind())?)
}

/// probs (B, H, T, T) · v → (B, T, H·dh).
pub(crate) fn attention_output(probs: &Tensor, v: &Tensor, heads: i64, head_dim: i64) -> Result<Tensor> {
    merge_heads(&probs.f_matmul(&split_heads(v, heads, head_dim)?)?)
}

/// Mean over tokens, counting only unmasked ones when a (B, T) mask is given.
pub(crate) fn mean_pool(x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        None => Ok(x.f_mean_dim(1, false, x.kind())?),
        Some(m) => {
            let m = m.f_to_kind(x.kind())?.f_unsqueeze(-1)?;
            let num = x.f_mul(&m)?.f_sum_dim_intlist(1, false, x.kind())?;
            let den = m.f_sum_dim_intlist(1, false, x.kind())?.f_clamp_min(1e-9)?;
            Ok(num.f_div(&den)?)
        }
    }
}
