//! Detectors: meta-architectures composing backbone -> neck -> proposal generator -> RoI head.

pub mod two_stage;

pub use crate::roi_heads::{
    CascadeConfig, DetectorKind, RcnnTestConfig, RoiConfig, RoiHead, select_detections,
};
pub use two_stage::{Detector, DetectorConfig, LossParts};
