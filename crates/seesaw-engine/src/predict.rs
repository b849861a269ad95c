//! Inference: detections of a model over a split or over image files, turned into COCO/LVIS
//! results (boxes `[x, y, w, h]` and RLE masks on the original image), and their evaluation.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use seesaw_data::mask::Bitmap;
use seesaw_data::{Dataset, Detection, Segmentation};
use seesaw_eval::{Evaluation, Evaluator, IouType};
use seesaw_model::detectors::Detector;
use seesaw_model::detectors::select_detections;
use seesaw_model::ops::Box2;
use seesaw_model::ops::mask_paste::paste_mask_with;
use seesaw_model::ops::nms::nms;
use seesaw_model::roi_heads::RcnnTestConfig;
use seesaw_model::structures::{Detections, ImageMeta};

use crate::config::Config;
use crate::data::{Sample, Split, collate, load_image};
use crate::error::{EngineError, Result};

/// A progress bar on stderr (hidden when `show` is false).
pub fn progress_bar(len: u64, show: bool, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} [{{elapsed_precise}}<{{eta_precise}}] {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// COCO results of one image's detections: boxes mapped back to the original image, masks
/// pasted there as `test` says (`mask_paste`, `mask_thr`) and RLE-encoded. `category_ids[label]` is each
/// detection's category; a label past the list is an error, never a made-up id.
pub fn to_results(
    dets: &Detections,
    meta: &ImageMeta,
    category_ids: &[u64],
    test: &RcnnTestConfig,
) -> Result<Vec<Detection>> {
    let (oh, ow) = meta.ori_shape;
    (0..dets.boxes.len())
        .into_par_iter()
        .map(|k| {
            let label = dets.labels.get(k).copied().unwrap_or(usize::MAX);
            let category_id = category_ids.get(label).copied().ok_or_else(|| {
                EngineError::Request(format!(
                    "image {}: detection {k} has class {label}, but only {} category ids are \
                     known; the model predicts more classes than its checkpoint or annotation \
                     file names, and a result needs a real category id",
                    meta.image_id,
                    category_ids.len()
                ))
            })?;
            let b = meta.to_original(&dets.boxes[k]);
            let b = [
                b[0].clamp(0.0, ow as f32),
                b[1].clamp(0.0, oh as f32),
                b[2].clamp(0.0, ow as f32),
                b[3].clamp(0.0, oh as f32),
            ];
            let segmentation = match dets.masks.get(k) {
                Some(m) if !m.is_empty() => {
                    let data = paste_mask_with(
                        test.mask_paste,
                        m,
                        dets.mask_size,
                        &b,
                        oh as usize,
                        ow as usize,
                        test.mask_thr,
                    );
                    let rle = Bitmap {
                        height: oh,
                        width: ow,
                        data,
                    }
                    .to_rle()?;
                    Some(Segmentation::Rle(rle))
                }
                _ => None,
            };
            Ok(Detection {
                image_id: meta.image_id,
                category_id,
                bbox: Some([
                    f64::from(b[0]),
                    f64::from(b[1]),
                    f64::from(b[2] - b[0]),
                    f64::from(b[3] - b[1]),
                ]),
                segmentation,
                score: f64::from(dets.scores[k]),
            })
        })
        .collect()
}

/// Runs `model` over every image of `split` at the test scale; COCO results.
pub fn predict_split(
    model: &Detector,
    split: &Split,
    cfg: &Config,
    show_progress: bool,
) -> Result<Vec<Detection>> {
    let mut out = Vec::new();
    for_each_test_batch(model, split, cfg, show_progress, "test", |batch| {
        let dets = model.predict(batch.images, &batch.metas)?;
        for (d, meta) in dets.iter().zip(&batch.metas) {
            out.extend(to_results(
                d,
                meta,
                &split.category_ids,
                &cfg.model.roi.test,
            )?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Loads every image of `split` at the test scale, `test.batch_size` at a time, and hands each
/// padded batch to `run`, with a progress bar labelled `what`.
fn for_each_test_batch(
    model: &Detector,
    split: &Split,
    cfg: &Config,
    show_progress: bool,
    what: &str,
    mut run: impl FnMut(crate::data::Batch) -> Result<()>,
) -> Result<()> {
    let device = model.device();
    let n = split.dataset.images.len();
    let pb = progress_bar(n as u64, show_progress, what);
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(cfg.test.batch_size) {
        let samples = chunk
            .par_iter()
            .map(|&i| split.sample(i, cfg.data.test_scale, false, &cfg.data, false))
            .collect::<seesaw_data::Result<Vec<Sample>>>()?;
        run(collate(samples, cfg.data.size_divisor, &device))?;
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(())
}

/// The RPN's test-time proposals over every image of `split` at the test scale
/// (`model.rpn.test`: `nms_pre`, `max_per_img`, ...), as class-agnostic results on the original
/// image: boxes `[x, y, w, h]` mapped back by each image's scale (not clipped again, as
/// mmdetection rescales them), the objectness as the score, and the split's first category id
/// on each, as mmdetection's `_proposal2json` writes category 1. For
/// [`seesaw_eval::proposal_recall`].
pub fn predict_proposals(
    model: &Detector,
    split: &Split,
    cfg: &Config,
    show_progress: bool,
) -> Result<Vec<Detection>> {
    let category_id = split.category_ids.first().copied().ok_or_else(|| {
        crate::error::EngineError::Request("proposals need a split with a category".into())
    })?;
    let mut out = Vec::new();
    for_each_test_batch(model, split, cfg, show_progress, "proposals", |batch| {
        let feats = model.features(batch.images);
        let props = model.proposals(&feats, &batch.metas)?;
        for (p, meta) in props.iter().zip(&batch.metas) {
            out.extend(p.iter().map(|(b, s)| {
                let b = meta.to_original(b);
                Detection {
                    image_id: meta.image_id,
                    category_id,
                    bbox: Some([
                        f64::from(b[0]),
                        f64::from(b[1]),
                        f64::from(b[2] - b[0]),
                        f64::from(b[3] - b[1]),
                    ]),
                    segmentation: None,
                    score: f64::from(*s),
                }
            }));
        }
        Ok(())
    })?;
    Ok(out)
}

/// Detections of one image file (at the test scale), at input scale, with its meta.
pub fn predict_file(
    model: &Detector,
    path: &Path,
    cfg: &Config,
) -> Result<(Detections, ImageMeta)> {
    let device = model.device();
    let (pixels, meta) = load_image(path, cfg.data.test_scale, false, &cfg.data)?;
    let batch = collate(
        vec![Sample {
            pixels,
            meta: meta.clone(),
            gt: Default::default(),
        }],
        cfg.data.size_divisor,
        &device,
    );
    let mut dets = model.predict(batch.images, &batch.metas)?;
    Ok((dets.pop().unwrap_or_default(), meta))
}

/// Box (and, with masks, mask) evaluation of `dets` against `gt`.
pub fn evaluate(
    gt: &Dataset,
    dets: Vec<Detection>,
    with_masks: bool,
) -> Result<(Evaluation, Option<Evaluation>)> {
    let ev = Evaluator::new(gt, None)?;
    let bbox = ev.evaluate(dets.clone(), IouType::Bbox)?;
    let segm = if with_masks {
        Some(ev.evaluate(dets, IouType::Segm)?)
    } else {
        None
    };
    Ok((bbox, segm))
}

/// Test-time augmentation: every scale, each with and without a horizontal flip if asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Tta {
    /// `[short, long]` scales.
    pub scales: Vec<[u32; 2]>,
    pub flip: bool,
}

impl Tta {
    /// Parses `flip,scales=1200,1400,...` (a scale `N` is `[N, N x long / short]` of the test
    /// scale; `NxM` gives both sides); with no scales, the test scale alone.
    pub fn parse(spec: &str, test_scale: [u32; 2]) -> Result<Self> {
        let mut tta = Tta {
            scales: vec![],
            flip: false,
        };
        let mut in_scales = false;
        for tok in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let value = if tok == "flip" {
                tta.flip = true;
                in_scales = false;
                continue;
            } else if let Some(v) = tok.strip_prefix("scales=") {
                in_scales = true;
                v
            } else if in_scales {
                tok
            } else {
                return Err(crate::error::EngineError::Request(format!(
                    "--tta: unknown item {tok:?} (expected flip or scales=N,N,...)"
                )));
            };
            let bad = || {
                crate::error::EngineError::Request(format!(
                    "--tta: scale {value:?} is not N or NxM (positive pixels)"
                ))
            };
            let scale = match value.split_once('x') {
                Some((a, b)) => [a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?],
                None => {
                    let n: u32 = value.parse().map_err(|_| bad())?;
                    let long = (f64::from(n) * f64::from(test_scale[1])
                        / f64::from(test_scale[0].max(1)))
                    .round() as u32;
                    [n, long]
                }
            };
            if scale[0] == 0 || scale[1] == 0 {
                return Err(bad());
            }
            tta.scales.push(scale);
        }
        if tta.scales.is_empty() {
            tta.scales.push(test_scale);
        }
        Ok(tta)
    }

    fn augmentations(&self) -> Vec<([u32; 2], bool)> {
        let flips: &[bool] = if self.flip { &[false, true] } else { &[false] };
        self.scales
            .iter()
            .flat_map(|&s| flips.iter().map(move |&f| (s, f)))
            .collect()
    }
}

/// mmdetection's `aug_test` for one image of `split`: proposals of every augmentation mapped to
/// the original image, merged and NMSed; the box head run per augmentation on the merged
/// proposals, boxes mapped back and averaged with the scores; masks of every augmentation
/// (flipped back) averaged before thresholding. Detections on the original image.
pub fn predict_image_tta(
    model: &Detector,
    split: &Split,
    index: usize,
    cfg: &Config,
    tta: &Tta,
) -> Result<(Detections, ImageMeta)> {
    let device = model.device();
    let c = cfg.model.num_classes;
    let mut views = Vec::new();
    for (scale, flip) in tta.augmentations() {
        let sample = split.sample(index, scale, flip, &cfg.data, false)?;
        let batch = collate(vec![sample], cfg.data.size_divisor, &device);
        let feats = model.features(batch.images);
        views.push((feats, batch.metas));
    }
    let mut merged: Vec<(Box2, f32)> = Vec::new();
    for (feats, metas) in &views {
        let props = model.proposals(feats, metas)?;
        merged.extend(
            props
                .into_iter()
                .flatten()
                .map(|(b, s)| (metas[0].to_original(&b), s)),
        );
    }
    if views.len() > 1 {
        let (b, s): (Vec<Box2>, Vec<f32>) = merged.iter().copied().unzip();
        let t = &cfg.model.rpn.test;
        merged = nms(&b, &s, t.nms_iou)
            .into_iter()
            .take(t.max_per_img)
            .map(|k| merged[k])
            .collect();
    }
    let r = merged.len();
    let mut scores = vec![0f32; r * c];
    let mut boxes = vec![[0f32; 4]; r * c];
    for (feats, metas) in &views {
        let meta = &metas[0];
        let rois: Vec<[f32; 5]> = merged
            .iter()
            .map(|(b, _)| {
                let b = meta.to_input(b);
                [0.0, b[0], b[1], b[2], b[3]]
            })
            .collect();
        let (s, b) = model.box_predictions(feats, &rois, metas)?;
        for k in 0..s.len() {
            scores[k] += s[k];
            let o = meta.to_original(&b[k]);
            for j in 0..4 {
                boxes[k][j] += o[j];
            }
        }
    }
    let n = views.len() as f32;
    for k in 0..r * c {
        scores[k] /= n;
        boxes[k] = boxes[k].map(|v| v / n);
    }
    let mut dets = select_detections(&scores, &boxes, c, &cfg.model.roi.test);
    let mut sum: Vec<Vec<f32>> = Vec::new();
    // Mask Scoring: each view's predicted mask IoUs, averaged like the masks.
    let mut iou_sum: Option<Vec<f32>> = None;
    for (feats, metas) in &views {
        let meta = &metas[0];
        let wanted: Vec<(usize, Box2, usize)> = dets
            .boxes
            .iter()
            .zip(&dets.labels)
            .map(|(b, &l)| (0, meta.to_input(b), l))
            .collect();
        let class_masks = model.mask_probs(feats, &wanted)?;
        let (masks, m) = (class_masks.masks, class_masks.size);
        if let Some(ious) = class_masks.ious {
            match iou_sum.as_mut() {
                Some(acc) => acc.iter_mut().zip(&ious).for_each(|(a, v)| *a += v),
                None => iou_sum = Some(ious),
            }
        }
        dets.mask_size = m;
        for (k, mut mask) in masks.into_iter().enumerate() {
            if meta.flip {
                for row in mask.chunks_exact_mut(m) {
                    row.reverse();
                }
            }
            match sum.get_mut(k) {
                Some(acc) => acc.iter_mut().zip(&mask).for_each(|(a, v)| *a += v),
                None => sum.push(mask),
            }
        }
    }
    dets.masks = sum
        .into_iter()
        .map(|m| m.into_iter().map(|v| v / n).collect())
        .collect();
    let mean_ious = seesaw_model::roi_heads::ClassMasks {
        ious: iou_sum.map(|s| s.into_iter().map(|v| v / n).collect()),
        ..Default::default()
    };
    mean_ious.rescore(&mut dets.scores);
    let first = &views[0].1[0];
    let meta = ImageMeta {
        image_id: first.image_id,
        ori_shape: first.ori_shape,
        img_shape: (first.ori_shape.0 as usize, first.ori_shape.1 as usize),
        scale: (1.0, 1.0),
        flip: false,
    };
    Ok((dets, meta))
}

/// [`predict_split`] with test-time augmentation, one image at a time.
pub fn predict_split_tta(
    model: &Detector,
    split: &Split,
    cfg: &Config,
    tta: &Tta,
    show_progress: bool,
) -> Result<Vec<Detection>> {
    let n = split.dataset.images.len();
    let pb = progress_bar(n as u64, show_progress, "test (TTA)");
    let mut out = Vec::new();
    for i in 0..n {
        let (d, meta) = predict_image_tta(model, split, i, cfg, tta)?;
        out.extend(to_results(
            &d,
            &meta,
            &split.category_ids,
            &cfg.model.roi.test,
        )?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_without_a_category_is_an_error_not_id_0() {
        let dets = Detections {
            boxes: vec![[1.0, 1.0, 5.0, 6.0], [2.0, 2.0, 4.0, 4.0]],
            scores: vec![0.9, 0.8],
            labels: vec![1, 2],
            masks: vec![],
            mask_size: 0,
        };
        let meta = ImageMeta {
            image_id: 7,
            ori_shape: (10, 10),
            img_shape: (10, 10),
            scale: (1.0, 1.0),
            flip: false,
        };
        let ok = to_results(&dets, &meta, &[3, 5, 9], &RcnnTestConfig::default())
            .expect("every label has an id");
        assert_eq!(
            ok.iter().map(|d| d.category_id).collect::<Vec<_>>(),
            vec![5, 9]
        );
        let err = to_results(&dets, &meta, &[3, 5], &RcnnTestConfig::default())
            .expect_err("class 2 has no id")
            .to_string();
        assert!(
            err.starts_with("image 7: detection 1 has class 2, but only 2 category ids are known"),
            "{err}"
        );
    }
}
