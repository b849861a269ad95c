//! What flows between the data pipeline and a detector: image metadata and ground truths at
//! the network's input scale (plain data defined in `seesaw_data::structures`, re-exported
//! here), and detections.

pub use seesaw_data::structures::{GtInstances, GtMask, ImageMeta};

use crate::ops::Box2;

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
