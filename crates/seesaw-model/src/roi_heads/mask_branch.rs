//! The mask branch every RoI-head kind shares: mask logits through one head or, in HTC, through
//! the chain of the heads before it (the mask information flow), the mask loss of a stage's
//! positives, and the test-time probabilities averaged over heads (mmdetection's
//! `merge_aug_masks` over stages).

use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;

use crate::error::{ModelError, Result};
use crate::heads::MaskHead;
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
        let device = head.upsample.weight.device();
        return Ok(head.zero_loss(&device));
    }
    let pooled = pool(&s.pos_rois())?;
    head.loss(mask_logits(heads, t, chained, pooled)?, s, gts)
}

/// The sigmoid of every head's logits on `pooled`, averaged (`[R, C, 28, 28]`); with
/// `chained` (HTC) each head takes the previous one's features.
///
/// # Errors
/// No heads.
pub fn mean_mask_probs(heads: &[MaskHead], chained: bool, pooled: Tensor<4>) -> Result<Tensor<4>> {
    let mut sum: Option<Tensor<4>> = None;
    let mut res = None;
    for head in heads {
        let x = if chained {
            let f = head.features(pooled.clone(), res.take());
            res = Some(f.clone());
            f
        } else {
            head.features(pooled.clone(), None)
        };
        let p = sigmoid(head.logits(x));
        sum = Some(match sum {
            Some(s) => s + p,
            None => p,
        });
    }
    Ok(sum
        .ok_or_else(|| ModelError::Input("no mask heads".into()))?
        .div_scalar(heads.len() as f64))
}
