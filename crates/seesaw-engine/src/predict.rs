//! Inference: detections of a model over a split or over image files, turned into COCO/LVIS
//! results (boxes `[x, y, w, h]` and RLE masks on the original image), and their evaluation.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use seesaw_data::mask::Bitmap;
use seesaw_data::{Dataset, Detection, Segmentation};
use seesaw_eval::{Evaluation, Evaluator, IouType};
use seesaw_model::burn::tensor::Device;
use seesaw_model::detectors::MaskRcnn;
use seesaw_model::losses::any::AnyLoss;
use seesaw_model::ops::mask_paste::paste_mask;
use seesaw_model::structures::{Detections, ImageMeta};

use crate::config::Config;
use crate::data::{Sample, Split, collate, load_image};
use crate::error::Result;

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
/// pasted there (threshold `mask_thr`) and RLE-encoded.
pub fn to_results(
    dets: &Detections,
    meta: &ImageMeta,
    category_ids: &[u64],
    mask_thr: f32,
) -> Result<Vec<Detection>> {
    let (oh, ow) = meta.ori_shape;
    (0..dets.boxes.len())
        .into_par_iter()
        .map(|k| {
            let b = meta.to_original(&dets.boxes[k]);
            let b = [
                b[0].clamp(0.0, ow as f32),
                b[1].clamp(0.0, oh as f32),
                b[2].clamp(0.0, ow as f32),
                b[3].clamp(0.0, oh as f32),
            ];
            let segmentation = match dets.masks.get(k) {
                Some(m) if !m.is_empty() => {
                    let data =
                        paste_mask(m, dets.mask_size, &b, oh as usize, ow as usize, mask_thr);
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
                category_id: category_ids.get(dets.labels[k]).copied().unwrap_or(0),
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
    model: &MaskRcnn,
    loss: &AnyLoss,
    split: &Split,
    cfg: &Config,
    show_progress: bool,
) -> Result<Vec<Detection>> {
    let device = Device::flex();
    let n = split.dataset.images.len();
    let pb = progress_bar(n as u64, show_progress, "test");
    let mut out = Vec::new();
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(cfg.test.batch_size) {
        let samples = chunk
            .par_iter()
            .map(|&i| split.sample(i, cfg.data.test_scale, false, &cfg.data, false))
            .collect::<Result<Vec<Sample>>>()?;
        let batch = collate(samples, cfg.data.size_divisor, &device);
        let dets = model.predict(batch.images, &batch.metas, loss)?;
        for (d, meta) in dets.iter().zip(&batch.metas) {
            out.extend(to_results(
                d,
                meta,
                &split.category_ids,
                cfg.model.roi.test.mask_thr,
            )?);
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(out)
}

/// Detections of one image file (at the test scale), at input scale, with its meta.
pub fn predict_file(
    model: &MaskRcnn,
    loss: &AnyLoss,
    path: &Path,
    cfg: &Config,
) -> Result<(Detections, ImageMeta)> {
    let device = Device::flex();
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
    let mut dets = model.predict(batch.images, &batch.metas, loss)?;
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
