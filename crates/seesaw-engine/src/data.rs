//! The engine's end of the data pipeline: [`collate`] pads samples into one batch tensor.
//! Everything before it (loading, transforms, samplers) is tensor-free and lives in
//! `seesaw_data` (`loading`, `transforms`, `samplers`, `pipeline`); it is re-exported here so
//! `seesaw_engine::data::{Split, Sample, train_samples, load_image, ...}` keep their paths.

pub use seesaw_data::Split;
pub use seesaw_data::loading::{Sample, load_image};
pub use seesaw_data::pipeline::{Shard, image_rng, iteration_rng, train_samples};
pub use seesaw_data::samplers::{SamplerKind, TrainSampler};
pub use seesaw_data::sampling::Rounding;
pub use seesaw_data::transforms::{
    Jitter, Photometric, ScaleMode, draw_scale, instaboost, random_crop, rescale,
};
use seesaw_model::burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::structures::{GtInstances, ImageMeta};

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
    let pad = padded_size(&samples, divisor);
    collate_to(samples, pad, device)
}

/// The size `(height, width)` [`collate`] pads `samples` to: their largest, rounded up to a
/// multiple of `divisor`.
pub fn padded_size(samples: &[Sample], divisor: usize) -> (usize, usize) {
    let divisor = divisor.max(1);
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
    (
        ph.div_ceil(divisor) * divisor,
        pw.div_ceil(divisor) * divisor,
    )
}

/// Pads samples to `(height, width)` (at least their largest; data-parallel replicas pass the
/// global batch's [`padded_size`]) into one tensor on `device`.
pub fn collate_to(samples: Vec<Sample>, pad: (usize, usize), device: &Device) -> Batch {
    let ph = samples
        .iter()
        .map(|s| s.meta.img_shape.0)
        .fold(pad.0, usize::max);
    let pw = samples
        .iter()
        .map(|s| s.meta.img_shape.1)
        .fold(pad.1, usize::max);
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
