//! Seesaw's evaluation layer: LVIS AP (APr/APc/APf) and COCO AP for boxes and masks, equal to
//! lvis-api 0.5.3 and pycocotools 2.0.11, built on hotcoco (see [`prepare`] for the rules we
//! correct), plus per-class AP against training frequency.
//!
//! [`Evaluator`] takes detections in memory, so training can evaluate without writing JSON.
//! Besides the official evaluations: category-agnostic evaluation ([`Evaluator::use_categories`],
//! pycocotools' `useCats = 0`) and the recall of class-agnostic proposals
//! ([`proposal_recall`], mmdetection's proposal metric).

pub mod boundary;
pub mod confusion;
pub mod error;
pub mod fixed_ap;
pub mod prepare;
mod protocol;
pub mod quirks;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use seesaw_data::{Dataset, Detection, Format, Frequency};

pub use error::{EvalError, Result};

/// What is compared between a detection and a ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IouType {
    /// Box IoU.
    Bbox,
    /// Mask IoU.
    Segm,
    /// Boundary AP's similarity: min(mask IoU, boundary IoU), see [`boundary`].
    Boundary,
}

impl fmt::Display for IouType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IouType::Bbox => "bbox",
            IouType::Segm => "segm",
            IouType::Boundary => "boundary",
        })
    }
}

impl FromStr for IouType {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bbox" => Ok(IouType::Bbox),
            "segm" => Ok(IouType::Segm),
            "boundary" => Ok(IouType::Boundary),
            _ => Err(EvalError::Request(format!(
                "unknown IoU type {s:?} (expected bbox, segm or boundary)"
            ))),
        }
    }
}

/// One category's AP, with what the long tail needs beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassAp {
    pub id: u64,
    pub name: String,
    /// LVIS frequency group as the ground truth declares it.
    pub frequency: Option<Frequency>,
    /// Training images of the class, as the ground truth's `image_count` declares it.
    pub train_images: Option<u64>,
    /// AP over IoU 0.50:0.95, all areas, at the tool's detection cap; -1 without ground truth.
    pub ap: f64,
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The rules in force (proposal recall is always pycocotools').
    pub format: Format,
    pub iou_type: IouType,
    /// pycocotools' `useCats`: false when categories were ignored (every ground truth of an
    /// image against every detection of it); `per_class` is then empty.
    pub use_cats: bool,
    /// The official summary, in the official order: for LVIS `AP AP50 AP75 APs APm APl APr
    /// APc APf AR@300 ARs@300 ARm@300 ARl@300`, for COCO `AP AP50 AP75 APs APm APl AR1 AR10
    /// AR100 ARs ARm ARl`, for proposals `AR@100 AR@300 AR@1000 ARs@1000 ARm@1000 ARl@1000`.
    /// -1 where a stat has nothing to average.
    pub stats: Vec<(String, f64)>,
    /// AP per category of the ground truth, in its order (empty without categories).
    pub per_class: Vec<ClassAp>,
    /// The table as the official tool prints it.
    pub table: Vec<String>,
}

impl Evaluation {
    /// A summary stat by its key.
    pub fn stat(&self, key: &str) -> Option<f64> {
        self.stats.iter().find(|(k, _)| k == key).map(|&(_, v)| v)
    }

    /// `{"format": ..., "iou_type": ..., "use_cats": ..., "stats": {...}}`, as `seesaw eval
    /// --json` writes it.
    pub fn to_json(&self) -> serde_json::Value {
        let stats: serde_json::Map<String, serde_json::Value> = self
            .stats
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect();
        serde_json::json!({
            "format": self.format,
            "iou_type": self.iou_type.to_string(),
            "use_cats": self.use_cats,
            "stats": stats,
        })
    }

