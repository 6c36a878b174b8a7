//! Pointwise activations. They share one file because they differ only in the function applied:
//! each keeps shape and channels, has no parameters, and passes relevance through unchanged
//! (LRP's identity treatment of activations: relevance is what arrives, not a gradient).

use super::{Attr, Ctx, LrpContext, OnnxContext, OpKind};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Relevance passes through a pointwise activation unchanged.
fn pass(r: &Tensor) -> Result<Vec<Option<Tensor>>> {
    Ok(vec![Some(r.shallow_clone())])
}

macro_rules! parameter_free {
    ($(#[$doc:meta])* $name:ident, $fwd:expr, $onnx:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name;

        impl OpKind for $name {
            fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
                let f: fn(&Tensor) -> std::result::Result<Tensor, tch::TchError> = $fwd;
                Ok(f(xs[0])?)
            }
            fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
                pass(r)
            }
            fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
                let f: fn(&mut dyn OnnxContext) -> Result<String> = $onnx;
                f(cx)
            }
        }
    };
}

parameter_free!(
    /// max(x, 0).
    Relu,
    |x| x.f_relu(),
    |cx| Ok(cx.output("Relu", &[cx.x(0)], &[]))
);
parameter_free!(
    /// tanh(x).
    Tanh,
    |x| x.f_tanh(),
    |cx| Ok(cx.output("Tanh", &[cx.x(0)], &[]))
);
parameter_free!(
    /// 1 / (1 + e^−x).
    Sigmoid,
    |x| x.f_sigmoid(),
    |cx| Ok(cx.output("Sigmoid", &[cx.x(0)], &[]))
);
parameter_free!(
    /// x · sigmoid(x) (Swish).
    Silu,
    |x| x.f_silu(),
    |cx| {
        let s = cx.step("Sigmoid", &[cx.x(0)], &[]);
        Ok(cx.output("Mul", &[cx.x(0), s], &[]))
    }
);
parameter_free!(
    /// relu6(x + 3) / 6.
    Hardsigmoid,
    |x| x.f_hardsigmoid(),
    |cx| Ok(cx.output("HardSigmoid", &[cx.x(0)], &[("alpha", Attr::Float(1.0 / 6.0)), ("beta", Attr::Float(0.5))]))
);
parameter_free!(
    /// x · relu6(x + 3) / 6.
    Hardswish,
    |x| x.f_hardswish(),
    |cx| Ok(cx.output("HardSwish", &[cx.x(0)], &[]))
);

/// GELU; `tanh` selects the tanh approximation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gelu {
    pub tanh: bool,
}

impl OpKind for Gelu {
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(xs[0].f_gelu(if self.tanh { "tanh" } else { "none" })?)
    }
    fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        pass(r)
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let x = cx.x(0);
        let (half, one) = (cx.scalar("half", 0.5)?, cx.scalar("one", 1.0)?);
        let gate = if self.tanh {
            let c = cx.scalar("c", (2.0f32 / std::f32::consts::PI).sqrt())?;
            let k = cx.scalar("k", 0.044715)?;
            let x2 = cx.step("Mul", &[&x, &x], &[]);
            let x3 = cx.step("Mul", &[&x2, &x], &[]);
            let kx3 = cx.step("Mul", &[&x3, &k], &[]);
            let inner = cx.step("Add", &[&x, &kx3], &[]);
            let inner = cx.step("Mul", &[&inner, &c], &[]);
            cx.step("Tanh", &[&inner], &[])
        } else {
            let r2 = cx.scalar("sqrt2", std::f32::consts::SQRT_2)?;
            let d = cx.step("Div", &[&x, &r2], &[]);
            cx.step("Erf", &[&d], &[])
        };
        let a = cx.step("Add", &[&gate, &one], &[]);
        let m = cx.step("Mul", &[&x, &a], &[]);
        Ok(cx.output("Mul", &[&m, &half], &[]))
    }
}

/// Clamps to [min_val, max_val] (PyTorch's Hardtanh; ReLU6 is (0, 6)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardtanh {
    pub min_val: f64,
    pub max_val: f64,
}

impl Hardtanh {
    /// ReLU6: clamp to [0, 6].
    pub fn relu6() -> Self {
        Hardtanh { min_val: 0.0, max_val: 6.0 }
    }
}

impl OpKind for Hardtanh {
    fn describe(&self) -> String {
        format!("[{}, {}]", self.min_val, self.max_val)
    }
    fn check(&self) -> std::result::Result<(), String> {
        if self.min_val.is_finite() && self.max_val.is_finite() && self.min_val < self.max_val {
            Ok(())
        } else {
            Err(format!("min_val {} must be finite and below max_val {}", self.min_val, self.max_val))
        }
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(xs[0].f_clamp(self.min_val, self.max_val)?)
    }
    fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        pass(r)
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let lo = cx.scalar("min", self.min_val as f32)?;
        let hi = cx.scalar("max", self.max_val as f32)?;
        Ok(cx.output("Clip", &[cx.x(0), lo, hi], &[]))
    }
}

/// x raised to a constant power, elementwise (StarReLU's relu(x)² in PoolFormerV2 and the other
/// MetaFormer baselines; their scale and shift are `scale` nodes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pow {
    pub exponent: f64,
}

impl OpKind for Pow {
    fn describe(&self) -> String {
        format!("exponent {}", self.exponent)
    }
    fn check(&self) -> std::result::Result<(), String> {
        if self.exponent.is_finite() {
            Ok(())
        } else {
            Err(format!("exponent {} must be finite", self.exponent))
        }
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        Ok(xs[0].f_pow_tensor_scalar(self.exponent)?)
    }
    /// Elementwise, as an activation: relevance passes unchanged (LXT and zennit treat pointwise
    /// nonlinearities so).
    fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        pass(r)
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let e = cx.scalar("exponent", self.exponent as f32)?;
        Ok(cx.output("Pow", &[cx.x(0), e], &[]))
    }
}

/// max(x, 0) + negative_slope · min(x, 0) (PyTorch's LeakyReLU; darknet / CSP backbones).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakyRelu {
    pub negative_slope: f64,
}

impl OpKind for LeakyRelu {
    fn describe(&self) -> String {
        format!("slope {}", self.negative_slope)
    }
    fn check(&self) -> std::result::Result<(), String> {
        if self.negative_slope.is_finite() {
            Ok(())
        } else {
            Err(format!("negative_slope {} must be finite", self.negative_slope))
        }
    }
    fn forward(&self, _cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let x = xs[0];
        Ok(x.f_where_self(&x.f_ge(0.0)?, &x.f_mul_scalar(self.negative_slope)?)?)
    }
    fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        pass(r)
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        Ok(cx.output("LeakyRelu", &[cx.x(0)], &[("alpha", Attr::Float(self.negative_slope as f32))]))
    }
}
