//! The mask branch every RoI-head kind shares: mask logits through one head or, in HTC, through
//! the chain of the heads before it (the mask information flow), the mask loss of a stage's
//! positives, and the test-time probabilities averaged over heads (mmdetection's
//! `merge_aug_masks` over stages).

use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;

use crate::error::{ModelError, Result};
use crate::heads::MaskHead;
use crate::heads::mask_head::MASK_SIZE;
use crate::heads::mask_iou_head::{MaskIouHead, area_ratio, mask_iou_targets};
use crate::layers::{Norm, zero_touching};
use crate::losses::common::{host_f32, index_tensor};
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
/// 14, 14]`), and, when the head has a MaskIoU head (Mask Scoring), its loss
/// ([`mask_iou_loss`]); with no positive, zeros that still reach the heads' parameters.
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
) -> Result<(Tensor<1>, Option<Tensor<1>>)> {
    let head = heads
        .get(t)
        .ok_or_else(|| ModelError::Input(format!("no mask head {t}")))?;
    // The mask loss averages over the global batch's positives' pixels under data
    // parallelism; every replica takes part in each sum, positives or not.
    let pixels = crate::distributed::global_sum((s.pos_rows.len() * MASK_SIZE * MASK_SIZE) as f64);
    if s.pos_rows.is_empty() {
        let device = head.device();
        let mut loss = head.zero_loss(&device);
        let synced = heads[..=t]
            .iter()
            .any(|h| h.norms.iter().any(|n| matches!(n, Norm::Sync(_))));
        if synced && crate::distributed::world_size() > 1 {
            // SyncBN in the heads: the others run them on their positives, so this replica
            // runs them on none, taking part in each layer's sums forward and backward.
            let logits = mask_logits(heads, t, chained, pool(&[])?)?;
            loss = loss + logits.sum().mul_scalar(0.0);
        }
        // MaskIoU's normaliser last, as `MaskIouHead::loss` sums it on the others.
        let iou = head.mask_iou_head.as_ref().map(|h| {
            crate::distributed::global_sum(0.0);
            zero_touching(h, &device)
        });
        return Ok((loss, iou));
    }
    let pooled = pool(&s.pos_rois())?;
    let logits = mask_logits(heads, t, chained, pooled.clone())?;
    let targets = head.targets(s, gts)?;
    let iou = match &head.mask_iou_head {
        Some(h) => Some(mask_iou_loss(h, pooled, logits.clone(), s, gts, &targets)?),
        None => None,
    };
    Ok((
        head.loss_with_targets(logits, s, &targets, Some(pixels.max(1.0))),
        iou,
    ))
}

/// Mask Scoring's loss on the positives of `s` (mmdetection's `MaskScoringRoIHead.mask_loss`):
/// the MaskIoU head on the RoI features `pooled` `[P, C, 14, 14]` and the logits of each
/// positive's ground-truth class (from `logits` `[P, C, 28, 28]`), its prediction for that
/// class against [`mask_iou_targets`] from the mask targets `targets` (`[P * 28 * 28]`) and the
/// share of each ground truth inside its RoI.
///
/// # Errors
/// A positive whose ground truth has no mask.
pub fn mask_iou_loss(
    head: &MaskIouHead,
    pooled: Tensor<4>,
    logits: Tensor<4>,
    s: &SampledRois,
    gts: &[GtInstances],
    targets: &[f32],
) -> Result<Tensor<1>> {
    let labels: Vec<usize> = s.pos_rows.iter().map(|&row| s.labels[row]).collect();
    let [p, _, m, _] = logits.dims();
    let chosen = class_channels(logits, &labels)?;
    let pred = label_column(
        head.forward(pooled, chosen.clone().reshape([p, m, m])),
        &labels,
    );
    let mut ratios = Vec::with_capacity(p);
    for (&row, &(img, g)) in s.pos_rows.iter().zip(&s.pos_gt) {
        let gm = gts[img].masks.get(g).ok_or_else(|| {
            ModelError::Input(format!("image {img}: ground truth {g} has no mask"))
        })?;
        let r = s.rois[row];
        ratios.push(area_ratio(gm, &[r[1], r[2], r[3], r[4]]));
    }
    let want = mask_iou_targets(
        &host_f32(chosen.detach())?,
        targets,
        &ratios,
        head.mask_thr_binary,
    );
    Ok(head.loss(pred, &want))
}

/// Per RoI, the sigmoid of the logits of its class `labels[r]`, averaged over the heads
/// (`[R, 28 * 28]`); with `chained` (HTC) each head takes the previous one's features. With
/// Mask Scoring, also each RoI's predicted mask IoU of its class `[R]` (from the heads that
/// have a MaskIoU head, averaged).
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
) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
    let mut sum: Option<Tensor<2>> = None;
    let mut ious: Vec<Tensor<1>> = Vec::new();
    let mut res = None;
    for head in heads {
        let x = if chained {
            let f = head.features(pooled.clone(), res.take());
            res = Some(f.clone());
            f
        } else {
            head.features(pooled.clone(), None)
        };
        let chosen = class_channels(head.logits(x), labels)?;
        if let Some(h) = &head.mask_iou_head {
            let [r, mm] = chosen.dims();
            let m = (mm as f64).sqrt() as usize;
            let pred = h.forward(pooled.clone(), chosen.clone().reshape([r, m, m]));
            ious.push(label_column(pred, labels));
        }
        let p = sigmoid(chosen);
        sum = Some(match sum {
            Some(s) => s + p,
            None => p,
        });
    }
    let n = ious.len();
    let iou = ious
        .into_iter()
        .reduce(|a, b| a + b)
        .map(|s| s.div_scalar(n as f64));
    let probs = sum
        .ok_or_else(|| ModelError::Input("no mask heads".into()))?
        .div_scalar(heads.len() as f64);
    Ok((probs, iou))
}

/// Per row `r` of `values` `[R, K]`, its column `labels[r]` (each below `K`): `[R]`.
fn label_column(values: Tensor<2>, labels: &[usize]) -> Tensor<1> {
    let [r, k] = values.dims();
    let device = values.device();
    let idx: Vec<usize> = labels.iter().enumerate().map(|(i, &l)| i * k + l).collect();
    values
        .reshape([r * k])
        .select(0, index_tensor(&idx, &device))
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
