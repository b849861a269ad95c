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
//!
//! One rule of both tools is kept and made explicit (see [`detections`]): the area of every
//! result comes from its box when the first result has one, else from its mask; a later result
//! without the box the first one chose is an error here, where the official tools stop with a
//! KeyError.

use std::collections::HashMap;

use rayon::prelude::*;

use seesaw_data::{Dataset, Detection, Format, RleCounts, Segmentation};

use crate::IouType;
use crate::error::{EvalError, Result};

/// lvis-api's `LVISResults(max_dets=300)`.
pub const LVIS_MAX_DETS_PER_IMAGE: usize = 300;

/// Above the largest area range bound of both tools (1e5 ** 2).
const IGNORED_AREA: f64 = f64::MAX;

/// Whether `format`'s tool evaluates the annotation at all: LVIS drops those whose area is not
/// in (0, inf) (C).
pub fn evaluated(a: &seesaw_data::Annotation, format: Format) -> bool {
    format != Format::Lvis || (a.area > 0.0 && a.area < f64::INFINITY)
}

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
        .filter(|a| evaluated(a, format))
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
fn result_segmentation(s: Segmentation) -> hotcoco::Segmentation {
    match s {
        Segmentation::Rle(r) => match r.counts {
            RleCounts::Compressed(counts) => hotcoco::Segmentation::CompressedRle {
                size: r.size,
                counts,
            },
            RleCounts::Uncompressed(counts) => {
                let rle = hotcoco::Rle {
                    h: r.size[0],
                    w: r.size[1],
                    counts,
                };
                hotcoco::Segmentation::CompressedRle {
                    size: r.size,
                    counts: hotcoco::mask::rle_to_string(&rle),
                }
            }
        },
        // Refused by `detections` before it gets here.
        Segmentation::Polygons(p) => hotcoco::Segmentation::Polygon(p),
    }
}

/// The area lvis-api gives a detection: the box's when the detections have boxes (see
/// [`area_source`]), else the mask's pixel count.
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

/// lvis-api's `limit_dets_per_image`: each image over the cap keeps its 300 best (by score,
/// ties to the earlier). lvis-api also regroups the list by image and sorts capped images by
/// score; neither changes any result (evaluation sorts each image's and category's detections
/// by score, stably), so the survivors keep their places here.
fn lvis_cap(mut dets: Vec<Detection>) -> Vec<Detection> {
    let Some(drop) = lvis_capped_away(&dets) else {
        return dets;
    };
    let mut k = 0;
    dets.retain(|_| {
        k += 1;
        !drop[k - 1]
    });
    dets
}

/// Which detections [`lvis_cap`] drops, `None` when no image is over the cap.
fn lvis_capped_away(dets: &[Detection]) -> Option<Vec<bool>> {
    let mut per_image: HashMap<u64, usize> = HashMap::new();
    for d in dets {
        *per_image.entry(d.image_id).or_default() += 1;
    }
    per_image.retain(|_, n| *n > LVIS_MAX_DETS_PER_IMAGE);
    if per_image.is_empty() {
        return None;
    }
    // Only the images over the cap are sorted.
    let mut over: HashMap<u64, Vec<usize>> = per_image.keys().map(|&id| (id, Vec::new())).collect();
    for (i, d) in dets.iter().enumerate() {
        if let Some(v) = over.get_mut(&d.image_id) {
            v.push(i);
        }
    }
    let mut drop = vec![false; dets.len()];
    for idx in over.values_mut() {
        idx.sort_by(|&a, &b| dets[b].score.total_cmp(&dets[a].score));
        for &i in &idx[LVIS_MAX_DETS_PER_IMAGE..] {
            drop[i] = true;
        }
    }
    Some(drop)
}

/// The result the official tool of `format` reads to decide where areas come from: the first
/// one, except that lvis-api first caps each image at 300 detections (regrouping the list by
/// image, in order of first appearance, and sorting a capped image by score, stably), so when
/// the first image is over the cap its best-scoring detection comes first.
pub fn first_result(dets: &[Detection], format: Format) -> Option<usize> {
    let first = dets.first()?;
    if format == Format::Coco {
        return Some(0);
    }
    let same: Vec<usize> = (0..dets.len())
        .filter(|&i| dets[i].image_id == first.image_id)
        .collect();
    if same.len() <= LVIS_MAX_DETS_PER_IMAGE {
        return Some(0);
    }
    // The earliest of the best scores, as a stable descending sort puts first.
    same.into_iter().reduce(|best, i| {
        if dets[i].score > dets[best].score {
            i
        } else {
            best
        }
    })
}

/// Where the official tools take every result's area from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AreaSource {
    /// `w * h` of each box: the first result (see [`first_result`]) has a box.
    Boxes,
    /// Each mask's pixel count: the first result has no box.
    Masks,
}

