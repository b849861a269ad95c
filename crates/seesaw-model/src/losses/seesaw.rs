//! Seesaw Loss (Wang et al., CVPR 2021), exactly as mmdetection 3.x computes it for a box head
//! with an objectness branch: `cls_score` is `[N, C + 2]`, the C class logits followed by the
//! pair (object, background).
//!
//! The class loss is a softmax cross-entropy over the positive rows whose negative-class logits
//! are shifted by `log S`, with `S = M * C` ([`mitigation_factor`] times
//! [`compensation_factor`]), both constant with respect to the logits. The objectness loss is a
//! plain softmax cross-entropy over all rows (Wang et al., CVPR 2021, §3; mmdetection
//! `mmdet/models/losses/seesaw_loss.py`).

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::error::{ModelError, Result};
use crate::losses::Reduction;
use crate::losses::common::{
    check_input, cross_entropy_rows, float_tensor, host, index_tensor, one_hot, reduce,
};
use crate::losses::config::SeesawParams;

/// Settings of [`SeesawLoss`]; the defaults are mmdetection's.
#[derive(Debug, Clone, PartialEq)]
pub struct SeesawLossConfig {
    /// Number of foreground classes C (label C is background).
    pub num_classes: usize,
    /// Exponent of the mitigation factor; 0 turns it off. Default 0.8.
    pub p: f64,
    /// Exponent of the compensation factor; 0 turns it off. Default 2.0.
    pub q: f64,
    /// Floor of the ground-truth class probability in the compensation factor. Default 1e-2.
    pub eps: f64,
    /// Multiplier of both losses. Default 1.0.
    pub loss_weight: f64,
    /// Default reduction. Default [`Reduction::Mean`].
    pub reduction: Reduction,
}

impl SeesawLossConfig {
    /// mmdetection's defaults ([`SeesawParams::default`]) for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self::from_params(num_classes, &SeesawParams::default())
    }

    /// The given hyper-parameters for `num_classes` classes, mean reduction.
    pub fn from_params(num_classes: usize, params: &SeesawParams) -> Self {
        Self {
            num_classes,
            p: params.p,
            q: params.q,
            eps: params.eps,
            loss_weight: params.loss_weight,
            reduction: Reduction::Mean,
        }
    }

    /// A loss with zero counts.
    pub fn init(&self) -> SeesawLoss {
        SeesawLoss {
            config: self.clone(),
            cum_samples: vec![0; self.num_classes + 1],
        }
    }
}

/// The two parts of the loss, as mmdetection returns them (`return_dict=True`).
#[derive(Debug, Clone)]
pub struct SeesawOutput {
    /// Class loss: `[1]`, or `[P]` (positive rows) with [`Reduction::None`].
    pub loss_cls_classes: Tensor<1>,
    /// Objectness loss: `[1]`, or `[N]` with [`Reduction::None`].
    pub loss_cls_objectness: Tensor<1>,
}

impl SeesawOutput {
    /// Both parts summed (`return_dict=False`); scalars only.
    pub fn total(&self) -> Tensor<1> {
        self.loss_cls_classes.clone().sum() + self.loss_cls_objectness.clone().sum()
    }
}

/// Seesaw Loss with its cumulative class counts (part of the model state: save and restore them
/// with the weights).
#[derive(Debug, Clone, PartialEq)]
pub struct SeesawLoss {
    config: SeesawLossConfig,
    /// `[C + 1]`: sampled labels seen so far, background (index C) included.
    cum_samples: Vec<u64>,
}

/// Number of samples of each label in `labels`, `[C + 1]`: what one step adds to the counts.
///
/// Data-parallel training sums these over replicas (all-reduce) and hands the sum to
/// [`SeesawLoss::add_counts`] on every replica before the loss, so that all replicas see the
/// counts a single replica fed the whole batch would see. (mmdetection keeps per-rank counts.)
pub fn cum_samples(labels: &[usize], num_classes: usize) -> Result<Vec<u64>> {
    let mut counts = vec![0u64; num_classes + 1];
    for (i, &y) in labels.iter().enumerate() {
        match counts.get_mut(y) {
            Some(c) => *c += 1,
            None => {
                return Err(ModelError::Input(format!(
                    "labels[{i}] = {y}: labels must lie in 0..={num_classes} ({num_classes} is background)"
                )));
            }
        }
    }
    Ok(counts)
}

/// `M[n, j]`, `[P, C]`, for positive rows with labels `labels` (all `< C`):
/// `(N_j / N_i)^p` where class j is rarer than the ground truth i (`N_j < N_i`), else 1, with
/// counts clamped to at least 1.
pub fn mitigation_factor(counts: &[u64], labels: &[usize], p: f64) -> Vec<f64> {
    let c = counts.len().saturating_sub(1);
    let mut m = vec![1.0; labels.len() * c];
    if p <= 0.0 {
        return m;
    }
    for (n, &i) in labels.iter().enumerate() {
        let ni = counts[i].max(1) as f64;
        for j in 0..c {
            let ratio = counts[j].max(1) as f64 / ni;
            if ratio < 1.0 {
                m[n * c + j] = ratio.powf(p);
            }
        }
    }
    m
}

