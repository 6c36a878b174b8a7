//! Mean over real tokens (mask-aware when a (B, T) mask input is given): (B, T, D) → (B, D).

use super::{at_least, Arity, Attr, Ctx, LrpContext, OnnxContext, OpKind, FLOAT};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Token mean pooling (no hyperparameters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeanPool;

impl OpKind for MeanPool {
    fn arity(&self) -> Arity {
        Arity::Between(1, 2)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        if inputs.len() > 1 {
            Ok(inputs[0].max(3) - 1)
        } else {
            Ok(at_least(2, inputs[0])? - 1)
        }
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let x = xs[0];
        match xs.get(1) {
            None => Ok(x.f_mean_dim(1, false, x.kind())?),
            Some(m) => {
                let m = m.f_to_kind(x.kind())?.f_unsqueeze(-1)?;
                let num = x.f_mul(&m)?.f_sum_dim_intlist(1, false, x.kind())?;
                let den = m.f_sum_dim_intlist(1, false, x.kind())?.f_clamp_min(1e-9)?;
                Ok(num.f_div(&den)?)
            }
        }
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let x = xs[0];
        let k = x.kind();
        let t = x.size()[1];
        let w = match xs.get(1) {
            Some(m) => {
                let m = m.f_to_kind(k)?;
                m.f_div(&m.f_sum_dim_intlist(1, true, k)?.f_clamp_min(1e-9)?)?
            }
            None => Tensor::f_full([x.size()[0], t], 1.0 / t as f64, (k, x.device()))?,
        };
        let s = r.f_div(&cx.stabilize(out)?)?;
        let rx = x.f_mul(&s.f_unsqueeze(1)?)?.f_mul(&w.f_unsqueeze(-1)?)?;
        let mut v = vec![Some(rx)];
        if xs.len() > 1 {
            v.push(None);
        }
        Ok(v)
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let x = cx.x(0);
        if cx.arity() == 1 {
            return Ok(cx.output("ReduceMean", &[&x], &[("axes", Attr::Ints(&[1])), ("keepdims", Attr::Int(0))]));
        }
        let mf = cx.step("Cast", &[cx.x(1)], &[("to", Attr::Int(FLOAT))]);
        let last = cx.ints("axis", &[-1])?;
        let mu = cx.step("Unsqueeze", &[&mf, &last], &[]);
        let xm = cx.step("Mul", &[&x, &mu], &[]);
        let one = cx.ints("axis", &[1])?;
        let num = cx.step("ReduceSum", &[&xm, &one], &[("keepdims", Attr::Int(0))]);
        let den = cx.step("ReduceSum", &[&mu, &one], &[("keepdims", Attr::Int(0))]);
        let tiny = cx.scalar("tiny", 1e-9)?;
        let den = cx.step("Max", &[&den, &tiny], &[]);
        Ok(cx.output("Div", &[&num, &den], &[]))
    }
}
