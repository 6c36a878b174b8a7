//! Batch normalisation over the channels of a map (also applied to (B, C) vectors).

use super::{
    at_least, check_non_negative, check_size, ones, Attr, ChannelParams, Ctx, LrpContext, OnnxContext, OpKind,
    ParamKind, ParamSpec, Role,
};
use crate::error::Result;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// BatchNorm's hyperparameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNorm2d {
    pub features: i64,
    pub eps: f64,
    pub momentum: f64,
}

impl BatchNorm2d {
    /// PyTorch's defaults: eps 1e-5, momentum 0.1.
    pub fn new(features: i64) -> Self {
        BatchNorm2d { features, eps: 1e-5, momentum: 0.1 }
    }
    /// Sets eps.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
}

impl OpKind for BatchNorm2d {
    fn describe(&self) -> String {
        format!("{}", self.features)
    }
    fn params(&self) -> Vec<ParamSpec> {
        let f = vec![self.features];
        vec![
            ParamSpec::weight(Role::Weight, f.clone()),
            ParamSpec::weight(Role::Bias, f.clone()),
            ParamSpec::buffer(Role::RunningMean, f.clone()),
            ParamSpec::buffer(Role::RunningVar, f),
            ParamSpec { role: Role::NumBatchesTracked, shape: vec![], kind: ParamKind::Optional },
        ]
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("features", self.features)?;
        check_non_negative("eps", self.eps)?;
        check_non_negative("momentum", self.momentum)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        at_least(2, inputs[0])
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let y = Tensor::f_batch_norm(
            xs[0],
            Some(cx.p(Role::Weight)?),
            Some(cx.p(Role::Bias)?),
            Some(cx.p(Role::RunningMean)?),
            Some(cx.p(Role::RunningVar)?),
            cx.train(),
            self.momentum,
            self.eps,
            false,
        )?;
        if cx.train() {
            if let Some(n) = cx.opt(Role::NumBatchesTracked) {
                tch::no_grad(|| n.shallow_clone().f_add_scalar_(1)).map(|_| ())?;
            }
        }
        Ok(y)
    }
    fn init(&self, role: Role, shape: &[i64], _rng: &mut ChaCha8Rng) -> Tensor {
        match role {
            Role::Weight | Role::RunningVar => ones(shape),
            Role::NumBatchesTracked => Tensor::zeros(shape, (Kind::Int64, crate::device::HOST)),
            Role::Bias | Role::RunningMean => Tensor::zeros(shape, (Kind::Float, crate::device::HOST)),
        }
    }
    fn channel_params(&self) -> ChannelParams {
        let output = [Role::Weight, Role::Bias, Role::RunningMean, Role::RunningVar].map(|r| (r, 0)).to_vec();
        ChannelParams { output, input: Vec::new() }
    }
    fn resize(&mut self, output: Option<i64>, input: Option<i64>) {
        if let Some(n) = output.or(input) {
            self.features = n;
        }
    }
    fn lrp(&self, _cx: &dyn LrpContext, _xs: &[&Tensor], _out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // Merged into the conv before it (the canonizer), or passed: the identity either way.
        Ok(vec![Some(r.shallow_clone())])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let mut ins = vec![cx.x(0)];
        for r in [Role::Weight, Role::Bias, Role::RunningMean, Role::RunningVar] {
            ins.push(cx.param(r)?);
        }
        Ok(cx.output("BatchNormalization", &ins, &[("epsilon", Attr::Float(self.eps as f32))]))
    }

    fn normalizes(&self) -> bool {
        true
    }
    fn batch_norm_eps(&self) -> Option<f64> {
        Some(self.eps)
    }
}
