//! `[model.losses]`: the hyper-parameters of every classification loss, each default written
//! once here (the published values); `model.loss` picks the one the box heads train with.
//!
//! ```toml
//! [model]
//! loss = "eqlv2"
//! [model.losses.eqlv2]
//! gamma = 12.0
//! ```

use serde::{Deserialize, Serialize};

/// A loss whose only setting is its weight (cross-entropy, sigmoid BCE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeightParams {
    /// Multiplier of the loss. Default 1.0.
    pub loss_weight: f64,
}

impl Default for WeightParams {
    fn default() -> Self {
        Self { loss_weight: 1.0 }
    }
}

/// Equalization Loss (Tan et al., CVPR 2020).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EqlParams {
    /// Frequency threshold λ (fraction of training images) below which a class's negative
    /// terms are dropped on foreground RoIs. Default 1.76e-3 (the paper's LVIS value).
    pub lambda: f64,
    /// Default 1.0.
    pub loss_weight: f64,
}

impl Default for EqlParams {
    fn default() -> Self {
        Self {
            lambda: 1.76e-3,
            loss_weight: 1.0,
        }
    }
}

/// Equalization Loss v2 (Tan et al., CVPR 2021; the official `eqlv2.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Eqlv2Params {
    /// Slope γ of the negative-weight sigmoid. Default 12.
    pub gamma: f64,
    /// Centre μ of the negative-weight sigmoid. Default 0.8.
    pub mu: f64,
    /// α of the positive weight `1 + α (1 - neg_w)`. Default 4.
    pub alpha: f64,
    /// Default 1.0.
    pub loss_weight: f64,
}

impl Default for Eqlv2Params {
    fn default() -> Self {
        Self {
            gamma: 12.0,
            mu: 0.8,
            alpha: 4.0,
            loss_weight: 1.0,
        }
    }
}

/// Federated loss (Zhou et al. 2021; detectron2's `use_fed_loss`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederatedParams {
    /// Classes trained per batch, the present ones first (detectron2's
    /// `FED_LOSS_NUM_CLASSES`). Default 50.
    pub num_fed_classes: usize,
    /// Negatives are drawn with probability proportional to (training images of the
    /// class)^power (detectron2's `FED_LOSS_FREQ_WEIGHT_POWER`). Default 0.5.
    pub freq_power: f64,
    /// Default 1.0.
    pub loss_weight: f64,
}

impl Default for FederatedParams {
    fn default() -> Self {
        Self {
            num_fed_classes: 50,
            freq_power: 0.5,
            loss_weight: 1.0,
        }
    }
}

/// Seesaw Loss (Wang et al., CVPR 2021; mmdetection's `SeesawLoss`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeesawParams {
    /// Exponent of the mitigation factor; 0 turns it off. Default 0.8.
    pub p: f64,
    /// Exponent of the compensation factor; 0 turns it off. Default 2.0.
    pub q: f64,
    /// Floor of the ground-truth class probability in the compensation factor. Default 1e-2.
    pub eps: f64,
    /// Default 1.0.
    pub loss_weight: f64,
}

impl Default for SeesawParams {
    fn default() -> Self {
        Self {
            p: 0.8,
            q: 2.0,
            eps: 1e-2,
            loss_weight: 1.0,
        }
    }
}

/// The settings of every classification loss (`[model.losses.<name>]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossesConfig {
    pub ce: WeightParams,
    pub bce: WeightParams,
    pub eql: EqlParams,
    pub eqlv2: Eqlv2Params,
    pub federated: FederatedParams,
    pub seesaw: SeesawParams,
}

/// What the losses that look at the training set need of it: per class, the number of
/// training images holding it (EQL's frequencies, the federated loss's sampling weights).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassStats {
    /// `[C]`: training images with each class.
    pub image_counts: Vec<u64>,
    /// Training images in all.
    pub total_images: u64,
}

impl ClassStats {
    /// One image per class: for a model built only to predict (no loss statistics needed).
    pub fn uniform(num_classes: usize) -> Self {
        Self {
            image_counts: vec![1; num_classes],
            total_images: 1,
        }
    }
}
