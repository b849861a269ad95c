//! The rules a well-formed annotation or result file obeys beyond its JSON types.
//!
//! Each rule reports the first record that breaks it, naming file, JSON path and value.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::dataset::{Annotation, Dataset, Format, Rle, RleCounts, Segmentation};
use crate::error::{DataError, JsonPath, Result};

impl Dataset {
    /// Checks ids, references, boxes, areas and masks; `file` is only used in messages.
    pub fn validate(&self, file: &Path) -> Result<()> {
        let bad = |path: JsonPath, msg: String| DataError::invalid(file, path, msg);

        let mut cat_ids = HashSet::with_capacity(self.categories.len());
        let lvis = self.format() == Format::Lvis;
        for (i, c) in self.categories.iter().enumerate() {
            let at = JsonPath::item("categories", i);
            if !cat_ids.insert(c.id) {
                return Err(bad(
                    at.field("id"),
                    format!("duplicate category id {}", c.id),
                ));
            }
            if lvis && c.frequency.is_none() {
                return Err(bad(
                    at.field("frequency"),
                    "missing: other categories have a frequency, so this is an LVIS file and \
                     every category needs one (r, c or f)"
                        .into(),
                ));
            }
        }

        let mut images: HashMap<u64, (u32, u32)> = HashMap::with_capacity(self.images.len());
        for (i, im) in self.images.iter().enumerate() {
            let at = JsonPath::item("images", i);
            if images.insert(im.id, (im.height, im.width)).is_some() {
                return Err(bad(at.field("id"), format!("duplicate image id {}", im.id)));
            }
            if im.width == 0 || im.height == 0 {
                return Err(bad(
                    at.field(if im.width == 0 { "width" } else { "height" }),
                    format!("image size must be positive ({}x{})", im.width, im.height),
                ));
            }
            for (field, list) in [
                ("neg_category_ids", &im.neg_category_ids),
                (
                    "not_exhaustive_category_ids",
                    &im.not_exhaustive_category_ids,
                ),
            ] {
                for (k, id) in list.iter().flatten().enumerate() {
                    if !cat_ids.contains(id) {
                        return Err(bad(
                            at.field(field).index(k),
                            format!("unknown category id {id}"),
                        ));
                    }
                }
            }
        }

        let mut ann_ids = HashSet::with_capacity(self.annotations.len());
        for (i, a) in self.annotations.iter().enumerate() {
            let at = JsonPath::item("annotations", i);
            if !ann_ids.insert(a.id) {
                return Err(bad(
                    at.field("id"),
                    format!("duplicate annotation id {}", a.id),
                ));
            }
            let Some(&(h, w)) = images.get(&a.image_id) else {
                return Err(bad(
                    at.field("image_id"),
                    format!("unknown image id {}", a.image_id),
                ));
            };
            if !cat_ids.contains(&a.category_id) {
                return Err(bad(
                    at.field("category_id"),
                    format!("unknown category id {}", a.category_id),
                ));
            }
            check_annotation(a, h, w, &at).map_err(|(p, m)| bad(p, m))?;
        }
        Ok(())
    }
}

impl Dataset {
    /// In an LVIS file (its categories carry `frequency`), the first image without
    /// `neg_category_ids` or `not_exhaustive_category_ids` (absent or null): the path of the
    /// missing list and what it means. `None` for a COCO file or when every image has both.
    ///
    /// LVIS evaluation reads both lists on every image and lvis-api refuses a file without
    /// them (`KeyError` in `LVISEval`); read as empty, every false positive on a category
    /// absent from an image would be ignored.
    pub fn missing_lvis_list(&self) -> Option<(JsonPath, String)> {
        if self.format() != Format::Lvis {
            return None;
        }
        let lacks = |im: &crate::dataset::Image| {
            if im.neg_category_ids.is_none() {
                Some("neg_category_ids")
            } else if im.not_exhaustive_category_ids.is_none() {
                Some("not_exhaustive_category_ids")
            } else {
                None
            }
        };
        let (i, field) = self
            .images
            .iter()
            .enumerate()
            .find_map(|(i, im)| lacks(im).map(|f| (i, f)))?;
        let count = self
            .images
            .iter()
            .filter(|im| lacks(im) == Some(field))
            .count();
        let meaning = if field == "neg_category_ids" {
            "the categories verified absent from the image, whose detections there count as \
             false positives; read as empty, every false positive on a category absent from \
             the image would be ignored"
        } else {
            "the categories whose instances are not all annotated in the image, whose \
             unmatched detections there are ignored; read as empty, they would count as false \
             positives"
        };
        Some((
            JsonPath::item("images", i).field(field),
            format!(
                "missing ({count} of {} images lack it). This is an LVIS file (its categories \
                 carry `frequency`), and LVIS evaluation needs this list on every image: \
                 {meaning}. lvis-api refuses such a file. Write the list (`[]` when no category \
                 was checked), or remove the categories' `frequency` to use the file as COCO",
                self.images.len()
            ),
        ))
    }

