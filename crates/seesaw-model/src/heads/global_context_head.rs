//! HTC-Lite's global context encoder (mmdetection's `GlobalContextHead` from SCNet): convs on
//! the coarsest pyramid level, global average pooling, and a multi-label classifier over the
//! image's classes trained with sigmoid BCE. The pooled feature is added to every RoI feature
//! of the box and mask heads ([`fuse_context`]).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::heads::rpn_head::zeros_param;
use crate::losses::common::{bce_with_logits, float_tensor, index_tensor};

/// Settings of [`GlobalContextHead`]; defaults are SCNet's (spec §4.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalContextConfig {
    /// 3x3 convs of the neck's width. Default 4.
    pub num_convs: usize,
    /// Pair the convs into residual blocks (conv, ReLU, conv, + identity; no final ReLU)
    /// instead of conv + ReLU each. Default true.
    pub conv_to_res: bool,
    /// Weight of the multi-label BCE loss. Default 3.0.
    pub loss_weight: f64,
}

impl Default for GlobalContextConfig {
    fn default() -> Self {
        Self {
            num_convs: 4,
            conv_to_res: true,
            loss_weight: 3.0,
        }
    }
}

impl GlobalContextConfig {
    /// Builds the head over `channels`-wide features for `num_classes` classes.
    pub fn init(
        &self,
        channels: usize,
        num_classes: usize,
        device: &Device,
    ) -> Result<GlobalContextHead> {
        if channels == 0 || num_classes == 0 {
            return Err(ModelError::Input(
                "global context head: channels and num_classes must be positive".into(),
            ));
        }
        if self.conv_to_res && self.num_convs % 2 != 0 {
            return Err(ModelError::Input(format!(
                "global context head: conv_to_res pairs convs, num_convs {} is odd",
                self.num_convs
            )));
        }
        let convs = (0..self.num_convs)
            .map(|_| {
                let c = Conv2dConfig::new([channels, channels], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
                if self.conv_to_res {
                    // PyTorch's default conv init (SimplifiedBasicBlock has no init_cfg).
                    c.init(device)
                } else {
                    crate::heads::rpn_head::zero_bias(
                        c.with_initializer(Initializer::KaimingNormal {
                            gain: 2f64.sqrt(),
                            fan_out_only: true,
                        })
                        .init(device),
                    )
                }
            })
            .collect();
        let mut fc = LinearConfig::new(channels, num_classes)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.01,
            })
            .init(device);
        fc.bias = fc.bias.take().map(zeros_param);
        Ok(GlobalContextHead {
            convs,
            fc,
            conv_to_res: self.conv_to_res,
            loss_weight: self.loss_weight,
        })
    }
}

/// The global context head.
#[derive(Module, Debug)]
pub struct GlobalContextHead {
    pub convs: Vec<Conv2d>,
    pub fc: Linear,
    #[module(skip)]
    pub conv_to_res: bool,
    #[module(skip)]
    pub loss_weight: f64,
}

impl GlobalContextHead {
    /// `x` `[B, C, H, W]` (the coarsest pyramid level) -> multi-label logits `[B, K]` and the
    /// pooled context feature `[B, C]`.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let mut x = x;
        if self.conv_to_res {
            for pair in self.convs.chunks(2) {
                let y = relu(pair[0].forward(x.clone()));
                let y = match pair.get(1) {
                    Some(c) => c.forward(y),
                    None => y,
                };
                x = y + x;
            }
        } else {
            for c in &self.convs {
                x = relu(c.forward(x));
            }
        }
        let [b, c, h, w] = x.dims();
        let g = x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c]);
        (self.fc.forward(g.clone()), g)
    }

    /// `loss_weight` x the mean sigmoid BCE of `logits` `[B, K]` against the image-level
    /// targets: class k is positive in image b iff it is among `labels[b]`.
    pub fn loss(&self, logits: Tensor<2>, labels: &[Vec<usize>]) -> Result<Tensor<1>> {
        let [b, k] = logits.dims();
        if labels.len() != b {
            return Err(ModelError::Input(format!(
                "global context loss: {b} images but {} label sets",
                labels.len()
            )));
        }
        let mut t = vec![0.0f64; b * k];
        for (i, ls) in labels.iter().enumerate() {
            for &l in ls {
                if l >= k {
                    return Err(ModelError::Input(format!(
                        "global context loss: image {i} has label {l} of {k} classes"
                    )));
                }
                t[i * k + l] = 1.0;
            }
        }
        let device = logits.device();
        // The mean over the global batch's images under data parallelism.
        let entries = crate::distributed::global_sum((b * k) as f64).max(1.0);
        Ok(bce_with_logits(logits, float_tensor(t, [b, k], &device))
            .sum()
            .div_scalar(entries)
            .mul_scalar(self.loss_weight))
    }
}

/// Adds each image's context `ctx` `[B, C]` to the features `[R, C, h, w]` of its RoIs
/// (`rois[r][0]` is the image), as SCNet's `_fuse_glbctx`.
pub fn fuse_context(feats: Tensor<4>, ctx: &Tensor<2>, rois: &[[f32; 5]]) -> Tensor<4> {
    let [r, c, _, _] = feats.dims();
    if r == 0 {
        return feats;
    }
    let idx: Vec<usize> = rois.iter().map(|roi| roi[0] as usize).collect();
    let per_roi = ctx
        .clone()
        .select(0, index_tensor(&idx, &feats.device()))
        .reshape([r, c, 1, 1]);
    feats + per_roi
}
