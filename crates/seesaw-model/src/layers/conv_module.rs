//! mmcv's `ConvModule` (mmcv/cnn/bricks/conv_module.py): a convolution with an optional norm
//! and an optional ReLU, in the order `conv -> norm -> act` or `act -> conv -> norm`. The necks
//! built after FPN (FPN_CARAFE, FPG, NAS-FPN) are made of them; their parameter names are
//! mmcv's (`.conv.weight`, `.conv.bias`, and the norm as `.norm.*`, which the weight loader
//! maps to mmcv's `bn` / `gn`).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::norm::{ConvKind, Norm, NormConfig, NormKind, conv_forward};

/// Where the ReLU sits (mmcv's `order` with `act_cfg=dict(type='ReLU')`), or none
/// (`act_cfg=None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// No activation.
    None,
    /// `('conv', 'norm', 'act')`: ReLU last.
    ReluLast,
    /// `('act', 'conv', 'norm')`: ReLU on the input, before the convolution.
    ReluFirst,
}

/// How the convolution's weight is drawn (its bias, if any, starts at zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConvInit {
    /// mmcv's `xavier_init(distribution='uniform')`: Glorot uniform.
    XavierUniform,
    /// mmcv's `caffe2_xavier_init`: uniform in `±sqrt(3 / fan_in)` (He uniform with `a = 1`).
    Caffe2Xavier,
    /// mmcv's ConvModule default (`kaiming_init(mode='fan_out', nonlinearity='relu')`): normal
    /// with std `sqrt(2 / fan_out)`.
    KaimingNormalFanOut,
}

impl ConvInit {
    fn initializer(self) -> Initializer {
        match self {
            ConvInit::XavierUniform => Initializer::XavierUniform { gain: 1.0 },
            ConvInit::Caffe2Xavier => Initializer::KaimingUniform {
                gain: 1.0,
                fan_out_only: false,
            },
            ConvInit::KaimingNormalFanOut => Initializer::KaimingNormal {
                gain: 2f64.sqrt(),
                fan_out_only: true,
            },
        }
    }
}

/// Settings of [`ConvModule`]: a `kernel x kernel` convolution `in_channels -> out_channels`
/// with padding `kernel / 2`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvModuleConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    /// The convolution's bias. mmcv's `bias='auto'` is `norm.type == none`
    /// ([`ConvModuleConfig::new`] sets that); NAS-FPN's merging cells keep it with a norm.
    pub bias: bool,
    pub norm: NormConfig,
    pub conv: ConvKind,
    pub act: Activation,
    pub init: ConvInit,
}

impl ConvModuleConfig {
    /// A `kernel x kernel`, stride-1 module with `bias='auto'`, no activation and Xavier
    /// uniform weights.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize, norm: &NormConfig) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            bias: norm.kind == NormKind::None,
            norm: norm.clone(),
            conv: ConvKind::Conv,
            act: Activation::None,
            init: ConvInit::XavierUniform,
        }
    }

    pub fn with_stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    pub fn with_act(mut self, act: Activation) -> Self {
        self.act = act;
        self
    }

    pub fn with_conv(mut self, conv: ConvKind) -> Self {
        self.conv = conv;
        self
    }

    pub fn with_init(mut self, init: ConvInit) -> Self {
        self.init = init;
        self
    }

    /// Builds the module; a batch norm trains on batch statistics.
    pub fn init(&self, device: &Device) -> ConvModule {
        let (k, p) = (self.kernel, self.kernel / 2);
        let mut conv = Conv2dConfig::new([self.in_channels, self.out_channels], [k, k])
            .with_stride([self.stride; 2])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_initializer(self.init.initializer())
            .with_bias(false)
            .init(device);
        if self.bias {
            conv.bias = Some(Initializer::Zeros.init([self.out_channels], device));
        }
        ConvModule {
            conv,
            norm: self.norm.init(self.out_channels, false, device),
            relu_first: self.act == Activation::ReluFirst,
            relu_last: self.act == Activation::ReluLast,
            ws: self.conv == ConvKind::Ws,
        }
    }
}

/// A convolution, its norm and its activation.
#[derive(Module, Debug)]
pub struct ConvModule {
    pub conv: Conv2d,
    /// mmcv's `bn` / `gn`; None without a norm.
    pub norm: Option<Norm>,
    pub relu_first: bool,
    pub relu_last: bool,
    /// Weight-standardised convolution (mmcv's `ConvWS`).
    pub ws: bool,
}

impl ConvModule {
    /// `[B, C_in, H, W]` -> `[B, C_out, H', W']`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = if self.relu_first { relu(x) } else { x };
        let y = conv_forward(&self.conv, x, self.ws);
        let y = match &self.norm {
            Some(n) => n.forward(y),
            None => y,
        };
        if self.relu_last { relu(y) } else { y }
    }
}
