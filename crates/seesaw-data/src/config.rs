//! The `[data]` section of a run config: where the data is and how images become network
//! input. `seesaw_engine::config` re-exports it as part of its `Config`; it lives here, next to
//! the pipeline that reads it, so the pipeline needs no engine.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::samplers::SamplerKind;
use crate::sampling::Rounding;
use crate::transforms::resize::ScaleMode;

/// Where the data is and how images become network input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Training annotations (LVIS / COCO JSON, plain or gz).
    pub train_json: PathBuf,
    /// Folder the training images' `file_name`s are relative to.
    pub train_images: PathBuf,
    pub val_json: PathBuf,
    pub val_images: PathBuf,
    /// Training scales `[short, long]`, one drawn per image (mmdetection's multi-scale
    /// "value" mode). Default the LVIS recipe's 640-800 x 1333.
    pub train_scales: Vec<[u32; 2]>,
    /// "value" (one of `train_scales`) or "range" (short and long sides drawn uniformly between
    /// the smallest and largest given). Default "value".
    pub train_scale_mode: ScaleMode,
    /// Test scale `[short, long]`. Default 800 x 1333.
    pub test_scale: [u32; 2],
    /// Whose keep-ratio resize: `mmdet` (default; sides rounded, 8-bit triangle resampling) or
    /// `torchvision` (sides floored, bilinear on the normalised float image, as its detection
    /// models' transform).
    pub resize: crate::transforms::ResizeKind,
    /// Random crop `[height, width]` after resizing (mmdetection's `RandomCrop`, instances
    /// clipped, boxes recomputed from masks); `[0, 0]` = off. Default off.
    pub crop_size: [u32; 2],
    /// mmdetection's `PhotoMetricDistortion` in training (brightness, contrast, saturation,
    /// hue; each with probability 0.5). Default false.
    pub photometric: bool,
    /// InstaBoost (mmdetection's `InstaBoost` over `instaboostfast`): a number is its
    /// `aug_ratio`, the probability that an image is augmented, with mmdetection's other
    /// settings; a table sets any of [`crate::transforms::InstaBoostConfig`]'s keys
    /// (`{ aug_ratio = 0.5, hflag = true }`). Needs masks. Default off.
    #[serde(deserialize_with = "crate::transforms::instaboost::deserialize_setting")]
    pub instaboost: crate::transforms::InstaBoostConfig,
    /// Probability of a horizontal flip in training. Default 0.5.
    pub flip_ratio: f64,
    /// Per-channel RGB mean and std (ImageNet's, in 0-255).
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Padded batches are multiples of this. Default 32.
    pub size_divisor: usize,
    /// "random" (uniform over images), "rfs" (repeat-factor sampling) or "class_aware" (a class
    /// drawn uniformly, then one of its images). Default "random".
    pub sampler: SamplerKind,
    /// Repeat-factor threshold t of RFS. Default 1e-3.
    pub rfs_threshold: f64,
    /// "ceil" (mmdetection: ⌈r⌉ repeats) or "stochastic" (LVIS paper, detectron2: ⌊r⌋ plus one
    /// more with probability r - ⌊r⌋, redrawn each epoch). Default "ceil".
    pub rfs_rounding: Rounding,
    /// Drop training images without a usable annotation (none at all, or only crowd regions
    /// and boxes under 1 px) before anything else, so that the sampler and the repeat factors
    /// (f(c) of RFS) see only annotated images: mmdetection's `filter_empty_gt`, detectron2's
    /// `DATALOADER.FILTER_EMPTY_ANNOTATIONS`. With false every image is trained on, the
    /// unannotated ones as pure background (and, for RFS, as a background class of their own,
    /// as mmdetection's `ClassBalancedDataset`). Default true.
    pub filter_empty_gt: bool,
    /// Training batches loaded ahead on a worker thread while the model computes. Default 2.
    pub prefetch: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train_json: "data/lvis_v1/annotations/lvis_v1_train.json".into(),
            train_images: "data/coco".into(),
            val_json: "data/lvis_v1/annotations/lvis_v1_val.json".into(),
            val_images: "data/coco".into(),
            train_scales: [640, 672, 704, 736, 768, 800]
                .into_iter()
                .map(|s| [s, 1333])
                .collect(),
            train_scale_mode: ScaleMode::default(),
            test_scale: [800, 1333],
            resize: crate::transforms::ResizeKind::Mmdet,
            crop_size: [0, 0],
            photometric: false,
            instaboost: crate::transforms::InstaBoostConfig::off(),
            flip_ratio: 0.5,
            mean: [123.675, 116.28, 103.53],
            std: [58.395, 57.12, 57.375],
            size_divisor: 32,
            sampler: SamplerKind::default(),
            rfs_threshold: 1e-3,
            rfs_rounding: Rounding::default(),
            filter_empty_gt: true,
            prefetch: 2,
        }
    }
}