/// The official tools' one rule for a whole result file (pycocotools' `loadRes`, lvis-api's
/// `LVISResults`): areas come from boxes when the first result has one, else from masks. With
/// boxes, every result needs one: the official tools stop with a KeyError at the first that
/// lacks it, so it is an error naming it here rather than an area made up (0, which would drop
/// the detection, or its mask's, which would mix two rules in one file). lvis-api reads only
/// what its 300-per-image cap keeps, so a boxless result the cap drops is no error in LVIS.
pub fn area_source(dets: &[Detection], format: Format) -> Result<AreaSource> {
    let Some(first) = first_result(dets, format) else {
        return Ok(AreaSource::Boxes);
    };
    if dets[first].bbox.is_none() {
        return Ok(AreaSource::Masks);
    }
    let dropped = match format {
        Format::Lvis => lvis_capped_away(dets),
        Format::Coco => None,
    };
    let read = |i: usize| dropped.as_ref().is_none_or(|d| !d[i]);
    match (0..dets.len()).find(|&i| dets[i].bbox.is_none() && read(i)) {
        None => Ok(AreaSource::Boxes),
        Some(index) => Err(EvalError::Results {
            index,
            field: "bbox",
            message: format!(
                "missing, while the first result ([{first}]) has one: pycocotools and lvis-api \
                 take every result's area from its box when the first has a box (and stop with \
                 a KeyError here), from its mask when it has none; give every result a box, or \
                 none"
            ),
        }),
    }
}

/// The detections as hotcoco evaluates them against `gt` under `format`'s rules.
///
/// Where the area of each result comes from follows [`area_source`]: for masks with no box on
/// the first result, boxes are set aside so that every area is the mask's, as the official
/// tools have it.
pub fn detections(
    gt: &hotcoco::COCO,
    mut dets: Vec<Detection>,
    format: Format,
    iou: IouType,
) -> Result<hotcoco::COCO> {
    let t0 = std::time::Instant::now();
    check(&dets, iou)?;
    if iou != IouType::Bbox && area_source(&dets, format)? == AreaSource::Masks {
        for d in &mut dets {
            d.bbox = None;
        }
    }
    tracing::debug!(
        "checked {} detections in {:.2} s",
        dets.len(),
        t0.elapsed().as_secs_f64()
    );
    match format {
        Format::Lvis => lvis_detections(gt, lvis_cap(dets), iou),
        Format::Coco => load(gt, dets, iou),
    }
}

/// LVIS detections with no per-image cap (Fixed AP): lvis-api's `LVISResults(max_dets=-1)`.
pub fn detections_uncapped(
    gt: &hotcoco::COCO,
    dets: Vec<Detection>,
    iou: IouType,
) -> Result<hotcoco::COCO> {
    check(&dets, iou)?;
    lvis_detections(gt, dets, iou)
}

/// Every detection must carry what is evaluated; result masks must be RLE.
fn check(dets: &[Detection], iou: IouType) -> Result<()> {
    for (index, d) in dets.iter().enumerate() {
        let missing = match iou {
            IouType::Bbox => d.bbox.is_none().then_some("bbox"),
            IouType::Segm | IouType::Boundary => d.segmentation.is_none().then_some("segmentation"),
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
    // Result files are read without decoding their masks; mask evaluation decodes them.
    let needs_masks = iou != IouType::Bbox || dets.first().is_some_and(|d| d.bbox.is_none());
    if needs_masks {
        let bad = dets
            .par_iter()
            .enumerate()
            .filter_map(|(i, d)| match &d.segmentation {
                Some(Segmentation::Rle(r)) => seesaw_data::rle_runs_problem(r).map(|m| (i, m)),
                _ => None,
            })
            .min_by_key(|(i, _)| *i);
        if let Some((index, message)) = bad {
            return Err(EvalError::Results {
                index,
                field: "segmentation.counts",
                message,
            });
        }
    }
    Ok(())
}

/// (A): detections with an area outside (0, inf) are dropped, after any cap; the set is then
/// marked as capped so that hotcoco does not cap it again.
fn lvis_detections(
    gt: &hotcoco::COCO,
    dets: Vec<Detection>,
    iou: IouType,
) -> Result<hotcoco::COCO> {
    let t0 = std::time::Instant::now();
    let boxes = dets.first().is_some_and(|d| d.bbox.is_some());
    let kept: Vec<Detection> = dets
        .into_iter()
        .filter(|d| {
            let a = lvis_result_area(d, boxes);
            a > 0.0 && a < f64::INFINITY
        })
        .collect();
    tracing::debug!("capped and filtered in {:.2} s", t0.elapsed().as_secs_f64());
    Ok(load(gt, kept, iou)?.cap_detections_per_image(None))
}

/// Moves the detections into hotcoco's records. Box evaluation never reads a mask (the area
/// then comes from the box), so masks are not carried into it.
fn load(gt: &hotcoco::COCO, dets: Vec<Detection>, iou: IouType) -> Result<hotcoco::COCO> {
    let t0 = std::time::Instant::now();
    let anns: Vec<hotcoco::Annotation> = dets
        .into_iter()
        .map(|d| hotcoco::Annotation {
            image_id: d.image_id,
            category_id: d.category_id,
            bbox: d.bbox,
            segmentation: match iou {
                IouType::Bbox => None,
                IouType::Segm | IouType::Boundary => d.segmentation.map(result_segmentation),
            },
            score: Some(d.score),
            ..Default::default()
        })
        .collect();
    let t1 = std::time::Instant::now();
    let res = gt
        .load_res_anns(anns)
        .map_err(|e| EvalError::Hotcoco(e.to_string()));
    tracing::debug!(
        "converted in {:.2} s, loaded into hotcoco in {:.2} s",
        (t1 - t0).as_secs_f64(),
        t1.elapsed().as_secs_f64()
    );
    res
}
