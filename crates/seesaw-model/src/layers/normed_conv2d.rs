//! The normalized 1x1 (or kxk) mask predictor (mmdetection `NormedConv2d`): input channels and
//! weights are L2-normalized before the convolution, the input scaled by τ.

use burn::module::{Initializer, Module, Param};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};

use super::normed_linear::l2_normalize;

/// Settings of [`NormedConv2d`].
#[derive(Debug, Clone, PartialEq)]
pub struct NormedConv2dConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Square kernel size. Default 1.
    pub kernel_size: usize,
    /// Temperature τ. Default 20.
    pub tempearture: f64,
    /// Exponent of the norms. Default 1.
    pub power: f64,
    /// Added to each norm. Default 1e-6.
    pub eps: f64,
    /// Normalize each output filter as a whole instead of per kernel position. Default false.
    pub norm_over_kernel: bool,
    /// Keep a bias. Default true.
    pub bias: bool,
}

impl NormedConv2dConfig {
    /// mmdetection's defaults (1x1 kernel).
    pub fn new(in_channels: usize, out_channels: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel_size: 1,
            tempearture: 20.0,
            power: 1.0,
            eps: 1e-6,
            norm_over_kernel: false,
            bias: true,
        }
    }

    /// Kaiming-uniform weights (PyTorch's Conv2d default), zero bias.
    pub fn init(&self, device: &Device) -> NormedConv2d {
        let k = self.kernel_size;
        let fan_in = self.in_channels * k * k;
        let weight = Initializer::KaimingUniform {
            gain: 1.0 / 3f64.sqrt(),
            fan_out_only: false,
        }
        .init_with(
            [self.out_channels, self.in_channels, k, k],
            Some(fan_in),
            None,
            device,
        );
        let bias = self
            .bias
            .then(|| Initializer::Zeros.init([self.out_channels], device));
        NormedConv2d {
            weight,
            bias,
            padding: k / 2,
            tempearture: self.tempearture,
            power: self.power,
            eps: self.eps,
            norm_over_kernel: self.norm_over_kernel,
        }
    }
}

/// Normalized convolution.
#[derive(Module, Debug)]
pub struct NormedConv2d {
    /// `[out, in, k, k]`.
    pub weight: Param<Tensor<4>>,
    /// `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
    pub padding: usize,
    pub tempearture: f64,
    pub power: f64,
    pub eps: f64,
    pub norm_over_kernel: bool,
}

impl NormedConv2d {
    /// `input`: `[N, in, H, W]` -> `[N, out, H, W]`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let w = self.weight.val();
        let w = if self.norm_over_kernel {
            let [o, i, kh, kw] = w.dims();
            l2_normalize(w.reshape([o, i * kh * kw]), 1, self.power, self.eps)
                .reshape([o, i, kh, kw])
        } else {
            l2_normalize(w, 1, self.power, self.eps)
        };
        let x = l2_normalize(input, 1, self.power, self.eps).mul_scalar(self.tempearture);
        let p = self.padding;
        conv2d(
            x,
            w,
            self.bias.as_ref().map(|b| b.val()),
            ConvOptions::new([1, 1], [p, p], [1, 1], 1),
        )
    }
}
