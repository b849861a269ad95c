//! Norm and convolution choices of mmcv's `norm_cfg` and `conv_cfg`: batch norm or group norm
//! (Wu and He, "Group Normalization", ECCV 2018) and plain or weight-standardised
//! convolutions (Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and Weight
//! Standardization", 2019; mmcv's `ConvWS2d`, mmcv/cnn/bricks/conv_ws.py), as mmdetection's
//! `configs/gn/` and `configs/gn+ws/` set them in backbone, neck and heads.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Norm kind (mmcv's `norm_cfg.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    /// No norm (mmcv's `norm_cfg=None`): the convolution keeps its bias.
    #[default]
    None,
    /// Batch norm (`BN`).
    #[serde(alias = "BN")]
    Bn,
    /// Group norm (`GN`, with `num_groups`).
    #[serde(alias = "GN")]
    Gn,
}

/// mmcv's `norm_cfg`: `{ type = "gn", num_groups = 32 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormConfig {
    /// Default `none` (the backbone's default is `bn`).
    #[serde(rename = "type")]
    pub kind: NormKind,
    /// Groups of a group norm. Default 32.
    pub num_groups: usize,
    /// Added to the variance (mmcv's and PyTorch's `eps`). Default 1e-5; torchvision's COCO
    /// detection models run their frozen batch norms with 0 (`overwrite_eps(model, 0.0)`).
    pub eps: f64,
}

impl Default for NormConfig {
    fn default() -> Self {
        Self {
            kind: NormKind::None,
            num_groups: 32,
            eps: 1e-5,
        }
    }
}

impl NormConfig {
    /// Batch norm.
    pub fn bn() -> Self {
        Self {
            kind: NormKind::Bn,
            ..Default::default()
        }
    }

    /// Checks that a group norm's groups divide every channel count in `channels`.
    ///
    /// # Errors
    /// [`ModelError::Input`] naming `field` (e.g. `model.neck.norm`).
    pub fn check(&self, field: &str, channels: &[usize]) -> Result<()> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(ModelError::Input(format!(
                "{field}.eps: {} is not a finite value >= 0",
                self.eps
            )));
        }
        if self.kind != NormKind::Gn {
            return Ok(());
        }
        match channels
            .iter()
            .find(|&&c| self.num_groups == 0 || c % self.num_groups != 0)
        {
            Some(c) => Err(ModelError::Input(format!(
                "{field}.num_groups: {} groups do not divide {c} channels",
                self.num_groups
            ))),
            None => Ok(()),
        }
    }

    /// A norm over `channels` (weight 1, bias 0); `eval` keeps a batch norm on its running
    /// statistics (mmdetection's `norm_eval`). None for `type = "none"`.
    pub fn init(&self, channels: usize, eval: bool, device: &Device) -> Option<Norm> {
        match self.kind {
            NormKind::None => None,
            NormKind::Bn => {
                let mut bn = BatchNormConfig::new(channels)
                    .with_epsilon(self.burn_eps())
                    .init(device);
                if eval {
                    bn.training = Param::from_bool(false);
                }
                Some(Norm::Batch(bn))
            }
            NormKind::Gn => Some(Norm::Group(
                GroupNormConfig::new(self.num_groups, channels)
                    .with_epsilon(self.burn_eps())
                    .init(device),
            )),
        }
    }

    /// `eps` as burn's norms take it: they refuse 0, so 0 becomes the smallest positive double,
    /// which is 0 once added in single precision.
    fn burn_eps(&self) -> f64 {
        if self.eps > 0.0 {
            self.eps
        } else {
            f64::MIN_POSITIVE
        }
    }

    /// mmcv's name stem for the norm layer: `bn` or `gn` (`gn1`, `convs.0.gn`, ...).
    pub fn abbr(&self) -> &'static str {
        match self.kind {
            NormKind::Gn => "gn",
            _ => "bn",
        }
    }
}

/// A batch or a group norm; the parameter names are the layer's own.
#[derive(Module, Debug)]
pub enum Norm {
    Batch(BatchNorm),
    Group(GroupNorm),
}

impl Norm {
    /// `[B, C, ...]` -> the same.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Norm::Batch(b) => b.forward(x),
            Norm::Group(g) => g.forward(x),
        }
    }
}

/// Convolution kind (mmcv's `conv_cfg.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvKind {
    /// `Conv2d`.
    #[default]
    #[serde(alias = "Conv")]
    Conv,
    /// `ConvWS`: weight standardisation at every forward.
    #[serde(alias = "ConvWS")]
    Ws,
}

/// `conv` applied to `x`, with its weight standardised first when `ws` (mmcv's `ConvWS2d`:
/// per output filter, minus its mean, over its unbiased standard deviation plus 1e-5).
pub fn conv_forward(conv: &Conv2d, x: Tensor<4>, ws: bool) -> Tensor<4> {
    if !ws {
        return conv.forward(x);
    }
    let [_, _, h, w] = x.dims();
    // burn's own rule for each padding kind (its helper is crate-private).
    let same = |k: usize, stride: usize, n: usize| {
        let out = n.div_ceil(stride.max(1));
        let total = if out > 0 {
            ((out - 1) * stride + k).saturating_sub(n)
        } else {
            0
        };
        (total / 2, total - total / 2)
    };
    let ((top, bottom), (left, right)) = match conv.padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Same => (
            same(conv.kernel_size[0], conv.stride[0], h),
            same(conv.kernel_size[1], conv.stride[1], w),
        ),
        PaddingConfig2d::Explicit(t, l, b, r) => ((t, b), (l, r)),
    };
    let weight = conv.weight.val();
    let [o, i, kh, kw] = weight.dims();
    let n = i * kh * kw;
    let flat = weight.reshape([o, n]);
    let mean = flat.clone().mean_dim(1);
    let centred = flat - mean;
    let var = centred
        .clone()
        .square()
        .sum_dim(1)
        .div_scalar((n.max(2) - 1) as f64);
    let std = var.sqrt().add_scalar(1e-5);
    let weight = (centred / std).reshape([o, i, kh, kw]);
    let options = ConvOptions::new_with_padding(
        conv.stride,
        [(top, bottom), (left, right)],
        conv.dilation,
        conv.groups,
    );
    conv2d(x, weight, conv.bias.as_ref().map(|b| b.val()), options)
}
