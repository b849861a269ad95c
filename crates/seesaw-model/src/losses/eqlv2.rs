//! Equalization Loss v2 (Tan et al., CVPR 2021): sigmoid BCE over C + 1 logits (the last is
//! objectness) with per-class weights steered by the accumulated ratio of positive to negative
//! gradients: `neg_w = 1 / (1 + exp(-γ (ratio - μ)))`, `pos_w = 1 + α (1 - neg_w)`.

use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;

use crate::error::Result;
use crate::losses::common::{bce_with_logits, check_input, float_tensor, host, one_hot};
use crate::losses::config::Eqlv2Params;

/// EQLv2 with its gradient statistics (model state, like Seesaw's counts).
#[derive(Debug, Clone, PartialEq)]
pub struct Eqlv2Loss {
    pub num_classes: usize,
    /// Default 12.
    pub gamma: f64,
    /// Default 0.8.
    pub mu: f64,
    /// Default 4.
    pub alpha: f64,
    /// Default 1.0.
    pub loss_weight: f64,
    /// `[C]` accumulated positive gradients.
    pub pos_grad: Vec<f64>,
    /// `[C]` accumulated negative gradients.
    pub neg_grad: Vec<f64>,
    /// `[C]` pos / neg; starts at 100 so that every weight starts at 1.
    pub pos_neg: Vec<f64>,
}

impl Eqlv2Loss {
    /// The published defaults ([`Eqlv2Params::default`]).
    pub fn new(num_classes: usize) -> Self {
        Self::with_params(num_classes, &Eqlv2Params::default())
    }

    /// EQLv2 with the given hyper-parameters and fresh statistics.
    pub fn with_params(num_classes: usize, params: &Eqlv2Params) -> Self {
        Self {
            num_classes,
            gamma: params.gamma,
            mu: params.mu,
            alpha: params.alpha,
            loss_weight: params.loss_weight,
            pos_grad: vec![0.0; num_classes],
            neg_grad: vec![0.0; num_classes],
            pos_neg: vec![100.0; num_classes],
        }
    }

    /// Classifier width: C + 1 (objectness last).
    pub fn cls_channels(&self) -> usize {
        self.num_classes + 1
    }

    /// Per-column (pos, neg) weights, `[C + 1]` each; the objectness column has weights (1, 1).
    pub fn column_weights(&self) -> (Vec<f64>, Vec<f64>) {
        let mut neg: Vec<f64> = self
            .pos_neg
            .iter()
            .map(|&r| 1.0 / (1.0 + (-self.gamma * (r - self.mu)).exp()))
            .collect();
        neg.push(1.0);
        let pos = neg.iter().map(|&n| 1.0 + self.alpha * (1.0 - n)).collect();
        (pos, neg)
    }

    /// `cls_score` `[N, C + 1]`, `labels` `[N]` in `0..=C` (C, background, is the target of the
    /// objectness column); the weighted element sum divided by N. Updates the gradient
    /// statistics afterwards, as the reference does.
    pub fn forward(&mut self, cls_score: Tensor<2>, labels: &[usize]) -> Result<Tensor<1>> {
        let n = check_input(
            "EQLv2",
            &cls_score,
            labels,
            self.num_classes,
            self.cls_channels(),
        )?;
        let k = self.cls_channels();
        let device = cls_score.device();
        let target = one_hot(labels, k, &device);
        let (pos_w, neg_w) = self.column_weights();
        let mut w = vec![0.0; n * k];
        for (r, &y) in labels.iter().enumerate() {
            for j in 0..k {
                w[r * k + j] = if j == y { pos_w[j] } else { neg_w[j] };
            }
        }
        let probs = host(sigmoid(cls_score.clone().detach()))?;
        let loss =
            (bce_with_logits(cls_score, target) * float_tensor(w.clone(), [n, k], &device)).sum();
        // This step's gradient statistics (positives' then negatives'), summed over the
        // replicas under data parallelism, as one process on the whole batch would collect them.
        let c = self.num_classes;
        let mut step = vec![0f64; 2 * c];
        for (r, &y) in labels.iter().enumerate() {
            for j in 0..c {
                let p = probs[r * k + j];
                if j == y {
                    step[j] += (1.0 - p) * w[r * k + j];
                } else {
                    step[c + j] += p * w[r * k + j];
                }
            }
        }
        let rows = if crate::distributed::world_size() > 1 {
            step.push(n as f64);
            if let Some(g) = crate::distributed::current() {
                g.sum_f64(&mut step);
            }
            step.pop().unwrap_or(n as f64)
        } else {
            n as f64
        };
        for j in 0..c {
            self.pos_grad[j] += step[j];
            self.neg_grad[j] += step[c + j];
        }
        for j in 0..self.num_classes {
            self.pos_neg[j] = self.pos_grad[j] / (self.neg_grad[j] + 1e-10);
        }
        Ok(loss.div_scalar(rows.max(1.0)).mul_scalar(self.loss_weight))
    }
}
