//! The official protocols, pycocotools' `COCOeval` and lvis-api's `LVISEval`, with the
//! similarity as an argument.
//!
//! hotcoco runs both protocols, but only with the similarities it knows (box, mask, keypoint,
//! rotated box); Boundary AP needs another ([`crate::boundary`]). This module repeats the two
//! protocols' steps on hotcoco's records, which [`crate::prepare`] has already put under the
//! official tool's rules: per (image, category) cell, detections sorted by score and greedy
//! matching at each IoU threshold (`evaluateImg` / `evaluate_img`); per category and area range,
//! precision interpolated at 101 recall points (`accumulate`); means in numpy's summation order
//! (`summarize`). Its tests check it against the official numbers with the mask and box
//! similarities, where hotcoco agrees with them bit for bit.
//!
//! It also keeps two rules of the official tools that hotcoco corrects, and so serves the box
//! and mask evaluations where they apply:
//!
//! - a match is recorded as the matched ground truth's id and later tested as a truth value, so
//!   an annotation whose id is 0 is never matched: the detection it takes is a false positive
//!   (or ignored, where an unmatched one would be), and the annotation stays a miss;
//! - `useCats = 0` (category-agnostic evaluation): one cell per image holding every ground truth
//!   and every detection, gathered category by category in id order. lvis-api 0.5.3 gathers
//!   nothing there (`_get_gt_dt` indexes with -1 instead of each category id); with that corrected
//!   its rules stay per category: a detection is kept where its own category is annotated or
//!   listed negative on the image, and ignored unmatched where its own category is not exhaustive.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use hotcoco::primitives::sim::{bbox_iou_flat, mask_iou_flat};
use hotcoco::{Annotation, COCO, Rle};
use rayon::prelude::*;
use seesaw_data::{Format, Frequency};

use crate::boundary::boundary_similarity_from;

/// The category slot of a category-agnostic evaluation (never a category id in practice:
/// hotcoco uses the same placeholder).
pub(crate) const AGNOSTIC: u64 = u64::MAX;

/// How a detection is compared with a ground truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Similarity {
    /// Box IoU.
    Box,
    /// Mask IoU.
    Mask,
    /// min(mask IoU, boundary IoU), as [`boundary_similarity`].
    Boundary { dilation_ratio: f64 },
}

/// What to run: the protocol of `format` with `sim`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Protocol {
    pub format: Format,
    pub sim: Similarity,
    /// pycocotools' `useCats`: false puts every category of an image in one cell.
    pub use_cats: bool,
    /// Detection caps (pycocotools' `maxDets`, sorted; the last one caps each cell), `None` for
    /// the tool's defaults.
    pub max_dets: Option<Vec<usize>>,
}

impl Protocol {
    /// The official protocol of `format` with `sim`, per category, at the default caps.
    pub fn new(format: Format, sim: Similarity) -> Self {
        Self {
            format,
            sim,
            use_cats: true,
            max_dets: None,
        }
    }
}

/// Precision and recall of a run, laid out as pycocotools' `eval["precision"]` /
/// `eval["recall"]` (`[T, R, K, A, M]` / `[T, K, A, M]`, C order; LVIS has M = 1).
pub(crate) struct Accumulated {
    pub params: hotcoco::Params,
    pub cat_ids: Vec<u64>,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
}

impl Accumulated {
    fn dims(&self) -> (usize, usize, usize, usize, usize) {
        (
            self.params.iou_thrs.len(),
            self.params.rec_thrs.len(),
            self.cat_ids.len(),
            self.params.area_ranges.len(),
            self.params.max_dets.len(),
        )
    }

    pub fn precision_at(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        let (_, nr, nk, na, nm) = self.dims();
        self.precision[(((t * nr + r) * nk + k) * na + a) * nm + m]
    }

    pub fn recall_at(&self, t: usize, k: usize, a: usize, m: usize) -> f64 {
        let (_, _, nk, na, nm) = self.dims();
        self.recall[((t * nk + k) * na + a) * nm + m]
    }

    /// AP of category slot `k`: area "all", the last detection cap, every threshold and recall
    /// point that exists; -1 without any.
    pub fn class_ap(&self, k: usize) -> f64 {
        let (nt, nr, _, _, nm) = self.dims();
        let a = self.params.all_area_idx();
        crate::mean_of_existing(
            (0..nt).flat_map(|t| (0..nr).map(move |r| self.precision_at(t, r, k, a, nm - 1))),
        )
    }
}

