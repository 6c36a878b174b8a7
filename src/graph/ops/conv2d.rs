//! 2-d convolution, with groups (depthwise when every group has one input and one output
//! channel).

use super::{
    check_size, check_spatial, map_rank, uniform, AffineOp, Attr, ChannelMap, ChannelParams, Ctx, LrpContext,
    OnnxContext, OpKind, ParamSpec, Role, Units,
};
use crate::error::Result;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// A convolution's hyperparameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2d {
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: [i64; 2],
    pub stride: [i64; 2],
    pub padding: [i64; 2],
    pub dilation: [i64; 2],
    pub groups: i64,
    pub bias: bool,
}

impl Conv2d {
    /// A square `k`×`k` convolution with stride 1, no padding, no bias, one group.
    pub fn new(in_channels: i64, out_channels: i64, k: i64) -> Self {
        Conv2d {
            in_channels,
            out_channels,
            kernel: [k, k],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            bias: false,
        }
    }
    /// Sets the stride in both dimensions.
    pub fn stride(mut self, s: i64) -> Self {
        self.stride = [s, s];
        self
    }
    /// Sets the padding in both dimensions.
    pub fn padding(mut self, p: i64) -> Self {
        self.padding = [p, p];
        self
    }
    /// Adds (or removes) the bias.
    pub fn bias(mut self, b: bool) -> Self {
        self.bias = b;
        self
    }
    /// Sets the number of groups.
    pub fn groups(mut self, g: i64) -> Self {
        self.groups = g;
        self
    }
    /// One group per channel, one output channel per input channel: the channel spaces of
    /// input and output are one.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels && self.groups == self.out_channels
    }
    fn fan_in(&self) -> i64 {
        self.in_channels / self.groups * self.kernel[0] * self.kernel[1]
    }
}

impl AffineOp for Conv2d {
    fn affine_forward(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        Ok(x.f_conv2d(w, b, self.stride, self.padding, self.dilation, self.groups)?)
    }
    fn affine_transpose(&self, g: &Tensor, w: &Tensor, x_size: &[i64]) -> Result<Tensor> {
        // The output padding that gives back the input's size where the stride dropped rows.
        let out = g.size();
        let pad = |d: usize| {
            x_size[2 + d]
                - ((out[2 + d] - 1) * self.stride[d] - 2 * self.padding[d]
                    + self.dilation[d] * (self.kernel[d] - 1)
                    + 1)
        };
        Ok(g.f_conv_transpose2d(
            w,
            None::<&Tensor>,
            self.stride,
            self.padding,
            [pad(0), pad(1)],
            self.groups,
            self.dilation,
        )?)
    }
    fn default_gamma(&self) -> f64 {
        0.25
    }
}

impl OpKind for Conv2d {
    fn describe(&self) -> String {
        format!(
            "{}→{} k{}x{} s{} p{}{}{}",
            self.in_channels,
            self.out_channels,
            self.kernel[0],
            self.kernel[1],
            self.stride[0],
            self.padding[0],
            if self.groups > 1 { format!(" g{}", self.groups) } else { String::new() },
            if self.bias { " +bias" } else { "" }
        )
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut v = vec![ParamSpec::weight(
            Role::Weight,
            vec![self.out_channels, self.in_channels / self.groups.max(1), self.kernel[0], self.kernel[1]],
        )];
        if self.bias {
            v.push(ParamSpec::weight(Role::Bias, vec![self.out_channels]));
        }
        v
    }
    fn check(&self) -> std::result::Result<(), String> {
        check_size("in_channels", self.in_channels)?;
        check_size("out_channels", self.out_channels)?;
        check_size("groups", self.groups)?;
        if self.in_channels % self.groups != 0 || self.out_channels % self.groups != 0 {
            return Err(format!(
                "{} input and {} output channels are not divisible into {} groups",
                self.in_channels, self.out_channels, self.groups
            ));
        }
        check_spatial("kernel", &self.kernel, 1)?;
        check_spatial("stride", &self.stride, 1)?;
        check_spatial("padding", &self.padding, 0)?;
        check_spatial("dilation", &self.dilation, 1)
    }
    fn rank(&self, inputs: &[usize]) -> std::result::Result<usize, String> {
        map_rank(inputs[0])
    }
    fn forward(&self, cx: &Ctx, xs: &[&Tensor]) -> Result<Tensor> {
        let bias = if self.bias { Some(cx.p(Role::Bias)?) } else { None };
        self.affine_forward(xs[0], cx.p(Role::Weight)?, bias)
    }
    fn macs(&self, _inputs: &[Vec<i64>], output: &[i64]) -> i64 {
        output[1..].iter().product::<i64>() * self.fan_in()
    }
    fn init(&self, _role: Role, shape: &[i64], rng: &mut ChaCha8Rng) -> Tensor {
        uniform(rng, shape, 1.0 / (self.fan_in() as f64).sqrt())
    }
    fn channels(&self) -> ChannelMap {
        if self.is_depthwise() {
            ChannelMap::Same
        } else {
            ChannelMap::New
        }
    }
    fn channel_block(&self) -> Option<String> {
        // Decision: a grouped conv that is not depthwise keeps its channels. Pruning it would
        // need every group to lose the same number of input and output channels (or whole
        // groups to go), which the per-unit ranking does not express; ResNeXt / RegNet still
        // lose channels in the spaces around their grouped convs.
        (self.groups > 1 && !self.is_depthwise())
            .then(|| format!("a grouped convolution ({} groups, not depthwise) reads or writes it", self.groups))
    }
    fn channel_params(&self) -> ChannelParams {
        ChannelParams::affine(self.bias, (self.groups == 1).then_some(1))
    }
    fn resize(&mut self, output: Option<i64>, input: Option<i64>) {
        if self.is_depthwise() {
            if let Some(n) = output.or(input) {
                (self.in_channels, self.out_channels, self.groups) = (n, n, n);
            }
            return;
        }
        if let Some(n) = output {
            self.out_channels = n;
        }
        if let Some(n) = input {
            self.in_channels = n;
        }
    }
    fn units(&self) -> Option<Units> {
        (!self.is_depthwise()).then_some(Units::Channels(self.out_channels))
    }
    fn takes_rule(&self) -> bool {
        true
    }
    fn lrp(&self, cx: &dyn LrpContext, xs: &[&Tensor], out: &Tensor, r: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(cx.affine_rule(self, xs[0], out, r)?)])
    }
    fn onnx(&self, cx: &mut dyn OnnxContext) -> Result<String> {
        let mut ins = vec![cx.x(0), cx.param(Role::Weight)?];
        if self.bias {
            ins.push(cx.param(Role::Bias)?);
        }
        let pads = [self.padding[0], self.padding[1], self.padding[0], self.padding[1]];
        Ok(cx.output(
            "Conv",
            &ins,
            &[
                ("kernel_shape", Attr::Ints(&self.kernel)),
                ("strides", Attr::Ints(&self.stride)),
                ("pads", Attr::Ints(&pads)),
                ("dilations", Attr::Ints(&self.dilation)),
                ("group", Attr::Int(self.groups)),
            ],
        ))
    }

    fn bias_flag(&self) -> Option<bool> {
        Some(self.bias)
    }
    fn bias_flag_mut(&mut self) -> Option<&mut bool> {
        Some(&mut self.bias)
    }
    fn init_hint(&self) -> Option<super::InitHint> {
        Some(super::InitHint::Conv { fan_out: self.out_channels * self.kernel[0] * self.kernel[1] })
    }
}
