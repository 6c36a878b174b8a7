//! Fully connected layer over the last dimension.

use super::{
    at_least, check_range, uniform, AffineOp, Attr, ChannelMap, ChannelParams, Ctx, LrpContext, OnnxContext, OpKind,
    ParamSpec, Role, Units,
};
use crate::error::Result;
use crate::graph::MAX_FIELD;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// A linear layer's sizes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linear {
    pub in_features: i64,
    pub out_features: i64,
    pub bias: bool,
}

impl Linear {
    /// A linear layer with bias.
    pub fn new(in_features: i64, out_features: i64) -> Self {
        Linear { in_features, out_features, bias: true }
    }
}

impl AffineOp for Linear {
    fn affine_forward(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        Ok(x.f_linear(w, b)?)
    }
    fn affine_transpose(&self, g: &Tensor, w: &Tensor, _x_size: &[i64]) -> Result<Tensor> {
        Ok(g.f_matmul(w)?)
    }
    fn default_gamma(&self) -> f64 {
        0.05
    }
    /// One row of W per position instead of a product with all of them (an LM head's 49k).
    fn sparse_transpose(&self, index: &Tensor, values: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
        let rows = w.f_index_select(0, &index.f_flatten(0, -1)?)?;
        let mut shape = index.size();
        *shape.last_mut().expect("index has dimensions") = w.size()[1];
        Ok(Some(rows.f_reshape(&shape)?.f_mul(values)?))
    }
}

impl OpKind for Linear {
    fn describe(&self) -> String {
        format!("{}→{}{}", self.in_features, self.out_features, if self.bias { " +bias" } else { "" })
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut v = vec![ParamSpec::weight(Role::Weight, vec![self.out_features, self.in_features])];
        if self.bias {
            v.push(ParamSpec::weight(Role::Bias, vec![self.out_features]));
        }
        v
    }
    fn check(&self) -> std::result::Result<(), String> {
        // Pruning may remove every neuron of an MLP block: zero features are valid.
        check_range("in_features", self.in_features, 0, MAX_FIELD)?;
        check_range("out_features", self.out_features, 0, MAX_FIELD)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        at_least(1, inputs[0])
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let bias = if self.bias { Some(cx.p(Role::Bias)?) } else { None };
        self.affine_forward(xs[0], cx.p(Role::Weight)?, bias)
    }
    fn macs(&self, _inputs: &[Vec<i64>], output: &[i64]) -> i64 {
        output[1..].iter().product::<i64>() * self.in_features
    }
    fn init(&self, _role: Role, shape: &[i64], rng: &mut ChaCha8Rng) -> Tensor {
        uniform(rng, shape, 1.0 / (self.in_features.max(1) as f64).sqrt())
    }
    fn channels(&self) -> ChannelMap {
        ChannelMap::New
    }
    fn channel_params(&self) -> ChannelParams {
        ChannelParams::affine(self.bias, Some(1))
    }
    fn resize(&mut self, output: Option<i64>, input: Option<i64>) {
        if let Some(n) = output {
            self.out_features = n;
        }
        if let Some(n) = input {
            self.in_features = n;
        }
    }
    fn units(&self) -> Option<Units> {
        Some(Units::Channels(self.out_features))
    }
    fn takes_rule(&self) -> bool {
        true
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(cx.affine_rule(self, xs[0], out, r)?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        if cx.in_shape(0).len() == 2 {
            let mut ins = vec![cx.x(0), cx.param(Role::Weight)?];
            if self.bias {
                ins.push(cx.param(Role::Bias)?);
            }
            return Ok(cx.output("Gemm", &ins, &[("transB", Attr::Int(1))]));
        }
        let name = format!("{}:T", cx.param_name(Role::Weight));
        let wt = cx.weight(Role::Weight)?.f_transpose(0, 1)?;
        let wt = cx.tensor(&name, &wt)?;
        if self.bias {
            let m = cx.step("MatMul", &[cx.x(0), wt], &[]);
            let b = cx.param(Role::Bias)?;
            Ok(cx.output("Add", &[m, b], &[]))
        } else {
            Ok(cx.output("MatMul", &[cx.x(0), wt], &[]))
        }
    }

    fn linear_classifier(&self) -> bool {
        true
    }
    fn bias_flag(&self) -> Option<bool> {
        Some(self.bias)
    }
    fn bias_flag_mut(&mut self) -> Option<&mut bool> {
        Some(&mut self.bias)
    }
    fn init_hint(&self) -> Option<super::InitHint> {
        Some(super::InitHint::Linear { in_features: self.in_features, out_features: self.out_features })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// Rows of W for one target per position are the dense product's values.
    #[test]
    fn the_sparse_transpose_is_the_dense_product() {
        tch::manual_seed(0);
        let (out, inp) = (5003, 8);
        let lin = Linear::new(inp, out);
        let w = Tensor::randn([out, inp], (Kind::Float, tch::Device::Cpu));
        let index = Tensor::from_slice(&[5i64, 4000, 17, 0, 4998, 9]).view([2, 3, 1]);
        let values = Tensor::randn([2, 3, 1], (Kind::Float, tch::Device::Cpu));
        let g = Tensor::zeros([2, 3, out], (Kind::Float, tch::Device::Cpu)).scatter(-1, &index, &values);
        let dense = lin.affine_transpose(&g, &w, &[2, 3, inp]).unwrap();
        let sparse = lin.sparse_transpose(&index, &values, &w).unwrap().unwrap();
        assert_eq!(sparse.size(), vec![2, 3, inp]);
        assert!(sparse.allclose(&dense, 0.0, 0.0, false), "{sparse} vs {dense}");
    }
}
