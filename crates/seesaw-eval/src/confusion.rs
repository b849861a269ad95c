//! The detection confusion matrix of mmdetection's `tools/analysis_tools/confusion_matrix.py`
//! (`calculate_confusion_matrix` / `analyze_per_img_dets`): rows are ground-truth classes,
//! columns detected classes, and the last row and column "background".
//!
//! Per image and detected class, each detection scoring at least `score_thr` counts once in
//! the cell (ground truth's class, detection's class) of every ground truth it overlaps with
//! box IoU at least `tp_iou_thr` (a hit when the classes agree), and once in (background, its
//! class) when it overlaps none; every ground truth that no detection of its own class hit
//! counts once in (its class, background). As mmdetection, every ground-truth box of the image
//! takes part (crowd and ignored ones too) and the IoU is mmdetection 3.x's `bbox_overlaps`
//! (no +1, union at least 1e-6).

use std::collections::HashMap;

use seesaw_data::{Dataset, Detection};

use crate::error::{EvalError, Result};

/// The counts, `(C + 1) x (C + 1)`, classes in the ground truth's category order then
/// background.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfusionMatrix {
    pub category_ids: Vec<u64>,
    pub names: Vec<String>,
    /// `counts[gt][det]`.
    pub counts: Vec<Vec<u64>>,
}

/// One class's detections in an image: `(score, [x, y, w, h])`.
type ScoredBoxes = Vec<(f64, [f64; 4])>;

/// IoU of two `[x, y, w, h]` boxes (mmdetection 3.x's `bbox_overlaps` on their corners).
fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let (ax2, ay2, bx2, by2) = (a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]);
    let w = (ax2.min(bx2) - a[0].max(b[0])).max(0.0);
    let h = (ay2.min(by2) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] * a[3] + b[2] * b[3] - inter).max(1e-6);
    inter / union
}

/// The confusion matrix of `dets` against `gt`.
///
/// # Errors
/// [`EvalError::Results`] naming a detection without a box, or of a category or image the
/// ground truth does not have.
pub fn confusion_matrix(
    gt: &Dataset,
    dets: &[Detection],
    score_thr: f64,
    tp_iou_thr: f64,
) -> Result<ConfusionMatrix> {
    let index: HashMap<u64, usize> = gt
        .categories
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i))
        .collect();
    let c = gt.categories.len();
    let bg = c;
    let mut counts = vec![vec![0u64; c + 1]; c + 1];
    let images: HashMap<u64, usize> = gt
        .images
        .iter()
        .enumerate()
        .map(|(i, im)| (im.id, i))
        .collect();
    let mut gts: Vec<Vec<(usize, [f64; 4])>> = vec![Vec::new(); gt.images.len()];
    for (k, a) in gt.annotations.iter().enumerate() {
        let (Some(&img), Some(&cls)) = (images.get(&a.image_id), index.get(&a.category_id)) else {
            return Err(EvalError::GroundTruth {
                index: k,
                field: "image_id",
                message: format!(
                    "image {} or category {} is not in the file",
                    a.image_id, a.category_id
                ),
            });
        };
        gts[img].push((cls, a.bbox));
    }
    // Per image, per detected class, the detections (result-file order).
    let mut by_image: Vec<HashMap<usize, ScoredBoxes>> = vec![HashMap::new(); gt.images.len()];
    for (k, d) in dets.iter().enumerate() {
        let bbox = d.bbox.ok_or_else(|| EvalError::Results {
            index: k,
            field: "bbox",
            message: "the confusion matrix matches boxes; this detection has none".into(),
        })?;
        let cls = *index
            .get(&d.category_id)
            .ok_or_else(|| EvalError::Results {
                index: k,
                field: "category_id",
                message: format!("category {} is not in the ground truth", d.category_id),
            })?;
        let img = *images.get(&d.image_id).ok_or_else(|| EvalError::Results {
            index: k,
            field: "image_id",
            message: format!("image {} is not in the ground truth", d.image_id),
        })?;
        by_image[img].entry(cls).or_default().push((d.score, bbox));
    }
    for (img, per_class) in by_image.iter().enumerate() {
        let g = &gts[img];
        let mut hits = vec![0usize; g.len()];
        for (&cls, list) in per_class {
            for (score, b) in list {
                if *score < score_thr {
                    continue;
                }
                let mut matched = 0;
                for (j, (gc, gb)) in g.iter().enumerate() {
                    if iou(b, gb) >= tp_iou_thr {
                        matched += 1;
                        if *gc == cls {
                            hits[j] += 1;
                        }
                        counts[*gc][cls] += 1;
                    }
                }
                if matched == 0 {
                    counts[bg][cls] += 1;
                }
            }
        }
        for ((gc, _), &h) in g.iter().zip(&hits) {
            if h == 0 {
                counts[*gc][bg] += 1;
            }
        }
    }
    Ok(ConfusionMatrix {
        category_ids: gt.categories.iter().map(|c| c.id).collect(),
        names: gt.categories.iter().map(|c| c.name.clone()).collect(),
        counts,
    })
}