/// One cell's matches under one area range, detections in score order.
pub(crate) struct Cell {
    pub scores: Vec<f64>,
    /// `[T, D]`: matched to a ground truth whose id is not 0 (pycocotools tests the id).
    pub matched: Vec<bool>,
    /// `[T, D]`: neither a true nor a false positive.
    pub ignored: Vec<bool>,
    /// Ground truths that count in recall's denominator.
    pub num_gt: usize,
}

/// Descending score, stable, with -0 equal to +0 as numpy's mergesort of `-score` has it.
fn by_score_desc(a: f64, b: f64) -> Ordering {
    b.partial_cmp(&a).unwrap_or(Ordering::Equal)
}

fn score(a: &Annotation) -> f64 {
    a.score.unwrap_or(0.0)
}

/// The rules of `format`'s tool, read once.
struct Rules {
    lvis: bool,
    /// LVIS: (image, category) pairs whose detections are evaluated at all (federated).
    evaluated: HashSet<(u64, u64)>,
    /// LVIS: pairs where unmatched detections are ignored.
    not_exhaustive: HashSet<(u64, u64)>,
    /// The ground truth's categories: category-agnostic cells gather detections of these only.
    categories: HashSet<u64>,
}

impl Rules {
    fn new(gt: &COCO, format: Format) -> Self {
        let lvis = format == Format::Lvis;
        let (mut evaluated, mut not_exhaustive) = (HashSet::new(), HashSet::new());
        if lvis {
            evaluated.extend(
                gt.dataset
                    .annotations
                    .iter()
                    .map(|a| (a.image_id, a.category_id)),
            );
            for im in &gt.dataset.images {
                evaluated.extend(im.neg_category_ids.iter().map(|&c| (im.id, c)));
                not_exhaustive.extend(im.not_exhaustive_category_ids.iter().map(|&c| (im.id, c)));
            }
        }
        Self {
            lvis,
            evaluated,
            not_exhaustive,
            categories: gt.dataset.categories.iter().map(|c| c.id).collect(),
        }
    }

    fn keeps(&self, img: u64, cat: u64) -> bool {
        !self.lvis || self.evaluated.contains(&(img, cat))
    }
}

fn rle_of(coco: &COCO, ann: &Annotation) -> Rle {
    // An annotation without a mask never matches (pycocotools' `rleIou` gives -1 across canvases).
    coco.ann_to_rle(ann).unwrap_or(Rle {
        h: 0,
        w: 0,
        counts: Vec::new(),
    })
}

/// Row-major `[D, G]` similarities of a cell.
/// Row-major `[D, G]` similarities of a cell. Values below `floor`, the lowest IoU threshold,
/// only need to stay below it.
fn similarities(
    gt: &COCO,
    dt: &COCO,
    (dts, gts): (&[&Annotation], &[&Annotation]),
    iscrowd: &[bool],
    sim: Similarity,
    floor: f64,
) -> Vec<f64> {
    match sim {
        Similarity::Box => {
            let b = |a: &&Annotation| a.bbox.unwrap_or([0.0; 4]);
            let d: Vec<[f64; 4]> = dts.iter().map(b).collect();
            let g: Vec<[f64; 4]> = gts.iter().map(b).collect();
            bbox_iou_flat(&d, &g, iscrowd)
        }
        Similarity::Mask | Similarity::Boundary { .. } => {
            let d: Vec<Rle> = dts.iter().map(|a| rle_of(dt, a)).collect();
            let g: Vec<Rle> = gts.iter().map(|a| rle_of(gt, a)).collect();
            match sim {
                Similarity::Boundary { dilation_ratio } => {
                    boundary_similarity_from(&d, &g, iscrowd, dilation_ratio, floor)
                }
                _ => mask_iou_flat(&d, &g, iscrowd),
            }
        }
    }
}

