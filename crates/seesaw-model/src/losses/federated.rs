//! Federated loss (Zhou et al. 2021, CenterNet2 / Detic for LVIS): sigmoid BCE restricted, per
//! batch, to the classes present in it plus negatives sampled with probability proportional to
//! `frequency^0.5`, so that each class meets the negatives a federated dataset can vouch for.

use burn::tensor::Tensor;
use rand::Rng;

use crate::error::{ModelError, Result};
use crate::losses::common::{bce_with_logits, check_input, float_tensor, one_hot};
use crate::losses::config::FederatedParams;

/// Federated loss. `cls_score` is `[N, C + 1]` (the background column is not trained).
#[derive(Debug, Clone, PartialEq)]
pub struct FederatedLoss {
    pub num_classes: usize,
    /// Classes trained per batch (present ones first). Default 50 (the LVIS setting).
    pub num_fed_classes: usize,
    /// Default 1.0.
    pub loss_weight: f64,
    /// `[C]` sampling weights: training image counts to the power 0.5.
    pub weights: Vec<f64>,
}

impl FederatedLoss {
    /// `image_counts[c]`: training images with class c; `power` is 0.5 in the paper; the
    /// other settings are [`FederatedParams::default`]'s.
    pub fn new(image_counts: &[u64], power: f64) -> Self {
        Self::with_params(
            image_counts,
            &FederatedParams {
                freq_power: power,
                ..FederatedParams::default()
            },
        )
    }

    /// The federated loss with the given hyper-parameters.
    pub fn with_params(image_counts: &[u64], params: &FederatedParams) -> Self {
        Self {
            num_classes: image_counts.len(),
            num_fed_classes: params.num_fed_classes,
            loss_weight: params.loss_weight,
            weights: image_counts
                .iter()
                .map(|&n| (n as f64).powf(params.freq_power))
                .collect(),
        }
    }

    /// Classifier width: C + 1.
    pub fn cls_channels(&self) -> usize {
        self.num_classes + 1
    }

    /// The classes trained this batch: those present among `labels`, then negatives drawn
    /// without replacement by weight until `num_fed_classes`.
    pub fn sample_classes<R: Rng>(&self, labels: &[usize], rng: &mut R) -> Vec<usize> {
        let c = self.num_classes;
        let mut chosen: Vec<usize> = labels.iter().copied().filter(|&y| y < c).collect();
        chosen.sort_unstable();
        chosen.dedup();
        let mut taken = vec![false; c];
        for &y in &chosen {
            taken[y] = true;
        }
        while chosen.len() < self.num_fed_classes.min(c) {
            let total: f64 = (0..c).filter(|&j| !taken[j]).map(|j| self.weights[j]).sum();
            if total <= 0.0 {
                break;
            }
            let mut u = rng.random::<f64>() * total;
            let mut pick = None;
            for j in (0..c).filter(|&j| !taken[j]) {
                if self.weights[j] <= 0.0 {
                    continue;
                }
                pick = Some(j);
                if u < self.weights[j] {
                    break;
                }
                u -= self.weights[j];
            }
            let Some(j) = pick else { break };
            taken[j] = true;
            chosen.push(j);
        }
        chosen
    }

    /// `cls_score` `[N, C + 1]`, `labels` `[N]` in `0..=C`; BCE over the chosen classes, summed
    /// and divided by N.
    pub fn forward<R: Rng>(
        &self,
        cls_score: Tensor<2>,
        labels: &[usize],
        rng: &mut R,
    ) -> Result<Tensor<1>> {
        if self.weights.len() != self.num_classes {
            return Err(ModelError::Input(
                "federated loss needs one weight per class".into(),
            ));
        }
        let n = check_input(
            "federated loss",
            &cls_score,
            labels,
            self.num_classes,
            self.cls_channels(),
        )?;
        let c = self.num_classes;
        let device = cls_score.device();
        let classes = self.sample_classes(labels, rng);
        let mut mask = vec![0.0; c];
        for &j in &classes {
            mask[j] = 1.0;
        }
        let mask: Vec<f64> = (0..n).flat_map(|_| mask.iter().copied()).collect();
        let logits = cls_score.slice([0..n, 0..c]);
        let loss = (bce_with_logits(logits, one_hot(labels, c, &device))
            * float_tensor(mask, [n, c], &device))
        .sum();
        // N over the whole global batch under data parallelism.
        let rows = crate::distributed::global_sum(n as f64).max(1.0);
        Ok(loss.div_scalar(rows).mul_scalar(self.loss_weight))
    }
}