/// `C[n, j]`, `[P, C]`: `(σ_j / max(σ_i, eps))^q` where that ratio exceeds 1, else 1, with
/// `probs` = σ `[P, C]` the softmax over the class logits of each positive row (detached) and i
/// its label. Computed where `probs` lives.
pub fn compensation_factor(probs: Tensor<2>, labels: &[usize], q: f64, eps: f64) -> Tensor<2> {
    let p = labels.len();
    let idx = index_tensor(labels, &probs.device()).reshape([p, 1]);
    let own = probs.clone().gather(1, idx).clamp_min(eps);
    let ratio = probs / own;
    let not_above = ratio.clone().lower_equal_elem(1.0);
    ratio.powf_scalar(q).mask_fill(not_above, 1.0)
}

impl SeesawLoss {
    /// The settings.
    pub fn config(&self) -> &SeesawLossConfig {
        &self.config
    }

    /// `[C + 1]` cumulative counts.
    pub fn counts(&self) -> &[u64] {
        &self.cum_samples
    }

    /// Replaces the counts (restoring a checkpoint).
    pub fn set_counts(&mut self, counts: Vec<u64>) -> Result<()> {
        if counts.len() != self.config.num_classes + 1 {
            return Err(ModelError::Input(format!(
                "Seesaw counts have {} entries, the loss has {} classes + background",
                counts.len(),
                self.config.num_classes
            )));
        }
        self.cum_samples = counts;
        Ok(())
    }

    /// Adds one step's counts (see [`cum_samples`]).
    pub fn add_counts(&mut self, step: &[u64]) -> Result<()> {
        if step.len() != self.cum_samples.len() {
            return Err(ModelError::Input(format!(
                "count update has {} entries, expected {}",
                step.len(),
                self.cum_samples.len()
            )));
        }
        for (c, s) in self.cum_samples.iter_mut().zip(step) {
            *c += s;
        }
        Ok(())
    }

    fn check_width(&self, cls_score: &Tensor<2>) -> Result<[usize; 2]> {
        let [n, w] = cls_score.dims();
        let c = self.config.num_classes;
        if w != c + 2 {
            return Err(ModelError::Input(format!(
                "Seesaw Loss needs cls_score of width num_classes + 2 = {} ({c} classes, then \
                 object and background), got [{n}, {w}]; the classifier must emit C + 2 outputs",
                c + 2
            )));
        }
        Ok([n, w])
    }

    /// Counts `labels` (before the loss, as mmdetection does) and computes the loss.
    ///
    /// - `cls_score`: `[N, C + 2]` logits.
    /// - `labels`: `[N]`, in `0..=C` (C = background).
    /// - `label_weights`: `[N]`, or all ones.
    /// - `avg_factor`: the normaliser of "mean" (the bbox head passes the number of sampled RoIs).
    pub fn forward(
        &mut self,
        cls_score: Tensor<2>,
        labels: &[usize],
        label_weights: Option<Tensor<1>>,
        avg_factor: Option<f64>,
        reduction_override: Option<Reduction>,
    ) -> Result<SeesawOutput> {
        let mut step = cum_samples(labels, self.config.num_classes)?;
        // Under data parallelism, every replica adds the whole global batch's labels.
        crate::distributed::sum_counts(&mut step);
        self.add_counts(&step)?;
        self.loss(
            cls_score,
            labels,
            label_weights,
            avg_factor,
            reduction_override,
        )
    }

    /// The loss at the current counts, without counting `labels` (for replicas whose counts
    /// were already updated with the all-reduced step).
    pub fn loss(
        &self,
        cls_score: Tensor<2>,
        labels: &[usize],
        label_weights: Option<Tensor<1>>,
        avg_factor: Option<f64>,
        reduction_override: Option<Reduction>,
    ) -> Result<SeesawOutput> {
        self.check_width(&cls_score)?;
        let c = self.config.num_classes;
        let n = check_input("Seesaw Loss", &cls_score, labels, c, c + 2)?;
        let reduction = reduction_override.unwrap_or(self.config.reduction);
        let device = cls_score.device();
        let w = self.config.loss_weight;

        let pos: Vec<usize> = (0..n).filter(|&k| labels[k] < c).collect();
        let pos_labels: Vec<usize> = pos.iter().map(|&k| labels[k]).collect();
        let classes = if pos.is_empty() {
            // mmdetection returns `cls_score[pos].sum()`: zero, with a zero gradient.
            match reduction {
                Reduction::None => Tensor::zeros([0], &device),
                _ => cls_score.clone().sum().mul_scalar(0.0),
            }
        } else {
            let z = cls_score
                .clone()
                .select(0, index_tensor(&pos, &device))
                .slice([0..pos.len(), 0..c]);
            let log_s = self.log_seesaw_tensor(z.clone().detach(), &pos_labels);
            let adjusted = z + log_s;
            let rows = cross_entropy_rows(adjusted, &pos_labels);
            let weights = label_weights
                .clone()
                .map(|lw| lw.select(0, index_tensor(&pos, &device)));
            reduce(rows, weights, reduction, avg_factor)?.mul_scalar(w)
        };
        let objectness_targets: Vec<usize> = labels.iter().map(|&y| usize::from(y == c)).collect();
        let o = cls_score.slice([0..n, c..c + 2]);
        let objectness = reduce(
            cross_entropy_rows(o, &objectness_targets),
            label_weights,
            reduction,
            avg_factor,
        )?
        .mul_scalar(w);
        Ok(SeesawOutput {
            loss_cls_classes: classes,
            loss_cls_objectness: objectness,
        })
    }