    /// Per-class AP as CSV: `category_id,name,frequency,train_images,ap`.
    pub fn per_class_csv(&self) -> String {
        let mut out = String::from("category_id,name,frequency,train_images,ap\n");
        for c in &self.per_class {
            let name = if c.name.contains([',', '"']) {
                format!("\"{}\"", c.name.replace('"', "\"\""))
            } else {
                c.name.clone()
            };
            out.push_str(&format!(
                "{},{},{},{},{}\n",
                c.id,
                name,
                c.frequency
                    .map(|f| f.letter().to_string())
                    .unwrap_or_default(),
                c.train_images.map(|n| n.to_string()).unwrap_or_default(),
                c.ap
            ));
        }
        out
    }
}

/// COCO rules read every ground truth's `iscrowd`: pycocotools fails without it
/// (`KeyError: 'iscrowd'`); we read it as 0, as mmdetection and detectron2 do, and say so.
fn warn_missing_iscrowd(gt: &Dataset) {
    let mut missing = gt
        .annotations
        .iter()
        .enumerate()
        .filter(|(_, a)| a.iscrowd.is_none());
    if let Some((first, _)) = missing.next() {
        tracing::warn!(
            "ground truth: {} annotations have no iscrowd (the first is annotations[{first}]); \
             read as 0 (not a crowd region), as mmdetection and detectron2 read it, where \
             pycocotools fails on the file (KeyError: 'iscrowd')",
            1 + missing.count()
        );
    }
}

/// Evaluates detections against one ground truth, under the rules of its format.
pub struct Evaluator {
    format: Format,
    gt: Arc<hotcoco::COCO>,
    classes: Vec<(u64, String, Option<Frequency>, Option<u64>)>,
    use_cats: bool,
    /// The annotation whose id is 0, which the official tools never match (see [`quirks`]).
    id_zero: Option<usize>,
    /// The first evaluated annotation without a mask, which mask evaluation cannot use.
    without_mask: Option<usize>,
}

impl Evaluator {
    /// Prepares `gt`; the format is detected from it (LVIS categories carry `frequency`)
    /// unless given. LVIS evaluation needs a frequency on every category.
    pub fn new(gt: &Dataset, format: Option<Format>) -> Result<Self> {
        let format = format.unwrap_or_else(|| gt.format());
        if format == Format::Lvis
            && let Some(i) = gt.categories.iter().position(|c| c.frequency.is_none())
        {
            return Err(EvalError::Request(format!(
                "LVIS evaluation needs a frequency on every category; categories[{i}] has none"
            )));
        }
        // A file is checked when loaded; this guards ground truth built in memory.
        if format == Format::Lvis
            && let Some((path, message)) = gt.missing_lvis_list()
        {
            return Err(EvalError::Request(format!(
                "ground truth: {path}: {message}"
            )));
        }
        if format == Format::Coco {
            warn_missing_iscrowd(gt);
        }
        Ok(Self {
            format,
            gt: Arc::new(prepare::ground_truth(gt, format)),
            classes: gt
                .categories
                .iter()
                .map(|c| (c.id, c.name.clone(), c.frequency, c.image_count))
                .collect(),
            use_cats: true,
            id_zero: quirks::annotations_with_id_zero(gt).first().copied(),
            // A missing segmentation or an empty polygon list (`Annotation::mask` is None);
            // only the annotations the protocol reads count (lvis-api drops some by area).
            without_mask: gt
                .annotations
                .iter()
                .position(|a| a.mask().is_none() && prepare::evaluated(a, format)),
        })
    }

    /// pycocotools' `useCats`: with `false`, categories are ignored and each image is one cell
    /// (every ground truth against every detection). COCO: pycocotools' numbers. LVIS: lvis-api
    /// 0.5.3's protocol with its `useCats = 0` path corrected (0.5.3 gathers nothing there): a
    /// detection still counts only where its own category is annotated or listed negative on the
    /// image, and is ignored unmatched where its own category is not exhaustive; APr, APc and
    /// APf are -1 (no categories, no frequency groups). No per-class AP, no Fixed AP.
    pub fn use_categories(mut self, use_cats: bool) -> Self {
        self.use_cats = use_cats;
        self
    }