/// The annotations of a cell: of one category, or with `cat` = [`AGNOSTIC`] every category of
/// the ground truth, grouped by category in id order and in array order within one, as the
/// official tools gather them; each kept only where `keep(category)`.
fn cell_anns(coco: &COCO, (img, cat): (u64, u64), keep: impl Fn(u64) -> bool) -> Vec<&Annotation> {
    if cat == AGNOSTIC {
        let mut v: Vec<&Annotation> = coco
            .get_ann_ids_for_img(img)
            .iter()
            .filter_map(|&id| coco.get_ann(id))
            .filter(|a| keep(a.category_id))
            .collect();
        v.sort_by_key(|a| a.category_id);
        v
    } else if keep(cat) {
        coco.get_ann_ids_for_img_cat(img, cat)
            .iter()
            .filter_map(|&id| coco.get_ann(id))
            .collect()
    } else {
        Vec::new()
    }
}

/// `evaluateImg` / `evaluate_img` of one cell under every area range.
#[allow(clippy::too_many_arguments)]
fn evaluate_cell(
    gt: &COCO,
    dt: &COCO,
    params: &hotcoco::Params,
    rules: &Rules,
    (img, cat): (u64, u64),
    max_det: usize,
    sim: Similarity,
) -> Option<Vec<Cell>> {
    let gts = cell_anns(gt, (img, cat), |c| rules.categories.contains(&c));
    let mut dts = cell_anns(dt, (img, cat), |c| {
        rules.categories.contains(&c) && rules.keeps(img, c)
    });
    if gts.is_empty() && dts.is_empty() {
        return None;
    }
    dts.sort_by(|a, b| by_score_desc(score(a), score(b)));
    dts.truncate(max_det);
    // pycocotools' `ignore` is the crowd flag; LVIS has no crowds, and its ignored ground
    // truths arrive with an area outside every range (see `prepare`).
    let iscrowd: Vec<bool> = gts.iter().map(|g| !rules.lvis && g.iscrowd).collect();
    let ious = if gts.is_empty() || dts.is_empty() {
        Vec::new()
    } else {
        let floor = params
            .iou_thrs
            .iter()
            .fold(f64::INFINITY, |m, &t| m.min(t.min(1.0 - 1e-10)));
        similarities(gt, dt, (&dts, &gts), &iscrowd, sim, floor)
    };
    let ng = gts.len();
    let nt = params.iou_thrs.len();
    let nd = dts.len();
    // LVIS ignores an unmatched detection of a category not exhaustively annotated (its own
    // category, also in a category-agnostic cell).
    let unmatched_ignored: Vec<bool> = dts
        .iter()
        .map(|d| rules.lvis && rules.not_exhaustive.contains(&(img, d.category_id)))
        .collect();
    let cells = params
        .area_ranges
        .iter()
        .map(|ar| {
            let [lo, hi] = ar.range;
            let out = |area: Option<f64>| {
                let a = area.unwrap_or(0.0);
                a < lo || a > hi
            };
            let ig: Vec<bool> = gts
                .iter()
                .zip(&iscrowd)
                .map(|(g, &c)| c || out(g.area))
                .collect();
            let mut order: Vec<usize> = (0..ng).collect();
            order.sort_by_key(|&i| ig[i]);
            let mut gt_matched = vec![false; nt * ng];
            let mut matched = vec![false; nt * nd];
            let mut ignored = vec![false; nt * nd];
            let mut dt_gt_id = vec![0u64; nt * nd];
            if !ious.is_empty() {
                for (t, &thr) in params.iou_thrs.iter().enumerate() {
                    for di in 0..nd {
                        let mut best = thr.min(1.0 - 1e-10);
                        let mut m: Option<usize> = None;
                        for (gi, &g) in order.iter().enumerate() {
                            if gt_matched[t * ng + gi] && !iscrowd[g] {
                                continue;
                            }
                            if let Some(mi) = m
                                && !ig[order[mi]]
                                && ig[g]
                            {
                                break;
                            }
                            let v = ious[di * ng + g];
                            if v < best {
                                continue;
                            }
                            best = v;
                            m = Some(gi);
                        }
                        if let Some(mi) = m {
                            let g = order[mi];
                            ignored[t * nd + di] = ig[g];
                            dt_gt_id[t * nd + di] = gts[g].id;
                            gt_matched[t * ng + mi] = true;
                        }
                    }
                }
            }
            for t in 0..nt {
                for (di, d) in dts.iter().enumerate() {
                    let k = t * nd + di;
                    matched[k] = dt_gt_id[k] != 0;
                    if dt_gt_id[k] == 0 && (out(d.area) || unmatched_ignored[di]) {
                        ignored[k] = true;
                    }
                }
            }
            Cell {
                scores: dts.iter().map(|d| score(d)).collect(),
                matched,
                ignored,
                num_gt: ig.iter().filter(|&&i| !i).count(),
            }
        })
        .collect();
    Some(cells)
}

