//! Detectors: meta-architectures composing backbone -> neck -> proposal generator -> RoI heads.

pub mod two_stage;

pub use two_stage::{
    CascadeConfig, Detector, DetectorConfig, DetectorKind, LossParts, RcnnTestConfig, RoiConfig,
};
