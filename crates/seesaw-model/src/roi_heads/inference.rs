//! Test-time pieces every RoI-head kind shares: the box stages run in sequence on the RoIs
//! (mmdetection's `CascadeRoIHead.predict_bbox`: each stage but the last moves the RoIs for
//! the next, scores are the stages' mean), one class's mask per detection, and
//! mmdetection's `multiclass_nms`.

use burn::tensor::Tensor;

use crate::error::{ModelError, Result};
use crate::heads::BBoxHead;
use crate::heads::bbox_head::argmax_rows;
use crate::heads::mask_head::MASK_SIZE;
use crate::losses::common::host_f32;
use crate::ops::Box2;
use crate::ops::nms::batched_nms;
use crate::roi_heads::RcnnTestConfig;
use crate::structures::{Detections, ImageMeta};

/// Bytes one activation of the mask head may take at test time (96 MiB): a wgpu device caps
/// one buffer (lavapipe at 128 MiB), so many detections (a batch of images, or LVIS's 1203
/// classes at 300 per image) go through the mask head in chunks of RoIs.
pub const MASK_CHUNK_BYTES: usize = 96 << 20;

/// RoIs per chunk of mask inference for a mask head whose widest activation has `channels`
/// channels (`R x channels x 28 x 28` f32): as many as fit [`MASK_CHUNK_BYTES`], at least one.
pub fn mask_rois_per_chunk(channels: usize) -> usize {
    let per_roi = channels.max(1) * MASK_SIZE * MASK_SIZE * 4;
    (MASK_CHUNK_BYTES / per_roi).max(1)
}

/// The box stages `heads` on `rois` (`[image, x1, y1, x2, y2]` at input scale), each pooling
/// with `pooler`: class scores (`[R * C]`, row-major) from the stages' mean logits, and per RoI
/// and class the box decoded by the last stage, clipped to its image (`[R * C]`). Each stage
/// but the last moves the RoIs for the next, by the best-scoring class's regression. A TSD
/// stage scores with TSD's classifier and decodes from its translated proposals (official
/// `tsd_simple_test_bboxes`, and the cascade's test there).
///
/// # Errors
/// No stages, or RoIs naming missing images.
pub(crate) fn staged_box_predictions(
    heads: &[BBoxHead],
    rois: &[[f32; 5]],
    metas: &[ImageMeta],
    pooler: &super::RoiPooler,
) -> Result<(Vec<f32>, Vec<Box2>)> {
    let last_head = heads
        .last()
        .ok_or_else(|| ModelError::Input("no box stages".into()))?;
    if rois.is_empty() {
        return Ok((vec![], vec![]));
    }
    let c = last_head.spec.num_classes;
    let mut rois = rois.to_vec();
    let mut logits: Option<Tensor<2>> = None;
    // The fine-tuning step's second classification branches, summed like the first.
    let mut dual_logits: Option<Tensor<2>> = None;
    let last = heads.len() - 1;
    let mut deltas = vec![];
    // What the last stage's deltas are relative to (TSD: its translated proposals).
    let mut base = rois.clone();
    for (t, head) in heads.iter().enumerate() {
        let out = super::box_head_forward(head, &rois, pooler, false)?;
        let (cls_score, reg) = (out.cls, out.reg);
        base = out.decode_rois.unwrap_or_else(|| rois.clone());
        if let Some(d) = out.dual {
            dual_logits = Some(match dual_logits {
                Some(sum) => sum + d,
                None => d,
            });
        }
        logits = Some(match logits {
            Some(sum) => sum + cls_score.clone(),
            None => cls_score.clone(),
        });
        deltas = host_f32(reg)?;
        if t < last {
            let labels = if head.spec.class_agnostic {
                vec![0; rois.len()]
            } else {
                argmax_rows(&host_f32(head.class_scores(cls_score)?)?, c)
            };
            let moved = head.decode(&base, &deltas, &labels, metas)?;
            for (roi, b) in rois.iter_mut().zip(moved) {
                roi[1..].copy_from_slice(&b);
            }
        }
    }
    let mean = logits
        .ok_or_else(|| ModelError::Input("no box stages".into()))?
        .div_scalar(heads.len() as f64);
    let mut scores = host_f32(last_head.class_scores(mean)?)?;
    // Dual head classification: the two branches' class scores averaged (arXiv:2008.10032v4,
    // Appendix D.2).
    if let Some(sum) = dual_logits {
        let dual = host_f32(last_head.class_scores(sum.div_scalar(heads.len() as f64))?)?;
        for (s, d) in scores.iter_mut().zip(dual) {
            *s = 0.5 * (*s + d);
        }
    }
    let boxes = last_head.decode_all_classes(&base, &deltas, metas)?;
    Ok((scores, boxes))
}

/// Per detection, its `m x m` map (row-major, `m` = [`MASK_SIZE`]) from `probs` `[R, m * m]`
/// (one row per detection, already of its class), and `m`.
///
/// # Errors
/// Rows that are not `m * m` long; a tensor that can not be read back.
pub fn class_maps(probs: Tensor<2>) -> Result<(Vec<Vec<f32>>, usize)> {
    let m = MASK_SIZE;
    let [_, mm] = probs.dims();
    if mm != m * m {
        return Err(ModelError::Input(format!(
            "mask probabilities: rows of {mm} values, expected {m} x {m}"
        )));
    }
    let probs = host_f32(probs)?;
    Ok((probs.chunks_exact(mm).map(<[f32]>::to_vec).collect(), m))
}

/// mmdetection's `multiclass_nms` over one image's RoIs: every (RoI, class) scoring above
/// `score_thr` with a non-empty box, class-wise NMS, the best `max_per_img`. `scores` and
/// `boxes` are `[R * C]`.
pub fn select_detections(
    scores: &[f32],
    boxes: &[Box2],
    num_classes: usize,
    t: &RcnnTestConfig,
) -> Detections {
    let (mut bx, mut sc, mut labels) = (vec![], vec![], vec![]);
    for (j, (&s, b)) in scores.iter().zip(boxes).enumerate() {
        let (w, h) = (b[2] - b[0], b[3] - b[1]);
        if s.is_nan()
            || s <= t.score_thr
            || !(w > 0.0 && h > 0.0 && w >= t.min_bbox_size && h >= t.min_bbox_size)
        {
            continue;
        }
        bx.push(*b);
        sc.push(s);
        labels.push(j % num_classes);
    }
    let keep = batched_nms(&bx, &sc, &labels, t.nms_iou);
    let mut d = Detections::default();
    for k in keep.into_iter().take(t.max_per_img) {
        d.boxes.push(bx[k]);
        d.scores.push(sc[k]);
        d.labels.push(labels[k]);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_chunks_stay_under_the_buffer_cap() {
        // 256 channels (mmdetection's FCNMaskHead): 784 KiB per RoI, 125 RoIs per chunk.
        assert_eq!(mask_rois_per_chunk(256), 125);
        assert!(mask_rois_per_chunk(256) * 256 * 28 * 28 * 4 <= MASK_CHUNK_BYTES);
        assert!((mask_rois_per_chunk(256) + 1) * 256 * 28 * 28 * 4 > MASK_CHUNK_BYTES);
        // A head too wide for one RoI still runs one at a time; no channels counts as one.
        assert_eq!(mask_rois_per_chunk(1 << 20), 1);
        assert_eq!(mask_rois_per_chunk(0), mask_rois_per_chunk(1));
    }
}