/// Runs `protocol` on `gt` and `dt` as [`crate::prepare`] made them.
pub(crate) fn evaluate(gt: &COCO, dt: &COCO, protocol: &Protocol) -> Accumulated {
    evaluate_keeping_cells(gt, dt, protocol, false).0
}

/// [`evaluate`], also handing back with `keep` every cell's matches at area "all" as (image,
/// category slot, cell), sorted by image then category (what pooled AP reads).
pub(crate) fn evaluate_keeping_cells(
    gt: &COCO,
    dt: &COCO,
    protocol: &Protocol,
    keep: bool,
) -> (Accumulated, Vec<(u64, u64, Cell)>) {
    let Protocol {
        format,
        sim,
        use_cats,
        ref max_dets,
    } = *protocol;
    let mode = match format {
        Format::Lvis => hotcoco::EvalMode::Lvis,
        Format::Coco => hotcoco::EvalMode::Coco,
    };
    let mut params = mode.default_params(match sim {
        Similarity::Box => hotcoco::IouType::Bbox,
        Similarity::Mask | Similarity::Boundary { .. } => hotcoco::IouType::Segm,
    });
    if let Some(caps) = max_dets {
        params.max_dets = caps.clone();
        params.max_dets.sort_unstable();
    }
    let rules = Rules::new(gt, format);
    let cat_ids: Vec<u64> = if use_cats {
        let mut ids: Vec<u64> = rules.categories.iter().copied().collect();
        ids.sort_unstable();
        ids
    } else {
        vec![AGNOSTIC]
    };
    let slot = |cat: u64| if use_cats { cat } else { AGNOSTIC };
    // The images each category has a cell in, in image id order.
    let mut cells_of: HashMap<u64, Vec<u64>> = HashMap::new();
    for a in &gt.dataset.annotations {
        cells_of
            .entry(slot(a.category_id))
            .or_default()
            .push(a.image_id);
    }
    for a in &dt.dataset.annotations {
        if rules.categories.contains(&a.category_id) && rules.keeps(a.image_id, a.category_id) {
            cells_of
                .entry(slot(a.category_id))
                .or_default()
                .push(a.image_id);
        }
    }
    for imgs in cells_of.values_mut() {
        imgs.sort_unstable();
        imgs.dedup();
    }
    // lvis-api keeps every detection of an image (its cap came before); pycocotools the best
    // `maxDets[-1]` of a cell.
    let max_det = if rules.lvis {
        usize::MAX
    } else {
        params.max_dets.last().copied().unwrap_or(100)
    };
    let (nt, nr, na, nm) = (
        params.iou_thrs.len(),
        params.rec_thrs.len(),
        params.area_ranges.len(),
        params.max_dets.len(),
    );
    let all_area = params.all_area_idx();
    type PerCat = (Vec<f64>, Vec<f64>, Vec<(u64, u64, Cell)>);
    let per_cat: Vec<PerCat> = cat_ids
        .par_iter()
        .map(|&cat| {
            let imgs = cells_of.get(&cat).map_or(&[][..], Vec::as_slice);
            let (cell_imgs, cells): (Vec<u64>, Vec<Vec<Cell>>) = imgs
                .iter()
                .filter_map(|&img| {
                    evaluate_cell(gt, dt, &params, &rules, (img, cat), max_det, sim)
                        .map(|c| (img, c))
                })
                .unzip();
            // [T, R, A, M] and [T, A, M] for this category.
            let mut precision = vec![-1.0; nt * nr * na * nm];
            let mut recall = vec![-1.0; nt * na * nm];
            for a in 0..na {
                for (m, &cap) in params.max_dets.iter().enumerate() {
                    let cap = if rules.lvis { usize::MAX } else { cap };
                    accumulate_one(&cells, a, cap, &params, |t, q, rc| {
                        recall[(t * na + a) * nm + m] = rc;
                        for (r, v) in q.iter().enumerate() {
                            precision[((t * nr + r) * na + a) * nm + m] = *v;
                        }
                    });
                }
            }
            let kept = if keep {
                cells
                    .into_iter()
                    .zip(cell_imgs)
                    .map(|(mut c, img)| (img, cat, c.swap_remove(all_area)))
                    .collect()
            } else {
                Vec::new()
            };
            (precision, recall, kept)
        })
        .collect();
    let nk = cat_ids.len();
    let mut precision = vec![-1.0; nt * nr * nk * na * nm];
    let mut recall = vec![-1.0; nt * nk * na * nm];
    for (k, (p, r, _)) in per_cat.iter().enumerate() {
        for t in 0..nt {
            for a in 0..na {
                for m in 0..nm {
                    recall[((t * nk + k) * na + a) * nm + m] = r[(t * na + a) * nm + m];
                    for ri in 0..nr {
                        precision[(((t * nr + ri) * nk + k) * na + a) * nm + m] =
                            p[((t * nr + ri) * na + a) * nm + m];
                    }
                }
            }
        }
    }
    let mut kept: Vec<(u64, u64, Cell)> = per_cat.into_iter().flat_map(|(_, _, c)| c).collect();
    kept.sort_by_key(|&(img, cat, _)| (img, cat));
    let acc = Accumulated {
        params,
        cat_ids,
        precision,
        recall,
    };
    (acc, kept)
}

