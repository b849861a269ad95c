//! Sigmoid binary cross-entropy over C logits (background = all-zero target): the baseline of
//! every sigmoid-based long-tail loss.

use burn::tensor::Tensor;

use crate::error::Result;
use crate::losses::common::{bce_with_logits, check_input, one_hot};
use crate::losses::config::WeightParams;

/// Sigmoid BCE (mmdetection `CrossEntropyLoss`, `use_sigmoid=True`): the mean is over all N x C
/// elements, or the element sum divided by `avg_factor`.
#[derive(Debug, Clone, PartialEq)]
pub struct SigmoidBceLoss {
    pub num_classes: usize,
    /// Default 1.0.
    pub loss_weight: f64,
}

impl SigmoidBceLoss {
    /// Weight 1 ([`WeightParams::default`]).
    pub fn new(num_classes: usize) -> Self {
        Self::with_params(num_classes, &WeightParams::default())
    }

    /// The loss with the given weight.
    pub fn with_params(num_classes: usize, params: &WeightParams) -> Self {
        Self {
            num_classes,
            loss_weight: params.loss_weight,
        }
    }

    /// Classifier width: C.
    pub fn cls_channels(&self) -> usize {
        self.num_classes
    }

    /// `cls_score` `[N, C]`, `labels` `[N]` in `0..=C`, `label_weights` `[N]`.
    pub fn forward(
        &self,
        cls_score: Tensor<2>,
        labels: &[usize],
        label_weights: Option<Tensor<1>>,
        avg_factor: Option<f64>,
    ) -> Result<Tensor<1>> {
        let n = check_input(
            "sigmoid BCE",
            &cls_score,
            labels,
            self.num_classes,
            self.cls_channels(),
        )?;
        let c = self.num_classes;
        let target = one_hot(labels, c, &cls_score.device());
        let mut loss = bce_with_logits(cls_score, target);
        if let Some(w) = label_weights {
            loss = loss * w.unsqueeze_dim(1);
        }
        let total = loss.sum();
        let out = match avg_factor {
            Some(a) => total.div_scalar(a + f64::from(f32::EPSILON)),
            None => total.div_scalar((n * c).max(1) as f64),
        };
        Ok(out.mul_scalar(self.loss_weight))
    }
}