/// A CSV field, quoted when it holds a comma or a quote.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl ConfusionMatrix {
    /// Every class: a header row of the detected classes' names (then `background`), and a
    /// row per ground-truth class starting with its name.
    pub fn to_csv(&self) -> String {
        let mut names: Vec<String> = self.names.iter().map(|n| csv_field(n)).collect();
        names.push("background".into());
        let mut out = format!("gt \\ det,{}\n", names.join(","));
        for (name, row) in names.iter().zip(&self.counts) {
            let cells: Vec<String> = row.iter().map(u64::to_string).collect();
            out.push_str(&format!("{name},{}\n", cells.join(",")));
        }
        out
    }

    /// The `k` classes with the most ground truths (ties by category order), in that order.
    pub fn top_classes(&self, k: usize) -> Vec<usize> {
        let c = self.names.len();
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.counts[i].iter().sum::<u64>()));
        order.truncate(k);
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn det(image_id: u64, category_id: u64, bbox: [f64; 4], score: f64) -> Detection {
        Detection {
            image_id,
            category_id,
            bbox: Some(bbox),
            segmentation: None,
            score,
        }
    }

    #[test]
    fn counts_by_hand() {
        let gt: Dataset = serde_json::from_str(
            r#"{"images": [{"id": 1, "width": 100, "height": 100}],
                "annotations": [
                  {"id": 1, "image_id": 1, "category_id": 10, "bbox": [0, 0, 10, 10], "area": 100},
                  {"id": 2, "image_id": 1, "category_id": 20, "bbox": [50, 50, 10, 10], "area": 100},
                  {"id": 3, "image_id": 1, "category_id": 20, "bbox": [80, 0, 10, 10], "area": 100}],
                "categories": [{"id": 10, "name": "cat"}, {"id": 20, "name": "dog"}]}"#,
        )
        .expect("json");
        let dets = vec![
            // cat on the cat: a hit.
            det(1, 10, [0.0, 0.0, 10.0, 10.0], 0.9),
            // cat on the first dog (IoU 0.68): confusion dog -> cat.
            det(1, 10, [51.0, 51.0, 10.0, 10.0], 0.8),
            // dog on nothing: background -> dog.
            det(1, 20, [30.0, 30.0, 5.0, 5.0], 0.7),
            // below the score threshold: ignored.
            det(1, 20, [80.0, 0.0, 10.0, 10.0], 0.1),
        ];
        let m = confusion_matrix(&gt, &dets, 0.3, 0.5).expect("matrix");
        // rows gt (cat, dog, background), columns det (cat, dog, background)
        assert_eq!(m.counts, vec![vec![1, 0, 0], vec![1, 0, 2], vec![0, 1, 0]]);
        assert_eq!(m.top_classes(1), vec![1]);
        let csv = m.to_csv();
        assert!(
            csv.starts_with("gt \\ det,cat,dog,background\ncat,1,0,0\n"),
            "{csv}"
        );
        // A detection without a box is named.
        let mut bad = dets.clone();
        bad[2].bbox = None;
        let e = confusion_matrix(&gt, &bad, 0.3, 0.5)
            .expect_err("no box")
            .to_string();
        assert!(e.contains("[2].bbox"), "{e}");
    }
}
