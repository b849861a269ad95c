//! Seesaw's model layer, on burn: losses for the long tail and normalized classifiers.
//!
//! Tensors are burn 0.22 `Tensor<D>`; the backend travels in the [`burn::tensor::Device`]
//! (`Device::flex()` on CPU, `.autodiff()` for training).

pub mod backbones;
pub mod detectors;
pub mod distributed;
pub mod error;
pub mod heads;
pub mod init;
pub mod layers;
pub mod losses;
pub mod necks;
pub mod ops;
pub mod readback;
pub mod roi_heads;
pub mod structures;
pub mod weights;

pub use error::{ModelError, Result};

/// The burn version every crate of Seesaw uses.
pub use burn;
