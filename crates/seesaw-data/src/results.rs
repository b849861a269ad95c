//! Detection result files: the JSON list that `seesaw test`, mmdetection and detectron2 write
//! and that lvis-api / pycocotools evaluate.

use std::collections::HashMap;
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

/// Reads a result file (`.json` or `.json.gz`) and checks each detection on its own.
pub fn load_results(file: &Path) -> Result<Vec<Detection>> {
    let dets: Vec<Detection> = io::read_json(file)?;
    for (i, d) in dets.iter().enumerate() {
        check_detection(d, None, &JsonPath::root().index(i))
            .map_err(|(p, m)| DataError::invalid(file, p, m))?;
    }
    Ok(dets)
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
    for (i, d) in dets.iter().enumerate() {
        let at = JsonPath::root().index(i);
        let Some(&hw) = images.get(&d.image_id) else {
            return Err(DataError::invalid(
                file,
                at.field("image_id"),
                format!("image id {} is not in the ground truth", d.image_id),
            ));
        };
        if !cats.contains_key(&d.category_id) {
            return Err(DataError::invalid(
                file,
                at.field("category_id"),
                format!("category id {} is not in the ground truth", d.category_id),
            ));
        }
        check_detection(d, Some(hw), &at).map_err(|(p, m)| DataError::invalid(file, p, m))?;
    }
    Ok(())
}

fn check_detection(
    d: &Detection,
    image: Option<(u32, u32)>,
    at: &JsonPath,
) -> Result<(), (JsonPath, String)> {
    if !d.score.is_finite() {
        return Err((at.field("score"), format!("not finite ({:?})", d.score)));
    }
    if let Some(b) = &d.bbox {
        check_bbox(b, &at.field("bbox"))?;
    }
    match &d.segmentation {
        None => {}
        Some(Segmentation::Rle(rle)) => check_rle(rle, image, &at.field("segmentation"))?,
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
