//! The mask branch every RoI-head kind shares: mask logits through one head or, in HTC, through
//! the chain of the heads before it (the mask information flow), the mask loss of a stage's
//! positives, and the test-time probabilities averaged over heads (mmdetection's
//! `merge_aug_masks` over stages).

use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;

use crate::error::{ModelError, Result};
use crate::heads::MaskHead;
use crate::losses::common::index_tensor;
use crate::roi_heads::sampling::SampledRois;
use crate::structures::GtInstances;

/// Mask logits `[R, C, 28, 28]` of head `t` on pooled features `[R, C, 14, 14]`; with
/// `chained` (HTC), the heads before it run first for their features.
///
/// # Errors
/// No head `t`.
pub fn mask_logits(
    heads: &[MaskHead],
    t: usize,
    chained: bool,
    pooled: Tensor<4>,
) -> Result<Tensor<4>> {
    let head = heads
        .get(t)
        .ok_or_else(|| ModelError::Input(format!("no mask head {t}")))?;
    let mut res = None;
    if chained {
        for h in &heads[..t] {
            res = Some(h.features(pooled.clone(), res));
        }
    }
    Ok(head.logits(head.features(pooled, res)))
}

/// Head `t`'s mask loss on the positives of `s`, pooled by `pool` (positive RoIs -> `[P, C,
/// 14, 14]`); with no positive, a zero that still reaches the head's parameters.
///
/// # Errors
/// No head `t`, or a positive whose ground truth has no mask.
pub fn mask_loss(
    heads: &[MaskHead],
    t: usize,
    chained: bool,
    s: &SampledRois,
    gts: &[GtInstances],
    pool: impl FnOnce(&[[f32; 5]]) -> Result<Tensor<4>>,
) -> Result<Tensor<1>> {
    let head = heads
        .get(t)
        .ok_or_else(|| ModelError::Input(format!("no mask head {t}")))?;
    if s.pos_rows.is_empty() {
        let device = head.device();
        return Ok(head.zero_loss(&device));
    }
    let pooled = pool(&s.pos_rois())?;
    head.loss(mask_logits(heads, t, chained, pooled)?, s, gts)
}

/// Per RoI, the sigmoid of the logits of its class `labels[r]`, averaged over the heads
/// (`[R, 28 * 28]`); with `chained` (HTC) each head takes the previous one's features.
///
/// The class's channel is selected before the sigmoid (the same numbers as mmdetection's
/// `mask_preds.sigmoid()` over all classes followed by the label's channel, without the
/// `R x C x 784` exponentials: for LVIS, 1203 channels of which one is kept).
///
/// # Errors
/// No heads; not one label per RoI; a label outside the heads' classes.
pub fn mean_mask_probs(
    heads: &[MaskHead],
    chained: bool,
    pooled: Tensor<4>,
    labels: &[usize],
) -> Result<Tensor<2>> {
    let mut sum: Option<Tensor<2>> = None;
    let mut res = None;
    for head in heads {
        let x = if chained {
            let f = head.features(pooled.clone(), res.take());
            res = Some(f.clone());
            f
        } else {
            head.features(pooled.clone(), None)
        };
        let p = sigmoid(class_channels(head.logits(x), labels)?);
        sum = Some(match sum {
            Some(s) => s + p,
            None => p,
        });
    }
    Ok(sum
        .ok_or_else(|| ModelError::Input("no mask heads".into()))?
        .div_scalar(heads.len() as f64))
}

/// Row `r` of the result is channel `labels[r]` of RoI `r` in `logits` `[R, C, m, m]`:
/// `[R, m * m]`.
///
/// # Errors
/// A label `>= C`, or not one label per RoI.
fn class_channels(logits: Tensor<4>, labels: &[usize]) -> Result<Tensor<2>> {
    let [r, c, m, _] = logits.dims();
    if labels.len() != r {
        return Err(ModelError::Input(format!(
            "mask probabilities: {} labels for {r} RoIs",
            labels.len()
        )));
    }
    if let Some((k, &l)) = labels.iter().enumerate().find(|&(_, &l)| l >= c) {
        return Err(ModelError::Input(format!(
            "mask probabilities: label {l} of RoI {k} is not below the mask head's {c} classes"
        )));
    }
    let idx: Vec<usize> = labels.iter().enumerate().map(|(k, &l)| k * c + l).collect();
    let device = logits.device();
    Ok(logits
        .reshape([r * c, m * m])
        .select(0, index_tensor(&idx, &device)))
}