/// `accumulate` for one category, area range and detection cap: hands `store` each threshold's
/// precision at the recall points and its final recall. Stores nothing when no ground truth
/// counts, which leaves -1.
fn accumulate_one(
    cells: &[Vec<Cell>],
    a: usize,
    cap: usize,
    params: &hotcoco::Params,
    mut store: impl FnMut(usize, &[f64], f64),
) {
    let cells: Vec<&Cell> = cells.iter().map(|c| &c[a]).collect();
    if cells.is_empty() {
        return;
    }
    let num_gt: usize = cells.iter().map(|c| c.num_gt).sum();
    if num_gt == 0 {
        return;
    }
    let mut order: Vec<(f64, usize, usize)> = cells
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| {
            c.scores
                .iter()
                .take(cap)
                .enumerate()
                .map(move |(d, &s)| (s, ci, d))
        })
        .collect();
    order.sort_by(|x, y| by_score_desc(x.0, y.0));
    let nd = order.len();
    let mut rc = vec![0.0; nd];
    let mut pr = vec![0.0; nd];
    let mut q = vec![0.0; params.rec_thrs.len()];
    for t in 0..params.iou_thrs.len() {
        let (mut tp, mut fp) = (0u64, 0u64);
        for (i, &(_, ci, d)) in order.iter().enumerate() {
            let c = cells[ci];
            let k = t * c.scores.len() + d;
            if !c.ignored[k] {
                if c.matched[k] {
                    tp += 1;
                } else {
                    fp += 1;
                }
            }
            let (tpf, fpf) = (tp as f64, fp as f64);
            rc[i] = tpf / num_gt as f64;
            pr[i] = tpf / (fpf + tpf + f64::EPSILON);
        }
        let recall = rc.last().copied().unwrap_or(0.0);
        for i in (1..nd).rev() {
            if pr[i] > pr[i - 1] {
                pr[i - 1] = pr[i];
            }
        }
        for (r, &thr) in params.rec_thrs.iter().enumerate() {
            let i = rc.partition_point(|&x| x < thr);
            q[r] = pr.get(i).copied().unwrap_or(0.0);
        }
        store(t, &q, recall);
    }
}

/// numpy's `np.mean` of a 1-D float64 array: pairwise summation (`pairwise_sum` in numpy's
/// `loops_utils.h.src`: a plain loop under 8 values, 8 interleaved partial sums up to 128, halves
/// cut at a multiple of 8 above), then one division.
fn numpy_mean(values: &[f64]) -> f64 {
    fn sum(v: &[f64]) -> f64 {
        let n = v.len();
        if n < 8 {
            v.iter().fold(0.0, |s, &x| s + x)
        } else if n <= 128 {
            let mut r = [0.0f64; 8];
            r.copy_from_slice(&v[..8]);
            let full = n - n % 8;
            for chunk in v[8..full].chunks_exact(8) {
                for (acc, &x) in r.iter_mut().zip(chunk) {
                    *acc += x;
                }
            }
            let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            for &x in &v[full..] {
                s += x;
            }
            s
        } else {
            let half = n / 2;
            let cut = half - half % 8;
            sum(&v[..cut]) + sum(&v[cut..])
        }
    }
    if values.is_empty() {
        -1.0
    } else {
        sum(values) / values.len() as f64
    }
}

