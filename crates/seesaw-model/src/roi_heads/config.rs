//! The RoI heads' settings: RoI sampling and pooling ([`RoiConfig`], mmdetection's
//! `train_cfg.rcnn` and `bbox_roi_extractor`), test-time settings ([`RcnnTestConfig`],
//! `test_cfg.rcnn`) and the cascade's stages ([`CascadeConfig`], `cascade_rcnn`'s
//! `stage_loss_weights` and per-stage `target_stds`).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ops::roi_extractor::RoiExtractorConfig;
use crate::roi_heads::RoiSampler;

/// Test-time settings of the RoI heads; defaults are the LVIS recipe's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RcnnTestConfig {
    /// Default 1e-4.
    pub score_thr: f32,
    /// Default 0.5.
    pub nms_iou: f32,
    /// Default 300.
    pub max_per_img: usize,
    /// Default 0.5.
    pub mask_thr: f32,
    /// Detections narrower or lower than this (pixels at input scale) are dropped before NMS
    /// (torchvision's `remove_small_boxes(boxes, 1e-2)`); empty boxes always are. Default 0.
    pub min_bbox_size: f32,
    /// How masks go back into the image: `mmdet` (default) or `torchvision`.
    pub mask_paste: crate::ops::mask_paste::MaskPaste,
}

impl Default for RcnnTestConfig {
    fn default() -> Self {
        Self {
            score_thr: 1e-4,
            nms_iou: 0.5,
            max_per_img: 300,
            mask_thr: 0.5,
            min_bbox_size: 0.0,
            mask_paste: crate::ops::mask_paste::MaskPaste::Mmdet,
        }
    }
}

/// RoI sampling and pooling; defaults are mmdetection's Mask R-CNN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoiConfig {
    /// Strides of the pyramid levels RoIs are pooled from. Default 4, 8, 16, 32.
    pub strides: Vec<f32>,
    /// Default 56.
    pub finest_scale: f32,
    /// RoIAlign samples per bin and axis; 0 = adaptive. Default 0.
    pub sampling_ratio: usize,
    /// RoIs sampled per image. Default 512.
    pub sampler_num: usize,
    /// Default 0.25.
    pub sampler_pos_fraction: f32,
    /// IoU for a positive (and below it, a negative). Default 0.5.
    pub pos_iou: f32,
    /// RoIAlign's `aligned`: true (mmdetection 2.x / 3.x); false for torchvision's detection
    /// models (and mmdetection 1.x), which pool without the half-pixel shift. Default true.
    pub aligned: bool,
    pub test: RcnnTestConfig,
}

impl Default for RoiConfig {
    fn default() -> Self {
        Self {
            strides: vec![4.0, 8.0, 16.0, 32.0],
            finest_scale: 56.0,
            sampling_ratio: 0,
            sampler_num: 512,
            sampler_pos_fraction: 0.25,
            pos_iou: 0.5,
            aligned: true,
            test: RcnnTestConfig::default(),
        }
    }
}

impl RoiConfig {
    /// RoIAlign features `[R, C, size, size]` of `rois` (`[image, x1, y1, x2, y2]` at input
    /// scale) from the pyramid levels `strides` names.
    ///
    /// # Errors
    /// RoIs naming images the features do not have.
    pub fn pool(&self, feats: &[Tensor<4>], rois: &[[f32; 5]], size: usize) -> Result<Tensor<4>> {
        self.pool_scaled(feats, rois, size, None)
    }

    /// [`Self::pool`] with the RoIs enlarged `scale` times about their centres (each from the
    /// level of its own size; see [`RoiExtractorConfig::extract_scaled`]).
    ///
    /// # Errors
    /// As [`Self::pool`].
    pub fn pool_scaled(
        &self,
        feats: &[Tensor<4>],
        rois: &[[f32; 5]],
        size: usize,
        scale: Option<f32>,
    ) -> Result<Tensor<4>> {
        self.extractor(size)
            .extract_scaled(&feats[..self.strides.len()], rois, scale)
    }

    /// The multi-level RoIAlign extractor at `size`.
    pub fn extractor(&self, size: usize) -> RoiExtractorConfig {
        RoiExtractorConfig {
            strides: self.strides.clone(),
            finest_scale: self.finest_scale,
            output_size: size,
            sampling_ratio: self.sampling_ratio,
            aligned: self.aligned,
        }
    }

    /// The sampler of a stage training at `iou`.
    pub fn sampler(&self, iou: f32) -> RoiSampler {
        RoiSampler {
            iou,
            num: self.sampler_num,
            pos_fraction: self.sampler_pos_fraction,
        }
    }
}

/// The box stages of the cascade kinds; defaults are mmdetection's Cascade Mask R-CNN / HTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CascadeConfig {
    /// IoU of a positive (and below it, a negative) per stage. Default 0.5, 0.6, 0.7.
    pub stage_ious: Vec<f32>,
    /// Weight of each stage's losses. Default 1, 0.5, 0.25.
    pub stage_loss_weights: Vec<f64>,
    /// Box delta stds per stage. Default (0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1),
    /// (0.033, 0.033, 0.067, 0.067).
    pub stage_target_stds: Vec<[f32; 4]>,
    /// HTC-Lite's mask loss weight. Default 1.75, the sum of the stage weights (SCNet's rule).
    pub mask_loss_weight: f64,
}

impl Default for CascadeConfig {
    fn default() -> Self {
        Self {
            stage_ious: vec![0.5, 0.6, 0.7],
            stage_loss_weights: vec![1.0, 0.5, 0.25],
            stage_target_stds: vec![
                [0.1, 0.1, 0.2, 0.2],
                [0.05, 0.05, 0.1, 0.1],
                [0.033, 0.033, 0.067, 0.067],
            ],
            mask_loss_weight: 1.75,
        }
    }
}
