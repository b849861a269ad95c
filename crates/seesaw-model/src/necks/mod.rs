//! Necks: the feature pyramid between backbone and heads (FPN, and PAFPN's bottom-up path on
//! top of it).

pub mod fpn;
pub mod pafpn;

pub use fpn::{Fpn, FpnConfig, NeckKind};