    /// The rules in force.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether categories are evaluated (pycocotools' `useCats`).
    pub fn uses_categories(&self) -> bool {
        self.use_cats
    }

    /// Checks that the ground truth carries what an `iou` evaluation reads: masks, for mask and
    /// boundary evaluation (pycocotools and lvis-api stop with a KeyError without one).
    pub fn check_ground_truth(&self, iou: IouType) -> Result<()> {
        match (iou, self.without_mask) {
            (IouType::Segm | IouType::Boundary, Some(index)) => Err(EvalError::GroundTruth {
                index,
                field: "segmentation",
                message: format!("missing or an empty list: needed for {iou} evaluation"),
            }),
            _ => Ok(()),
        }
    }

    /// Evaluates `dets` (image and category ids must exist in the ground truth; see
    /// [`seesaw_data::check_results_against`]).
    pub fn evaluate(&self, dets: Vec<Detection>, iou: IouType) -> Result<Evaluation> {
        let sim = match iou {
            IouType::Boundary => {
                return self.evaluate_boundary(dets, boundary::DEFAULT_DILATION_RATIO);
            }
            IouType::Bbox => protocol::Similarity::Box,
            IouType::Segm => protocol::Similarity::Mask,
        };
        self.check_ground_truth(iou)?;
        // hotcoco matches an annotation whose id is 0 and has no `useCats = 0` for LVIS; the
        // protocol module keeps the official rules there.
        if self.id_zero.is_some() || !self.use_cats {
            return self.evaluate_protocol(dets, iou, sim);
        }
        let t0 = std::time::Instant::now();
        let dt = prepare::detections(&self.gt, dets, self.format, iou)?;
        let t_prepare = t0.elapsed();
        let hot_iou = hot_iou(iou);
        let mut ev = match self.format {
            Format::Lvis => hotcoco::COCOeval::new_lvis(self.gt.clone(), dt, hot_iou),
            Format::Coco => hotcoco::COCOeval::new(self.gt.clone(), dt, hot_iou),
        };
        ev.evaluate()
            .map_err(|e| EvalError::Hotcoco(e.to_string()))?;
        let t_match = t0.elapsed();
        ev.accumulate();
        ev.summarize_lines();
        tracing::debug!(
            "prepare {:.2} s, match {:.2} s, accumulate {:.2} s",
            t_prepare.as_secs_f64(),
            (t_match - t_prepare).as_secs_f64(),
            (t0.elapsed() - t_match).as_secs_f64()
        );
        let stats = summary(&ev);
        let table = table(self.format, &stats);
        Ok(Evaluation {
            format: self.format,
            iou_type: iou,
            use_cats: true,
            per_class: self.per_class_of(&ev),
            stats,
            table,
        })
    }

    /// Boundary AP at `dilation_ratio` (boundary-iou-api's default is
    /// [`boundary::DEFAULT_DILATION_RATIO`]): the mask evaluation's rules and stats, with
    /// detections matched by min(mask IoU, boundary IoU). Detections need masks, as for `segm`.
    pub fn evaluate_boundary(
        &self,
        dets: Vec<Detection>,
        dilation_ratio: f64,
    ) -> Result<Evaluation> {
        if !(dilation_ratio.is_finite() && dilation_ratio > 0.0) {
            return Err(EvalError::Request(format!(
                "the dilation ratio must be a positive number, not {dilation_ratio}"
            )));
        }
        self.check_ground_truth(IouType::Boundary)?;
        self.evaluate_protocol(
            dets,
            IouType::Boundary,
            protocol::Similarity::Boundary { dilation_ratio },
        )
    }

