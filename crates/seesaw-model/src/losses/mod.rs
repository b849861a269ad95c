//! Classification losses for long-tailed detection: one file per loss.

pub mod any;
pub mod bbox;
pub(crate) mod common;
pub mod config;
pub mod cross_entropy;
pub mod eql;
pub mod eqlv2;
pub mod federated;
pub mod seesaw;
pub mod sigmoid_bce;

pub use any::{AnyLoss, LossState};
pub use config::{ClassStats, LossesConfig};
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

/// The classification losses, by the names configs use (`model.loss`); a name that is not
/// one of them is an error listing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum LossKind {
    /// `ce`: softmax cross-entropy, C + 1 logits.
    #[serde(rename = "ce")]
    CrossEntropy,
    /// `bce`: sigmoid binary cross-entropy, C logits.
    #[serde(rename = "bce")]
    SigmoidBce,
    /// `eql`: Equalization Loss, C logits.
    #[serde(rename = "eql")]
    Eql,
    /// `eqlv2`: Equalization Loss v2, C + 1 logits.
    #[serde(rename = "eqlv2")]
    Eqlv2,
    /// `federated`: federated loss, C + 1 logits.
    #[serde(rename = "federated")]
    Federated,
    /// `seesaw`: Seesaw Loss, C + 2 logits (the default, as the LVIS recipes).
    #[serde(rename = "seesaw")]
    #[default]
    Seesaw,
}

impl LossKind {
    /// Every loss, in the order benchmarks report them.
    pub const ALL: [LossKind; 6] = [
        LossKind::CrossEntropy,
        LossKind::SigmoidBce,
        LossKind::Eql,
        LossKind::Eqlv2,
        LossKind::Federated,
        LossKind::Seesaw,
    ];

    /// The name configs use.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::CrossEntropy => "ce",
            LossKind::SigmoidBce => "bce",
            LossKind::Eql => "eql",
            LossKind::Eqlv2 => "eqlv2",
            LossKind::Federated => "federated",
            LossKind::Seesaw => "seesaw",
        }
    }

    /// Classifier outputs the loss needs for `num_classes` classes.
    pub fn cls_channels(self, num_classes: usize) -> usize {
        match self {
            LossKind::SigmoidBce | LossKind::Eql => num_classes,
            LossKind::CrossEntropy | LossKind::Eqlv2 | LossKind::Federated => num_classes + 1,
            LossKind::Seesaw => num_classes + 2,
        }
    }
}

impl std::fmt::Display for LossKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for LossKind {
    type Err = crate::error::ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LossKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = LossKind::ALL.iter().map(|k| k.name()).collect();
                crate::error::ModelError::Input(format!(
                    "unknown loss {s:?} (expected one of {})",
                    names.join(", ")
                ))
            })
    }
}