    /// `log S` added to the positive rows' class logits, `[P, C]` row-major, 0 at each row's
    /// label, read back to the host. `z` is `[P, C]`, detached.
    pub fn log_seesaw_weights(&self, z: Tensor<2>, labels: &[usize]) -> Result<Vec<f64>> {
        host(self.log_seesaw_tensor(z, labels))
    }

    /// `log S = log M + log C` as a tensor `[P, C]`: [`mitigation_factor`] from the counts
    /// (host), [`compensation_factor`] from `softmax(z)` where `z` lives, so that no logits
    /// travel back to the host.
    fn log_seesaw_tensor(&self, z: Tensor<2>, labels: &[usize]) -> Tensor<2> {
        let cfg = &self.config;
        let c = cfg.num_classes;
        let p = labels.len();
        let device = z.device();
        let mut log_m = mitigation_factor(&self.cum_samples, labels, cfg.p);
        for v in &mut log_m {
            *v = v.ln();
        }
        let mut log_s = float_tensor(log_m, [p, c], &device);
        if cfg.q > 0.0 {
            log_s = log_s + compensation_factor(softmax(z, 1), labels, cfg.q, cfg.eps).log();
        }
        // The ground-truth column is never rescaled.
        let keep = one_hot(labels, c, &device).neg().add_scalar(1.0);
        log_s * keep
    }

    /// Test-time scores, `[N, C + 1]`: class softmax times P(object), then P(background).
    pub fn get_activation(&self, cls_score: Tensor<2>) -> Result<Tensor<2>> {
        let [n, _] = self.check_width(&cls_score)?;
        let c = self.config.num_classes;
        let classes = softmax(cls_score.clone().slice([0..n, 0..c]), 1);
        let obj = softmax(cls_score.slice([0..n, c..c + 2]), 1);
        let p_object = obj.clone().slice([0..n, 0..1]);
        let p_background = obj.slice([0..n, 1..2]);
        Ok(Tensor::cat(vec![classes * p_object, p_background], 1))
    }

    /// Top-1 accuracies in percent: (objectness over all rows, classes over positive rows);
    /// 0 for an empty set.
    pub fn get_accuracy(&self, cls_score: Tensor<2>, labels: &[usize]) -> Result<(f64, f64)> {
        let [n, w] = self.check_width(&cls_score)?;
        let c = self.config.num_classes;
        let v = host(cls_score)?;
        let argmax = |row: &[f64]| {
            row.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |best, (k, &x)| {
                    if x > best.1 { (k, x) } else { best }
                })
                .0
        };
        let (mut obj_ok, mut cls_ok, mut pos) = (0usize, 0usize, 0usize);
        for (k, &y) in labels.iter().enumerate().take(n) {
            let row = &v[k * w..(k + 1) * w];
            obj_ok += usize::from(argmax(&row[c..c + 2]) == usize::from(y == c));
            if y < c {
                pos += 1;
                cls_ok += usize::from(argmax(&row[..c]) == y);
            }
        }
        let pct = |ok: usize, all: usize| {
            if all == 0 {
                0.0
            } else {
                100.0 * ok as f64 / all as f64
            }
        };
        Ok((pct(obj_ok, n), pct(cls_ok, pos)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn mitigation_factor_by_hand() {
        // Counts 100, 25, 0 (-> 1 in the ratio); label 0: (25/100)^0.5 and (1/100)^0.5.
        let m = mitigation_factor(&[100, 25, 0, 7], &[0, 2], 0.5);
        let want = [1.0, 0.5, 0.1, 1.0, 1.0, 1.0];
        for (a, b) in m.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{m:?}");
        }
    }

    #[test]
    fn compensation_factor_by_hand() {
        // σ = (0.5, 0.3, 0.2), label 2: ratios 2.5, 1.5, 1 -> 6.25, 2.25, 1 with q = 2.
        // Label 0: ratios below 1 -> all 1.
        let probs = Tensor::<2>::from_data(
            TensorData::new(vec![0.5f32, 0.3, 0.2, 0.5, 0.3, 0.2], [2, 3]),
            &Device::flex(),
        );
        let c = host(compensation_factor(probs, &[2, 0], 2.0, 1e-2)).unwrap();
        let want = [6.25, 2.25, 1.0, 1.0, 1.0, 1.0];
        for (a, b) in c.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{c:?}");
        }
    }
}
