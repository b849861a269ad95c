//! Our records -> hotcoco's, with the rules of the official tool of each format.
//!
//! hotcoco equals pycocotools (COCO) bit for bit, and lvis-api (LVIS) on ordinary data. In LVIS
//! mode it departs from lvis-api 0.5.3 in four rules, corrected here before hotcoco sees the data:
//!
//! - (A) lvis-api drops detections whose area is not in (0, inf): `LVIS.get_ann_ids` filters
//!   on area, *after* `LVISResults` capped each image to its 300 best. We cap, drop, and hand
//!   hotcoco a set marked as already capped.
//! - (B) lvis-api honours the ground truth's `ignore` flag. hotcoco ignores a ground truth only
//!   by crowd flag or area range; a crowd would also change its IoU (IoA) and let it match
//!   twice, so an ignored ground truth instead gets an area above every range's upper bound,
//!   which ignores it in every range and changes nothing else (IoU never reads `area`).
//! - (C) lvis-api drops ground truth whose area is not in (0, inf), which also removes its
//!   category from the image's set of present categories. We drop it from the dataset.
//! - (D) LVIS has no crowd regions: `iscrowd` is cleared.

use std::collections::HashMap;

use seesaw_data::{Dataset, Detection, Format, RleCounts, Segmentation};

use crate::IouType;
use crate::error::{EvalError, Result};

/// lvis-api's `LVISResults(max_dets=300)`.
pub const LVIS_MAX_DETS_PER_IMAGE: usize = 300;

/// Above the largest area range bound of both tools (1e5 ** 2).
const IGNORED_AREA: f64 = f64::MAX;

/// The ground truth as hotcoco evaluates it under `format`'s rules.
pub fn ground_truth(gt: &Dataset, format: Format) -> hotcoco::COCO {
    let lvis = format == Format::Lvis;
    let images = gt
        .images
        .iter()
        .map(|im| hotcoco::Image {
            id: im.id,
            file_name: im.file_name.clone().unwrap_or_default(),
            height: im.height,
            width: im.width,
            neg_category_ids: im.neg_category_ids.clone().unwrap_or_default(),
            not_exhaustive_category_ids: im.not_exhaustive_category_ids.clone().unwrap_or_default(),
            ..Default::default()
        })
        .collect();
    let categories = gt
        .categories
        .iter()
        .map(|c| hotcoco::Category {
            id: c.id,
            name: c.name.clone(),
            supercategory: c.supercategory.clone(),
            frequency: c.frequency.map(|f| f.letter().to_string()),
            ..Default::default()
        })
        .collect();
    let annotations = gt
        .annotations
        .iter()
        // (C)
        .filter(|a| !lvis || (a.area > 0.0 && a.area < f64::INFINITY))
        .map(|a| {
            let ignored = lvis && a.ignore.unwrap_or(0) != 0;
            hotcoco::Annotation {
                id: a.id,
                image_id: a.image_id,
                category_id: a.category_id,
                bbox: Some(a.bbox),
                // (B)
                area: Some(if ignored { IGNORED_AREA } else { a.area }),
                segmentation: a.segmentation.as_ref().map(segmentation),
                // (D)
                iscrowd: !lvis && a.is_crowd(),
                ..Default::default()
            }
        })
        .collect();
    hotcoco::COCO::from_dataset(hotcoco::Dataset {
        info: None,
        images,
        annotations,
        categories,
        licenses: Vec::new(),
    })
}

fn segmentation(s: &Segmentation) -> hotcoco::Segmentation {
    match s {
        Segmentation::Polygons(p) => hotcoco::Segmentation::Polygon(p.clone()),
        Segmentation::Rle(r) => match &r.counts {
            RleCounts::Compressed(c) => hotcoco::Segmentation::CompressedRle {
                size: r.size,
                counts: c.clone(),
            },
            RleCounts::Uncompressed(c) => hotcoco::Segmentation::UncompressedRle {
                size: r.size,
                counts: c.clone(),
            },
        },
    }
}

