//! Layers: one module per file.

pub mod normed_conv2d;
pub mod normed_linear;

pub use normed_conv2d::{NormedConv2d, NormedConv2dConfig};
pub use normed_linear::{NormedLinear, NormedLinearConfig};
