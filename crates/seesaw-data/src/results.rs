//! Detection result files: the JSON list that `seesaw test`, mmdetection and detectron2 write
//! and that lvis-api / pycocotools evaluate.

use std::collections::HashMap;

use rayon::prelude::*;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Segmentation};
use crate::error::{DataError, JsonPath, Result};
use crate::io;
use crate::validate::{check_bbox, check_rle};

/// One detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]`; required for box evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
    /// An RLE mask; required for mask evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
    pub score: f64,
}

/// Reads a result file (`.json` or `.json.gz`) and checks each detection on its own (mask
/// strings are decoded only when masks are evaluated: see [`crate::rle_runs_problem`]).
pub fn load_results(file: &Path) -> Result<Vec<Detection>> {
    load_results_with(file, true)
}

/// A detection read without its mask: box evaluation skips every mask string unallocated.
#[derive(Deserialize)]
struct BoxDetection {
    image_id: u64,
    category_id: u64,
    #[serde(default)]
    bbox: Option<[f64; 4]>,
    score: f64,
}

/// [`load_results`], leaving masks out (`segmentation: None`) when `masks` is false.
pub fn load_results_with(file: &Path, masks: bool) -> Result<Vec<Detection>> {
    let t0 = std::time::Instant::now();
    let bytes = io::read_bytes(file)?;
    let t_read = t0.elapsed();
    let dets: Vec<Detection> = if masks {
        io::parse_json_array(file, &bytes)?
    } else {
        io::parse_json_array::<BoxDetection>(file, &bytes)?
            .into_iter()
            .map(|d| Detection {
                image_id: d.image_id,
                category_id: d.category_id,
                bbox: d.bbox,
                segmentation: None,
                score: d.score,
            })
            .collect()
    };
    drop(bytes);
    let t_parse = t0.elapsed();
    if let Some((i, (p, m))) = first_problem(&dets, |d| check_detection(d, None)) {
        return Err(DataError::invalid(
            file,
            JsonPath::root().index(i).join(&p),
            m,
        ));
    }
    io::log_load_times(file, t0, t_read, t_parse);
    Ok(dets)
}

/// The first detection (by index) that `check` rejects, checked on every core.
fn first_problem<F>(dets: &[Detection], check: F) -> Option<(usize, (JsonPath, String))>
where
    F: Fn(&Detection) -> Result<(), (JsonPath, String)> + Sync,
{
    dets.par_iter()
        .enumerate()
        .filter_map(|(i, d)| check(d).err().map(|e| (i, e)))
        .min_by_key(|(i, _)| *i)
}

/// Writes a result file atomically.
pub fn save_results(file: &Path, dets: &[Detection]) -> Result<()> {
    io::write_json(file, dets)
}

/// Checks results against the ground truth they are to be evaluated on: every image and
/// category must exist there and every mask must have its image's size.
pub fn check_results_against(file: &Path, dets: &[Detection], gt: &Dataset) -> Result<()> {
    let images: HashMap<u64, (u32, u32)> = gt
        .images
        .iter()
        .map(|im| (im.id, (im.height, im.width)))
        .collect();
    let cats = gt.category_index();
    let check = |d: &Detection| -> Result<(), (JsonPath, String)> {
        let Some(&(h, w)) = images.get(&d.image_id) else {
            return Err((
                JsonPath::root().field("image_id"),
                format!("image id {} is not in the ground truth", d.image_id),
            ));
        };
        if !cats.contains_key(&d.category_id) {
            return Err((
                JsonPath::root().field("category_id"),
                format!("category id {} is not in the ground truth", d.category_id),
            ));
        }
        // The runs were checked on loading; only the size depends on the ground truth.
        if let Some(Segmentation::Rle(r)) = &d.segmentation
            && r.size != [h, w]
        {
            return Err((
                JsonPath::root().field("segmentation").field("size"),
                format!(
                    "RLE size [{}, {}] disagrees with the image ([{h}, {w}])",
                    r.size[0], r.size[1]
                ),
            ));
        }
        Ok(())
    };
    first_problem(dets, check).map_or(Ok(()), |(i, (p, m))| {
        Err(DataError::invalid(
            file,
            JsonPath::root().index(i).join(&p),
            m,
        ))
    })
}

/// Checks one detection on its own; paths are relative to the detection.
fn check_detection(d: &Detection, image: Option<(u32, u32)>) -> Result<(), (JsonPath, String)> {
    let at = &JsonPath::root();
    if !d.score.is_finite() {
        return Err((at.field("score"), format!("not finite ({:?})", d.score)));
    }
    if let Some(b) = &d.bbox {
        check_bbox(b, &at.field("bbox"))?;
    }
    match &d.segmentation {
        None => {}
        Some(Segmentation::Rle(rle)) => check_rle(rle, image, &at.field("segmentation"), false)?,
        Some(Segmentation::Polygons(_)) => {
            return Err((
                at.field("segmentation"),
                "result masks must be RLE ({size, counts}), not polygons".into(),
            ));
        }
    }
    if d.bbox.is_none() && d.segmentation.is_none() {
        return Err((
            at.clone(),
            "a detection needs a bbox or a segmentation".into(),
        ));
    }
    Ok(())
}
