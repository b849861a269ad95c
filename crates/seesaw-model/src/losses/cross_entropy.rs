//! Softmax cross-entropy over C + 1 logits (C classes, then background): the plain baseline.

use burn::tensor::Tensor;

use crate::error::Result;
use crate::losses::Reduction;
use crate::losses::common::{check_input, cross_entropy_rows, reduce};
use crate::losses::config::WeightParams;

/// Softmax cross-entropy (mmdetection `CrossEntropyLoss`, `use_sigmoid=False`).
#[derive(Debug, Clone, PartialEq)]
pub struct CrossEntropyLoss {
    pub num_classes: usize,
    /// Default 1.0.
    pub loss_weight: f64,
    /// Default mean.
    pub reduction: Reduction,
}

impl CrossEntropyLoss {
    /// Weight 1 ([`WeightParams::default`]).
    pub fn new(num_classes: usize) -> Self {
        Self::with_params(num_classes, &WeightParams::default())
    }

    /// The loss with the given weight.
    pub fn with_params(num_classes: usize, params: &WeightParams) -> Self {
        Self {
            num_classes,
            loss_weight: params.loss_weight,
            reduction: Reduction::Mean,
        }
    }

    /// Classifier width: C + 1.
    pub fn cls_channels(&self) -> usize {
        self.num_classes + 1
    }

    /// `cls_score` `[N, C + 1]`, `labels` `[N]` in `0..=C`, `label_weights` `[N]`.
    pub fn forward(
        &self,
        cls_score: Tensor<2>,
        labels: &[usize],
        label_weights: Option<Tensor<1>>,
        avg_factor: Option<f64>,
    ) -> Result<Tensor<1>> {
        check_input(
            "cross-entropy",
            &cls_score,
            labels,
            self.num_classes,
            self.cls_channels(),
        )?;
        let rows = cross_entropy_rows(cls_score, labels);
        Ok(reduce(rows, label_weights, self.reduction, avg_factor)?.mul_scalar(self.loss_weight))
    }
}
