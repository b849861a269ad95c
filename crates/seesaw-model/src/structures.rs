//! What flows between the data pipeline and a detector: image metadata and ground truths at
//! the network's input scale (plain data defined in `seesaw_data::structures`, re-exported
//! here), and detections.

pub use seesaw_data::structures::{GtInstances, GtMask, ImageMeta};

use crate::ops::Box2;

/// The random generator of one training image's sampled anchors and RoIs (seeded per image by
/// `seed`, iteration and the image's index in the global batch: `seesaw_data::pipeline::image_rng`).
pub type ImageRng = rand_chacha::ChaCha8Rng;

/// `n` image generators seeded from `rng` (for callers without a data pipeline: tests,
/// benchmarks).
pub fn image_rngs(rng: &mut impl rand::Rng, n: usize) -> Vec<ImageRng> {
    use rand::SeedableRng;
    (0..n)
        .map(|_| ImageRng::seed_from_u64(rng.random()))
        .collect()
}

/// Detections of one image, at input scale.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detections {
    pub boxes: Vec<Box2>,
    pub scores: Vec<f32>,
    pub labels: Vec<usize>,
    /// Per detection, the `m x m` mask probabilities of its class (row-major).
    pub masks: Vec<Vec<f32>>,
    /// Side of each mask.
    pub mask_size: usize,
}