    /// [`Dataset::missing_lvis_list`] as an error naming `file`.
    pub fn check_lvis_lists(&self, file: &Path) -> Result<()> {
        match self.missing_lvis_list() {
            Some((path, message)) => Err(DataError::invalid(file, path, message)),
            None => Ok(()),
        }
    }
}

type Problem = (JsonPath, String);

fn check_annotation(a: &Annotation, h: u32, w: u32, at: &JsonPath) -> Result<(), Problem> {
    check_bbox(&a.bbox, &at.field("bbox"))?;
    if !a.area.is_finite() || a.area < 0.0 {
        return Err((
            at.field("area"),
            format!("must be a finite non-negative number ({:?})", a.area),
        ));
    }
    for (field, flag) in [("iscrowd", a.iscrowd), ("ignore", a.ignore)] {
        if let Some(c) = flag
            && c > 1
        {
            return Err((at.field(field), format!("must be 0 or 1 ({c})")));
        }
    }
    if let Some(seg) = &a.segmentation {
        check_segmentation(seg, h, w, &at.field("segmentation"))?;
    }
    Ok(())
}

/// A box must be finite with non-negative width and height.
pub(crate) fn check_bbox(b: &[f64; 4], at: &JsonPath) -> Result<(), Problem> {
    const NAMES: [&str; 4] = ["x", "y", "width", "height"];
    for (k, v) in b.iter().enumerate() {
        if !v.is_finite() {
            return Err((at.clone(), format!("{} is not finite ({v:?})", NAMES[k])));
        }
    }
    for k in [2, 3] {
        if b[k] < 0.0 {
            return Err((at.clone(), format!("{} is negative ({:?})", NAMES[k], b[k])));
        }
    }
    Ok(())
}

/// Polygons need at least 3 finite points; an RLE must match the image and its own size.
pub(crate) fn check_segmentation(
    seg: &Segmentation,
    h: u32,
    w: u32,
    at: &JsonPath,
) -> Result<(), Problem> {
    match seg {
        Segmentation::Polygons(polys) => {
            for (k, p) in polys.iter().enumerate() {
                let pat = at.index(k);
                if p.len() % 2 != 0 {
                    return Err((
                        pat,
                        format!("polygon has an odd number of coordinates ({})", p.len()),
                    ));
                }
                if p.len() < 6 {
                    return Err((
                        pat,
                        format!("polygon has fewer than 3 points ({})", p.len() / 2),
                    ));
                }
                if let Some(j) = p.iter().position(|v| !v.is_finite()) {
                    return Err((
                        pat.index(j),
                        format!("coordinate is not finite ({:?})", p[j]),
                    ));
                }
            }
            Ok(())
        }
        Segmentation::Rle(rle) => check_rle(rle, Some((h, w)), at, true),
    }
}

/// Checks an RLE's runs against its size, and its size against the image when given.
/// With `decode` false, a compressed string's runs are not decoded (only its characters are
/// checked): result files hold a mask per detection, and only mask evaluation needs them, so
/// it decodes them then ([`rle_runs_problem`]).
pub(crate) fn check_rle(
    rle: &Rle,
    image: Option<(u32, u32)>,
    at: &JsonPath,
    decode: bool,
) -> Result<(), Problem> {
    let [rh, rw] = rle.size;
    if let Some((h, w)) = image
        && (rh, rw) != (h, w)
    {
        return Err((
            at.field("size"),
            format!("RLE size [{rh}, {rw}] disagrees with the image ([{h}, {w}])"),
        ));
    }
    let total = u64::from(rh) * u64::from(rw);
    match &rle.counts {
        RleCounts::Uncompressed(runs) => {
            let sum: u64 = runs.iter().map(|&r| u64::from(r)).sum();
            // Short runs are read with the rest as background (pycocotools takes their area so,
            // but its mask IoU never returns on them).
            if sum > total {
                return Err((
                    at.field("counts"),
                    format!(
                        "run lengths sum to {sum}, past the {rh}x{rw} = {total} pixels of the mask"
                    ),
                ));
            }
        }
        RleCounts::Compressed(s) => {
            if let Some((k, ch)) = s.char_indices().find(|&(_, c)| !('0'..='o').contains(&c)) {
                return Err((
                    at.field("counts"),
                    format!("invalid character {ch:?} at offset {k} of a compressed RLE string"),
                ));
            }
            if decode && let Some(m) = rle_runs_problem(rle) {
                return Err((at.field("counts"), m));
            }
        }
    }
    Ok(())
}

/// Why a compressed RLE string does not decode to its size, or `None` when it does.
pub fn rle_runs_problem(rle: &Rle) -> Option<String> {
    match &rle.counts {
        RleCounts::Compressed(s) => hotcoco::mask::area_from_string(s, rle.size[0], rle.size[1])
            .err()
            .map(|e| format!("malformed compressed RLE: {e}")),
        RleCounts::Uncompressed(_) => None,
    }
}
