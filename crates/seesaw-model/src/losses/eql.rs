//! Equalization Loss (Tan et al., CVPR 2020): sigmoid BCE whose negative terms for rare classes
//! (training-image frequency below λ) are dropped on foreground proposals, so that frequent
//! classes' samples stop suppressing rare classes.

use burn::tensor::Tensor;

use crate::error::{ModelError, Result};
use crate::losses::common::{bce_with_logits, check_input, float_tensor, one_hot};
use crate::losses::config::EqlParams;

/// EQL with its class frequencies. `cls_score` is `[N, C]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EqlLoss {
    pub num_classes: usize,
    /// Frequency threshold λ (fraction of training images). Default 1.76e-3 (the paper's LVIS
    /// value).
    pub lambda: f64,
    /// Default 1.0.
    pub loss_weight: f64,
    /// `[C]`: fraction of training images containing each class.
    pub frequencies: Vec<f64>,
}

impl EqlLoss {
    /// `frequencies[c]` = training images with class c / training images; the published
    /// λ ([`EqlParams::default`]).
    pub fn new(frequencies: Vec<f64>) -> Self {
        Self::with_params(frequencies, &EqlParams::default())
    }

    /// EQL with the given hyper-parameters.
    pub fn with_params(frequencies: Vec<f64>, params: &EqlParams) -> Self {
        Self {
            num_classes: frequencies.len(),
            lambda: params.lambda,
            loss_weight: params.loss_weight,
            frequencies,
        }
    }

    /// Classifier width: C.
    pub fn cls_channels(&self) -> usize {
        self.num_classes
    }

    /// `w[n, j] = 1 - E(n) T(j) (1 - y[n, j])`: E is 1 on foreground rows, T is 1 for rare
    /// classes. Returned `[N, C]` row-major.
    pub fn weights(&self, labels: &[usize]) -> Vec<f64> {
        let c = self.num_classes;
        let mut w = vec![1.0; labels.len() * c];
        for (n, &y) in labels.iter().enumerate() {
            if y >= c {
                continue;
            }
            for j in 0..c {
                if j != y && self.frequencies[j] < self.lambda {
                    w[n * c + j] = 0.0;
                }
            }
        }
        w
    }

    /// `cls_score` `[N, C]`, `labels` `[N]` in `0..=C`; the sum over elements divided by N.
    pub fn forward(&self, cls_score: Tensor<2>, labels: &[usize]) -> Result<Tensor<1>> {
        if self.frequencies.len() != self.num_classes {
            return Err(ModelError::Input(
                "EQL needs one frequency per class".into(),
            ));
        }
        let n = check_input(
            "EQL",
            &cls_score,
            labels,
            self.num_classes,
            self.cls_channels(),
        )?;
        let device = cls_score.device();
        let target = one_hot(labels, self.num_classes, &device);
        let w = float_tensor(self.weights(labels), [n, self.num_classes], &device);
        let loss = (bce_with_logits(cls_score, target) * w).sum();
        // N over the whole global batch under data parallelism.
        let rows = crate::distributed::global_sum(n as f64).max(1.0);
        Ok(loss.div_scalar(rows).mul_scalar(self.loss_weight))
    }
}
