//! Necks: the feature pyramid between backbone and heads.

pub mod fpn;

pub use fpn::{Fpn, FpnConfig};