/// One summary entry: key, AP (else AR), IoU threshold (all when `None`), area range, detection
/// cap (all when `None`), LVIS frequency group.
type EntryOf<K> = (
    K,
    bool,
    Option<f64>,
    &'static str,
    Option<usize>,
    Option<Frequency>,
);
type Entry = EntryOf<String>;

/// The entries of pycocotools' `summarize` / lvis-api's `summarize`, keyed as
/// [`crate::Evaluation::stats`].
fn official_entries(format: Format) -> Vec<Entry> {
    use Frequency::{Common, Frequent, Rare};
    let rows: Vec<EntryOf<&str>> = match format {
        Format::Coco => vec![
            ("AP", true, None, "all", Some(100), None),
            ("AP50", true, Some(0.5), "all", Some(100), None),
            ("AP75", true, Some(0.75), "all", Some(100), None),
            ("APs", true, None, "small", Some(100), None),
            ("APm", true, None, "medium", Some(100), None),
            ("APl", true, None, "large", Some(100), None),
            ("AR1", false, None, "all", Some(1), None),
            ("AR10", false, None, "all", Some(10), None),
            ("AR100", false, None, "all", Some(100), None),
            ("ARs", false, None, "small", Some(100), None),
            ("ARm", false, None, "medium", Some(100), None),
            ("ARl", false, None, "large", Some(100), None),
        ],
        Format::Lvis => vec![
            ("AP", true, None, "all", None, None),
            ("AP50", true, Some(0.5), "all", None, None),
            ("AP75", true, Some(0.75), "all", None, None),
            ("APs", true, None, "small", None, None),
            ("APm", true, None, "medium", None, None),
            ("APl", true, None, "large", None, None),
            ("APr", true, None, "all", None, Some(Rare)),
            ("APc", true, None, "all", None, Some(Common)),
            ("APf", true, None, "all", None, Some(Frequent)),
            ("AR@300", false, None, "all", None, None),
            ("ARs@300", false, None, "small", None, None),
            ("ARm@300", false, None, "medium", None, None),
            ("ARl@300", false, None, "large", None, None),
        ],
    };
    rows.into_iter()
        .map(|(k, ap, iou, area, m, g)| (k.to_string(), ap, iou, area, m, g))
        .collect()
}

/// mmdetection's proposal metric from pycocotools' stats at `maxDets = nums`: `AR@n` for each
/// cap, then `ARs@N`, `ARm@N`, `ARl@N` at the largest (`AR_s@1000` ... in mmdetection's log).
pub(crate) fn proposal_entries(nums: &[usize]) -> Vec<Entry> {
    let mut nums = nums.to_vec();
    nums.sort_unstable();
    let last = nums.last().copied();
    let mut out: Vec<Entry> = nums
        .iter()
        .map(|&n| (format!("AR@{n}"), false, None, "all", Some(n), None))
        .collect();
    if let Some(n) = last {
        for (letter, area) in [("s", "small"), ("m", "medium"), ("l", "large")] {
            out.push((format!("AR{letter}@{n}"), false, None, area, Some(n), None));
        }
    }
    out
}

/// pycocotools' `summarize` / lvis-api's `summarize`, keyed as [`crate::Evaluation::stats`].
/// `frequency` gives each category's group (LVIS).
pub(crate) fn summarize(
    acc: &Accumulated,
    format: Format,
    frequency: &HashMap<u64, Frequency>,
) -> Vec<(String, f64)> {
    summarize_entries(acc, &official_entries(format), frequency)
}