    /// The official protocol run by [`protocol`] with `sim`.
    fn evaluate_protocol(
        &self,
        dets: Vec<Detection>,
        iou: IouType,
        sim: protocol::Similarity,
    ) -> Result<Evaluation> {
        let t0 = std::time::Instant::now();
        let dt = prepare::detections(&self.gt, dets, self.format, iou)?;
        let t_prepare = t0.elapsed();
        let run = protocol::Protocol {
            use_cats: self.use_cats,
            ..protocol::Protocol::new(self.format, sim)
        };
        let acc = protocol::evaluate(&self.gt, &dt, &run);
        let frequency = self
            .classes
            .iter()
            .filter_map(|(id, _, f, _)| Some((*id, (*f)?)))
            .collect();
        let stats = protocol::summarize(&acc, self.format, &frequency);
        tracing::debug!(
            "prepare {:.2} s, match + accumulate {:.2} s",
            t_prepare.as_secs_f64(),
            (t0.elapsed() - t_prepare).as_secs_f64()
        );
        let table = table(self.format, &stats);
        let per_class = if self.use_cats {
            self.per_class(&acc.cat_ids, |k| acc.class_ap(k))
        } else {
            Vec::new()
        };
        Ok(Evaluation {
            format: self.format,
            iou_type: iou,
            use_cats: self.use_cats,
            per_class,
            stats,
            table,
        })
    }

    /// Per-class AP of an accumulated evaluation (empty before `accumulate`).
    fn per_class_of(&self, ev: &hotcoco::COCOeval) -> Vec<ClassAp> {
        let Some(acc) = ev.accumulated() else {
            return Vec::new();
        };
        let s = acc.shape;
        let ap_of = |k: usize| {
            mean_of_existing((0..s.t).flat_map(|t| {
                (0..s.r).map(move |r| acc.precision[acc.precision_idx(t, r, k, 0, s.m - 1)])
            }))
        };
        self.per_class(&acc.cat_ids, ap_of)
    }

    /// AP per category, `ap_of` the category at a slot of `cat_ids`: precision at every IoU
    /// threshold and recall point, area "all", the last detection cap, averaged over the entries
    /// that exist (as detectron2 reports it); -1 for a category without a slot.
    fn per_class(&self, cat_ids: &[u64], ap_of: impl Fn(usize) -> f64) -> Vec<ClassAp> {
        let slot: std::collections::HashMap<u64, usize> =
            cat_ids.iter().enumerate().map(|(k, &id)| (id, k)).collect();
        self.classes
            .iter()
            .map(|(id, name, frequency, train_images)| ClassAp {
                id: *id,
                name: name.clone(),
                frequency: *frequency,
                train_images: *train_images,
                ap: slot.get(id).map_or(-1.0, |&k| ap_of(k)),
            })
            .collect()
    }
}

/// mmdetection's proposal caps (`proposal_nums`).
pub const PROPOSAL_NUMS: [usize; 3] = [100, 300, 1000];

/// The recall of class-agnostic proposals, as mmdetection's `proposal` metric computes it:
/// pycocotools' box evaluation with `useCats = 0` and `maxDets = nums` (sorted), reporting
/// `AR@n` for each cap and `ARs@N`, `ARm@N`, `ARl@N` at the largest. pycocotools' rules
/// whatever the ground truth's format: an LVIS file is read as COCO without crowd regions
/// (its `ignore` flags mean nothing there, and no annotation is dropped for a zero area).
/// Proposals are [`Detection`]s with boxes; their categories only order ties, as in
/// pycocotools (mmdetection writes category 1 on every proposal).
pub fn proposal_recall(
    gt: &Dataset,
    proposals: Vec<Detection>,
    nums: &[usize],
) -> Result<Evaluation> {
    if nums.is_empty() || nums.contains(&0) {
        return Err(EvalError::Request(format!(
            "proposal numbers must be positive, at least one ({nums:?})"
        )));
    }
    let hot_gt = prepare::ground_truth(gt, Format::Coco);
    let dt = prepare::detections(&hot_gt, proposals, Format::Coco, IouType::Bbox)?;
    let run = protocol::Protocol {
        use_cats: false,
        max_dets: Some(nums.to_vec()),
        ..protocol::Protocol::new(Format::Coco, protocol::Similarity::Box)
    };
    let acc = protocol::evaluate(&hot_gt, &dt, &run);
    let stats = protocol::summarize_entries(
        &acc,
        &protocol::proposal_entries(nums),
        &std::collections::HashMap::new(),
    );
    let table = coco_table(&stats);
    Ok(Evaluation {
        format: Format::Coco,
        iou_type: IouType::Bbox,
        use_cats: false,
        stats,
        per_class: Vec::new(),
        table,
    })
}

