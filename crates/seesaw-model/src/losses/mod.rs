//! Classification losses for long-tailed detection: one file per loss.

pub(crate) mod common;
pub mod cross_entropy;
pub mod eql;
pub mod eqlv2;
pub mod federated;
pub mod seesaw;
pub mod sigmoid_bce;

pub use cross_entropy::CrossEntropyLoss;
pub use eql::EqlLoss;
pub use eqlv2::Eqlv2Loss;
pub use federated::FederatedLoss;
pub use seesaw::{SeesawLoss, SeesawLossConfig, SeesawOutput};
pub use sigmoid_bce::SigmoidBceLoss;

/// How per-row losses are reduced (mmdetection's `reduction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Per-row losses.
    None,
    /// Mean over rows, or sum / (avg_factor + f32 eps) when an avg_factor is given.
    #[default]
    Mean,
    /// Sum over rows.
    Sum,
}

impl std::str::FromStr for Reduction {
    type Err = crate::error::ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Reduction::None),
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            _ => Err(crate::error::ModelError::Input(format!(
                "unknown reduction {s:?} (expected none, mean or sum)"
            ))),
        }
    }
}
