//! Detectors: meta-architectures composing backbone -> neck -> proposal generator -> RoI heads.

pub mod mask_rcnn;

pub use mask_rcnn::{LossParts, MaskRcnn, MaskRcnnConfig, RcnnTestConfig, RoiConfig};
