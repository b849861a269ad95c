//! mmdetection's `Shared2FCBBoxHead`: two shared fully connected layers over the pooled RoI
//! features, then a classifier (a plain or a cosine `NormedLinear`, with as many outputs as the
//! loss wants: C + 1 for cross-entropy, C + 2 for Seesaw) and a box regressor (class-specific
//! `4 C`, or class-agnostic `4`).

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::heads::rpn_head::zeros_param;
use crate::layers::{NormedLinear, NormedLinearConfig};

/// Settings of [`BBoxHead`]; defaults are mmdetection's (1024-d FCs, 7x7 RoIs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BBoxHeadConfig {
    pub fc_channels: usize,
    /// Cosine classifier (`NormedLinear`, temperature `tau`). Default false; every Seesaw
    /// config turns it on.
    pub normed_classifier: bool,
    /// Default 20.
    pub tau: f64,
    /// One box per RoI instead of one per class. Default false.
    pub class_agnostic: bool,
    /// Deltas are divided by these (DeltaXYWHBBoxCoder). Default 0.1, 0.1, 0.2, 0.2.
    pub target_stds: [f32; 4],
    /// Box regression loss: l1 (Mask R-CNN) or smooth_l1 with beta 1 (Cascade, HTC).
    /// Default l1.
    pub loss_bbox: String,
}

impl Default for BBoxHeadConfig {
    fn default() -> Self {
        Self {
            fc_channels: 1024,
            normed_classifier: false,
            tau: 20.0,
            class_agnostic: false,
            target_stds: [0.1, 0.1, 0.2, 0.2],
            loss_bbox: "l1".into(),
        }
    }
}

impl BBoxHeadConfig {
    /// Builds the head for `in_features` = channels x 7 x 7, `num_classes` C and a classifier
    /// of `cls_channels` outputs.
    pub fn init(
        &self,
        in_features: usize,
        num_classes: usize,
        cls_channels: usize,
        device: &Device,
    ) -> Result<BBoxHead> {
        if self.fc_channels == 0 || num_classes == 0 {
            return Err(ModelError::Input(
                "bbox head: fc_channels and num_classes must be positive".into(),
            ));
        }
        let fc = self.fc_channels;
        let xavier = Initializer::XavierUniform { gain: 1.0 };
        let linear = |i: usize, o: usize, init: Initializer| {
            let mut l = LinearConfig::new(i, o).with_initializer(init).init(device);
            l.bias = l.bias.take().map(zeros_param);
            l
        };
        let (cls, cls_normed) = if self.normed_classifier {
            let mut c = NormedLinearConfig::new(fc, cls_channels);
            c.tempearture = self.tau;
            (None, Some(c.init(device)))
        } else {
            let init = Initializer::Normal {
                mean: 0.0,
                std: 0.01,
            };
            (Some(linear(fc, cls_channels, init)), None)
        };
        let reg_out = if self.class_agnostic {
            4
        } else {
            4 * num_classes
        };
        Ok(BBoxHead {
            fc1: linear(in_features, fc, xavier.clone()),
            fc2: linear(fc, fc, xavier),
            cls,
            cls_normed,
            reg: linear(
                fc,
                reg_out,
                Initializer::Normal {
                    mean: 0.0,
                    std: 0.001,
                },
            ),
        })
    }
}

/// The box head.
#[derive(Module, Debug)]
pub struct BBoxHead {
    pub fc1: Linear,
    pub fc2: Linear,
    pub cls: Option<Linear>,
    pub cls_normed: Option<NormedLinear>,
    pub reg: Linear,
}

impl BBoxHead {
    /// `rois` `[R, C, 7, 7]` -> class logits `[R, cls_channels]` and deltas `[R, 4 or 4 C]`.
    pub fn forward(&self, rois: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let [r, c, h, w] = rois.dims();
        let x = rois.reshape([r, c * h * w]);
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        let cls = match (&self.cls, &self.cls_normed) {
            (_, Some(n)) => n.forward(x.clone()),
            (Some(l), None) => l.forward(x.clone()),
            (None, None) => unreachable_cls(r, x.clone()),
        };
        (cls, self.reg.forward(x))
    }
}

/// A head built by [`BBoxHeadConfig::init`] always has a classifier; a hand-built one without
/// gets zero logits rather than a panic.
fn unreachable_cls(r: usize, x: Tensor<2>) -> Tensor<2> {
    Tensor::zeros([r, 1], &x.device())
}
