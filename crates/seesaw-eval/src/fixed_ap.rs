//! Fixed AP and pooled AP (Dave et al. 2021, "Evaluating Large-Vocabulary Object Detectors:
//! The Devil is in the Details"), as their `evaluate_ap_fixed.py` / `evaluate_ap_pooled.py`
//! compute them on top of lvis-api.
//!
//! - **Fixed AP**: no per-image cap; instead each category keeps its top K detections over the
//!   whole dataset (K = 10,000 for LVIS). A detector can no longer gain AP by re-ranking
//!   classes inside an image, which the 300-per-image cap rewards. For masks the boxes are
//!   dropped first, so that area ranges use mask areas.
//! - **Pooled AP**: the matches are those of Fixed AP, but precision and recall are computed
//!   once over all categories of a pool (all, r, c, f) instead of per category and averaged,
//!   so that scores must be calibrated across categories.

use std::collections::{HashMap, HashSet};

use seesaw_data::{Detection, Format, Frequency};

use crate::error::{EvalError, Result};
use crate::{Evaluation, Evaluator, IouType, prepare};

/// The K of Fixed AP on LVIS.
pub const DEFAULT_DETS_PER_CLASS: usize = 10_000;

/// Top `k` detections of each category, regrouped by category in order of first appearance
/// and sorted by score (stable), as the reference script does.
fn top_k_per_class(dets: Vec<Detection>, k: usize) -> Vec<Detection> {
    let mut order = Vec::new();
    let mut per_cat: HashMap<u64, Vec<Detection>> = HashMap::new();
    for d in dets {
        per_cat
            .entry(d.category_id)
            .or_insert_with(|| {
                order.push(d.category_id);
                Vec::new()
            })
            .push(d);
    }
    let mut out = Vec::new();
    for c in order {
        if let Some(mut v) = per_cat.remove(&c) {
            v.sort_by(|a, b| b.score.total_cmp(&a.score));
            v.truncate(k);
            out.extend(v);
        }
    }
    out
}

impl Evaluator {
    /// Fixed AP (`AP AP50 AP75 APs APm APl APr APc APf`) and pooled AP (`AP-pooled-all AP-pooled-r
    /// AP-pooled-c AP-pooled-f`) of `dets`, keeping the top `dets_per_class` per category.
    pub fn evaluate_fixed(
        &self,
        dets: Vec<Detection>,
        iou: IouType,
        dets_per_class: usize,
    ) -> Result<Evaluation> {
        if self.format != Format::Lvis {
            return Err(EvalError::Request(
                "Fixed AP and pooled AP are defined on LVIS ground truth only".into(),
            ));
        }
        if iou == IouType::Boundary {
            return Err(EvalError::Request(
                "Fixed AP and pooled AP are computed for bbox and segm, not boundary".into(),
            ));
        }
        self.check_gt_masks(iou)?;
        let mut dets = top_k_per_class(dets, dets_per_class.max(1));
        if iou == IouType::Segm {
            for d in &mut dets {
                if d.segmentation.is_some() {
                    d.bbox = None;
                }
            }
        }
        let dt = prepare::detections_uncapped(&self.gt, dets, iou)?;
        let mut ev = hotcoco::COCOeval::new_lvis(self.gt.clone(), dt, crate::hot_iou(iou));
        // lvis-api caps nothing once LVISResults did not; hotcoco would cap each cell at 300.
        ev.params.max_dets = vec![usize::MAX];
        ev.evaluate()
            .map_err(|e| EvalError::Hotcoco(e.to_string()))?;
        ev.accumulate();
        ev.summarize_lines();
        let mut stats: Vec<(String, f64)> = crate::summary(&ev)
            .into_iter()
            .filter(|(k, _)| k.starts_with("AP"))
            .collect();
        stats.extend(self.pooled(&ev));
        let table = stats
            .iter()
            .map(|(k, v)| format!(" {k:>13} = {v:0.3}"))
            .collect();
        Ok(Evaluation {
            format: self.format,
            iou_type: iou,
            per_class: self.per_class_of(&ev),
            stats,
            table,
        })
    }

    /// Pooled AP per pool, at area "all", from the per-cell matches of `ev`.
    fn pooled(&self, ev: &hotcoco::COCOeval) -> Vec<(String, f64)> {
        let all = ev.params.all_area_range();
        let mut cells: Vec<&hotcoco::EvalImg> = ev
            .eval_imgs()
            .iter()
            .flatten()
            .filter(|e| e.area_rng == all)
            .collect();
        // The reference concatenates image by image, categories in id order inside each.
        cells.sort_by_key(|e| (e.image_id, e.category_id));
        let group: HashMap<u64, Option<Frequency>> =
            self.classes.iter().map(|(id, _, f, _)| (*id, *f)).collect();
        let pools: [(&str, Option<Frequency>); 4] = [
            ("AP-pooled-all", None),
            ("AP-pooled-r", Some(Frequency::Rare)),
            ("AP-pooled-c", Some(Frequency::Common)),
            ("AP-pooled-f", Some(Frequency::Frequent)),
        ];
        pools
            .iter()
            .map(|&(name, want)| {
                let members: HashSet<u64> = group
                    .iter()
                    .filter(|(_, f)| want.is_none() || **f == want)
                    .map(|(id, _)| *id)
                    .collect();
                let pool: Vec<&hotcoco::EvalImg> = cells
                    .iter()
                    .copied()
                    .filter(|e| members.contains(&e.category_id))
                    .collect();
                (
                    name.to_string(),
                    pooled_ap(&pool, &ev.params.iou_thrs, &ev.params.rec_thrs),
                )
            })
            .collect()
    }
}

/// lvis-api's `accumulate` + `_summarize('ap')` over the union of `cells`.
fn pooled_ap(cells: &[&hotcoco::EvalImg], iou_thrs: &[f64], rec_thrs: &[f64]) -> f64 {
    let num_gt: usize = cells.iter().map(|e| e.num_gt_in_denominator()).sum();
    if num_gt == 0 || cells.is_empty() {
        return -1.0;
    }
    // (score, cell, detection): a stable sort by descending score, as numpy's mergesort.
    let mut order: Vec<(f64, usize, usize)> = cells
        .iter()
        .enumerate()
        .flat_map(|(c, e)| e.dt_scores.iter().enumerate().map(move |(d, &s)| (s, c, d)))
        .collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut values = Vec::with_capacity(iou_thrs.len() * rec_thrs.len());
    for t in 0..iou_thrs.len() {
        let (mut tp, mut fp) = (0.0f64, 0.0f64);
        let mut rc = Vec::with_capacity(order.len());
        let mut pr = Vec::with_capacity(order.len());
        for &(_, c, d) in &order {
            let e = cells[c];
            if e.dt_ignore[(t, d)] {
                // Neither a true nor a false positive: the sums carry over.
            } else if e.dt_matched[(t, d)] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            rc.push(tp / num_gt as f64);
            pr.push(tp / (fp + tp + f64::EPSILON));
        }
        for i in (1..pr.len()).rev() {
            if pr[i] > pr[i - 1] {
                pr[i - 1] = pr[i];
            }
        }
        for &r in rec_thrs {
            let i = rc.partition_point(|&x| x < r);
            values.push(pr.get(i).copied().unwrap_or(0.0));
        }
    }
    let valid: Vec<f64> = values.into_iter().filter(|&v| v > -1.0).collect();
    if valid.is_empty() {
        -1.0
    } else {
        valid.iter().sum::<f64>() / valid.len() as f64
    }
}