/// Result masks go to hotcoco compressed, the one spelling the official tools read.
fn result_segmentation(s: &Segmentation) -> hotcoco::Segmentation {
    match s {
        Segmentation::Rle(r) => match &r.counts {
            RleCounts::Compressed(c) => hotcoco::Segmentation::CompressedRle {
                size: r.size,
                counts: c.clone(),
            },
            RleCounts::Uncompressed(c) => {
                let rle = hotcoco::Rle {
                    h: r.size[0],
                    w: r.size[1],
                    counts: c.clone(),
                };
                hotcoco::Segmentation::CompressedRle {
                    size: r.size,
                    counts: hotcoco::mask::rle_to_string(&rle),
                }
            }
        },
        // Refused by `detections` before it gets here.
        Segmentation::Polygons(p) => hotcoco::Segmentation::Polygon(p.clone()),
    }
}

/// The area lvis-api gives a detection: the box's when the first detection has a box, else
/// the mask's pixel count.
fn lvis_result_area(d: &Detection, boxes: bool) -> f64 {
    if boxes {
        return d.bbox.map_or(0.0, |b| b[2] * b[3]);
    }
    match &d.segmentation {
        Some(Segmentation::Rle(r)) => match &r.counts {
            RleCounts::Compressed(s) => {
                hotcoco::mask::area_from_string(s, r.size[0], r.size[1]).map_or(0.0, |a| a as f64)
            }
            RleCounts::Uncompressed(c) => c.iter().skip(1).step_by(2).map(|&v| f64::from(v)).sum(),
        },
        _ => 0.0,
    }
}

/// lvis-api's `limit_dets_per_image`: detections regrouped by image (in order of first
/// appearance), each image over the cap sorted by score (stable) and cut.
fn lvis_cap(dets: Vec<Detection>) -> Vec<Detection> {
    let mut order: Vec<u64> = Vec::new();
    let mut per_image: HashMap<u64, Vec<Detection>> = HashMap::new();
    for d in dets {
        per_image
            .entry(d.image_id)
            .or_insert_with(|| {
                order.push(d.image_id);
                Vec::new()
            })
            .push(d);
    }
    let mut out = Vec::new();
    for id in order {
        let Some(mut v) = per_image.remove(&id) else {
            continue;
        };
        if v.len() > LVIS_MAX_DETS_PER_IMAGE {
            v.sort_by(|a, b| b.score.total_cmp(&a.score));
            v.truncate(LVIS_MAX_DETS_PER_IMAGE);
        }
        out.extend(v);
    }
    out
}

/// The detections as hotcoco evaluates them against `gt` under `format`'s rules.
pub fn detections(
    gt: &hotcoco::COCO,
    dets: Vec<Detection>,
    format: Format,
    iou: IouType,
) -> Result<hotcoco::COCO> {
    for (index, d) in dets.iter().enumerate() {
        let missing = match iou {
            IouType::Bbox => d.bbox.is_none().then_some("bbox"),
            IouType::Segm => d.segmentation.is_none().then_some("segmentation"),
        };
        if let Some(field) = missing {
            return Err(EvalError::Results {
                index,
                field,
                message: format!("missing: needed for {iou} evaluation"),
            });
        }
        if let Some(Segmentation::Polygons(_)) = d.segmentation {
            return Err(EvalError::Results {
                index,
                field: "segmentation",
                message: "result masks must be RLE ({size, counts}), not polygons".into(),
            });
        }
    }
    let dets = if format == Format::Lvis {
        let capped = lvis_cap(dets);
        let boxes = capped.first().is_some_and(|d| d.bbox.is_some());
        // (A)
        capped
            .into_iter()
            .filter(|d| {
                let a = lvis_result_area(d, boxes);
                a > 0.0 && a < f64::INFINITY
            })
            .collect()
    } else {
        dets
    };
    let anns = dets
        .into_iter()
        .map(|d| hotcoco::Annotation {
            image_id: d.image_id,
            category_id: d.category_id,
            bbox: d.bbox,
            segmentation: d.segmentation.as_ref().map(result_segmentation),
            score: Some(d.score),
            ..Default::default()
        })
        .collect();
    let coco = gt
        .load_res_anns(anns)
        .map_err(|e| EvalError::Hotcoco(e.to_string()))?;
    Ok(if format == Format::Lvis {
        // Already capped above: hotcoco must not cap again (before our area filter).
        coco.cap_detections_per_image(None)
    } else {
        coco
    })
}
