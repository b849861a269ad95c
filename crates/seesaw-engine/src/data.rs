//! The engine's end of the data pipeline: [`collate`] pads samples into one batch tensor.
//! Everything before it (loading, transforms, samplers) is tensor-free and lives in
//! `seesaw_data` (`loading`, `transforms`, `samplers`, `pipeline`); it is re-exported here so
//! `seesaw_engine::data::{Split, Sample, train_samples, load_image, ...}` keep their paths.

use std::ops::Deref;
use std::path::Path;

use seesaw_data::Dataset;
pub use seesaw_data::loading::{Sample, load_image};
pub use seesaw_data::pipeline::{iteration_rng, train_samples};
pub use seesaw_data::samplers::{SamplerKind, TrainSampler};
pub use seesaw_data::sampling::Rounding;
pub use seesaw_data::transforms::{
    Jitter, Photometric, ScaleMode, draw_scale, instaboost, random_crop, rescale,
};
use seesaw_model::burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::structures::{GtInstances, ImageMeta};

use crate::config::DataConfig;
use crate::error::Result;

/// A dataset split with its image folder: [`seesaw_data::Split`] (all its fields and methods,
/// through `Deref`), with loading that reports an [`crate::EngineError`] (callers collect
/// `split.sample(..)` straight into the engine's `Result`).
#[derive(Debug, Clone)]
pub struct Split(seesaw_data::Split);

impl Deref for Split {
    type Target = seesaw_data::Split;

    fn deref(&self) -> &seesaw_data::Split {
        &self.0
    }
}

impl From<seesaw_data::Split> for Split {
    fn from(split: seesaw_data::Split) -> Self {
        Self(split)
    }
}

impl Split {
    /// Loads the annotations (the images are read when sampled).
    pub fn load(json: &Path, image_root: &Path) -> Result<Self> {
        Ok(Self(seesaw_data::Split::load(json, image_root)?))
    }

    pub fn new(dataset: Dataset, json: &Path, image_root: &Path) -> Self {
        Self(seesaw_data::Split::new(dataset, json, image_root))
    }

    /// [`seesaw_data::Split::sample`]: image `index` at `scale`, flipped if asked, normalised,
    /// with its ground truths (masks only when `with_masks`).
    pub fn sample(
        &self,
        index: usize,
        scale: [u32; 2],
        flip: bool,
        cfg: &DataConfig,
        with_masks: bool,
    ) -> Result<Sample> {
        Ok(self.0.sample(index, scale, flip, cfg, with_masks)?)
    }
}

/// A padded batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, 3, H, W]`.
    pub images: Tensor<4>,
    pub metas: Vec<ImageMeta>,
    pub gts: Vec<GtInstances>,
}

/// Pads samples to a common size (a multiple of `divisor`) into one tensor on `device`.
pub fn collate(samples: Vec<Sample>, divisor: usize, device: &Device) -> Batch {
    let ph = samples
        .iter()
        .map(|s| s.meta.img_shape.0)
        .max()
        .unwrap_or(1);
    let pw = samples
        .iter()
        .map(|s| s.meta.img_shape.1)
        .max()
        .unwrap_or(1);
    let (ph, pw) = (
        ph.div_ceil(divisor) * divisor,
        pw.div_ceil(divisor) * divisor,
    );
    let b = samples.len();
    let mut data = vec![0f32; b * 3 * ph * pw];
    let mut metas = Vec::with_capacity(b);
    let mut gts = Vec::with_capacity(b);
    for (i, s) in samples.into_iter().enumerate() {
        let (h, w) = s.meta.img_shape;
        for c in 0..3 {
            for y in 0..h {
                let src = &s.pixels[c * h * w + y * w..c * h * w + y * w + w];
                let dst = ((i * 3 + c) * ph + y) * pw;
                data[dst..dst + w].copy_from_slice(src);
            }
        }
        metas.push(s.meta);
        gts.push(s.gt);
    }
    Batch {
        images: Tensor::from_data(TensorData::new(data, [b, 3, ph, pw]), device),
        metas,
        gts,
    }
}