fn hot_iou(iou: IouType) -> hotcoco::IouType {
    match iou {
        IouType::Bbox => hotcoco::IouType::Bbox,
        IouType::Segm | IouType::Boundary => hotcoco::IouType::Segm,
    }
}

/// The summary stats of a summarized evaluation, keyed and ordered as the official tool.
fn summary(ev: &hotcoco::COCOeval) -> Vec<(String, f64)> {
    ev.metric_keys()
        .iter()
        .zip(ev.stats().unwrap_or_default())
        .map(|(k, &v)| (k.to_string(), v))
        .collect()
}

/// The mean of the values above -1 (the official tools' "absent"), or -1 when there are none.
fn mean_of_existing(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .filter(|&v| v > -1.0)
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { -1.0 } else { sum / n as f64 }
}

/// The table the official tool of `format` prints.
fn table(format: Format, stats: &[(String, f64)]) -> Vec<String> {
    match format {
        Format::Lvis => lvis_table(stats),
        Format::Coco => coco_table(stats),
    }
}

/// The table pycocotools' `summarize` prints.
fn coco_table(stats: &[(String, f64)]) -> Vec<String> {
    stats
        .iter()
        .map(|(key, value)| {
            let (title, kind) = if key.starts_with("AP") {
                ("Average Precision", "(AP)")
            } else {
                ("Average Recall", "(AR)")
            };
            let iou = match key.as_str() {
                "AP50" => "0.50",
                "AP75" => "0.75",
                _ => "0.50:0.95",
            };
            let area = match key.chars().nth(2) {
                Some('s') => "small",
                Some('m') => "medium",
                Some('l') => "large",
                _ => "all",
            };
            let max_dets = match key.split_once('@') {
                Some((_, n)) => n.parse().unwrap_or(100),
                None => match key.as_str() {
                    "AR1" => 1,
                    "AR10" => 10,
                    _ => 100,
                },
            };
            format!(" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6} | maxDets={max_dets:>3} ] = {value:0.3}")
        })
        .collect()
}

/// The table lvis-api's `print_results` prints.
fn lvis_table(stats: &[(String, f64)]) -> Vec<String> {
    stats
        .iter()
        .map(|(key, value)| {
            let (title, kind) = if key.contains("AP") {
                ("Average Precision", "(AP)")
            } else {
                ("Average Recall", "(AR)")
            };
            let third = key.chars().nth(2);
            let iou = if third.is_some_and(|c| c.is_ascii_digit()) {
                format!("{:.2}", key[2..].parse::<f64>().unwrap_or(0.0) / 100.0)
            } else {
                "0.50:0.95".to_string()
            };
            let group = match third {
                Some(c @ ('r' | 'c' | 'f')) => c.to_string(),
                _ => "all".to_string(),
            };
            let area = match third {
                Some(c @ ('s' | 'm' | 'l')) => c.to_string(),
                _ => "all".to_string(),
            };
            format!(
                " {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6} | maxDets={:>3} catIds={group:>3}] = {value:0.3}",
                prepare::LVIS_MAX_DETS_PER_IMAGE
            )
        })
        .collect()
}