/// The means of `entries` over `acc` (the values above -1, numpy's order), -1 where none.
pub(crate) fn summarize_entries(
    acc: &Accumulated,
    entries: &[Entry],
    frequency: &HashMap<u64, Frequency>,
) -> Vec<(String, f64)> {
    let (nt, nr, nk, _, nm) = acc.dims();
    let p = &acc.params;
    entries
        .iter()
        .map(|&(ref key, ap, iou, area, max_det, group)| {
            let ts: Vec<usize> = (0..nt)
                .filter(|&t| iou.is_none_or(|v| p.iou_thrs[t] == v))
                .collect();
            let ms: Vec<usize> = match max_det {
                Some(cap) => (0..nm).filter(|&m| p.max_dets[m] == cap).collect(),
                None => (0..nm).collect(),
            };
            let ks: Vec<usize> = (0..nk)
                .filter(|&k| group.is_none_or(|g| frequency.get(&acc.cat_ids[k]) == Some(&g)))
                .collect();
            let mut values = Vec::new();
            if let Some(a) = p.area_range_idx(area) {
                for &t in &ts {
                    if ap {
                        for r in 0..nr {
                            for &k in &ks {
                                for &m in &ms {
                                    values.push(acc.precision_at(t, r, k, a, m));
                                }
                            }
                        }
                    } else {
                        for &k in &ks {
                            for &m in &ms {
                                values.push(acc.recall_at(t, k, a, m));
                            }
                        }
                    }
                }
            }
            values.retain(|&v| v > -1.0);
            (key.clone(), numpy_mean(&values))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::{IouType, prepare};
    use seesaw_data::{Dataset, load_results};

    fn fixture(case: &str, name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../seesaw-data/tests/fixtures/eval")
            .join(case)
            .join(name)
    }

    fn official(path: &Path, key: &str) -> Vec<(String, f64)> {
        let text = std::fs::read_to_string(path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v[key]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
            .collect()
    }

    fn coco_key(k: &str) -> &str {
        match k {
            "AR@1" => "AR1",
            "AR@10" => "AR10",
            "AR@100" => "AR100",
            "ARs@100" => "ARs",
            "ARm@100" => "ARm",
            "ARl@100" => "ARl",
            k => k,
        }
    }

    fn run(case: &str, fmt: &str, iou: IouType, sim: Similarity) -> Vec<(String, f64)> {
        let gt = Dataset::load(&fixture(case, &format!("{fmt}_gt.json"))).unwrap();
        let dets = load_results(&fixture(case, &format!("{fmt}_dt.json"))).unwrap();
        let format = gt.format();
        let hot_gt = prepare::ground_truth(&gt, format);
        let dt = prepare::detections(&hot_gt, dets, format, iou).unwrap();
        let acc = evaluate(&hot_gt, &dt, &Protocol::new(format, sim));
        let freq = gt
            .categories
            .iter()
            .filter_map(|c| Some((c.id, c.frequency?)))
            .collect();
        summarize(&acc, format, &freq)
    }

    fn compare(
        got: &[(String, f64)],
        want: &[(String, f64)],
        what: &str,
        failures: &mut Vec<String>,
    ) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (k, v) in want {
            let ours = got
                .iter()
                .find(|(g, _)| g == coco_key(k))
                .map_or(f64::NAN, |x| x.1);
            if ours.to_bits() != v.to_bits() {
                failures.push(format!("{what} {k}: ours {ours} official {v}"));
            }
        }
    }

    /// With the official similarities, the protocol gives the official numbers, bit for bit.
    #[test]
    fn box_and_mask_similarities_give_the_official_stats() {
        let mut failures = Vec::new();
        for case in ["tiny", "edge"] {
            for (fmt, tool, key) in [
                ("lvis", "lvis-api", "stats"),
                ("coco", "pycocotools", "stats_named"),
            ] {
                for (iou, sim) in [
                    (IouType::Bbox, Similarity::Box),
                    (IouType::Segm, Similarity::Mask),
                ] {
                    let got = run(case, fmt, iou, sim);
                    let want = official(&fixture(case, &format!("{tool}_{iou}.json")), key);
                    compare(&got, &want, &format!("{case} {fmt} {iou}"), &mut failures);
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn numpy_mean_sums_pairwise() {
        // 1e16 then ones: a serial sum loses every 1.0, numpy's pairwise one keeps some.
        let mut v = vec![1e16];
        v.extend(std::iter::repeat_n(1.0, 199));
        let serial = v.iter().sum::<f64>() / 200.0;
        let numpy = numpy_mean(&v);
        assert_ne!(numpy.to_bits(), serial.to_bits());
        assert_eq!(numpy_mean(&[]), -1.0);
        assert_eq!(numpy_mean(&[0.25, 0.75]), 0.5);
    }
}
