//! LVIS v1 and COCO instance annotation files: the records and their reading and writing.
//!
//! One set of types serves both formats: LVIS is COCO plus per-image negative / not-exhaustive
//! category lists and per-category frequency statistics. Fields a format lacks are `None` and
//! are not written back, so a file round-trips in its own format.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::Result;
use crate::io;

/// A whole annotation file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licenses: Option<serde_json::Value>,
    pub images: Vec<Image>,
    pub annotations: Vec<Annotation>,
    pub categories: Vec<Category>,
}

/// One image record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: u64,
    pub width: u32,
    pub height: u32,
    /// COCO: path relative to the image folder. LVIS v1 has none (see [`Image::relative_path`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coco_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flickr_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_captured: Option<String>,
    /// LVIS: categories verified absent from the image (their detections are false positives).
    /// Required on every image of an LVIS file ([`Dataset::missing_lvis_list`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neg_category_ids: Option<Vec<u64>>,
    /// LVIS: categories whose instances are not all annotated in the image (their unmatched
    /// detections are ignored). Required on every image of an LVIS file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_exhaustive_category_ids: Option<Vec<u64>>,
}

impl Image {
    /// Where the image file lies under an image root: `file_name`, or for LVIS v1 (which has
    /// only `coco_url`) the last two parts of the URL (`val2017/000000397133.jpg`), as
    /// mmdetection derives it.
    pub fn relative_path(&self) -> Option<String> {
        if let Some(f) = &self.file_name {
            return Some(f.clone());
        }
        let url = self.coco_url.as_deref()?;
        let parts: Vec<&str> = url.rsplitn(3, '/').collect();
        match parts.as_slice() {
            [name, split, _] => Some(format!("{split}/{name}")),
            [name, ..] => Some((*name).to_string()),
            [] => None,
        }
    }
}

/// The LVIS frequency group of a category, by the number of training images it appears in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Frequency {
    /// 1-10 training images.
    #[serde(rename = "r")]
    Rare,
    /// 11-100 training images.
    #[serde(rename = "c")]
    Common,
    /// More than 100 training images.
    #[serde(rename = "f")]
    Frequent,
}

impl Frequency {
    /// All groups, rare first.
    pub const ALL: [Frequency; 3] = [Frequency::Rare, Frequency::Common, Frequency::Frequent];

    /// The group LVIS assigns to a category seen in `images` training images.
    pub fn from_image_count(images: u64) -> Self {
        match images {
            0..=10 => Frequency::Rare,
            11..=100 => Frequency::Common,
            _ => Frequency::Frequent,
        }
    }

    /// `r`, `c` or `f`.
    pub fn letter(self) -> char {
        match self {
            Frequency::Rare => 'r',
            Frequency::Common => 'c',
            Frequency::Frequent => 'f',
        }
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Frequency::Rare => "rare",
            Frequency::Common => "common",
            Frequency::Frequent => "frequent",
        })
    }
}

/// One category record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub id: u64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supercategory: Option<String>,
    /// LVIS only; its presence is what marks a file as LVIS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<Frequency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synonyms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub def: Option<String>,
}

/// One ground-truth instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub id: u64,
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]` in pixels.
    pub bbox: [f64; 4],
    pub area: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
    /// COCO only: 1 for a crowd region. LVIS has no crowd regions and no such field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iscrowd: Option<u8>,
    /// 1 marks a ground truth that lvis-api and pycocotools ignore in matching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<u8>,
}

impl Annotation {
    /// Whether the annotation is a COCO crowd region (`iscrowd` absent reads as 0, as
    /// mmdetection and detectron2 read it).
    pub fn is_crowd(&self) -> bool {
        self.iscrowd.unwrap_or(0) != 0
    }

    /// The instance's mask, or `None` when `segmentation` is absent or an empty list of
    /// polygons: both are "no mask" (pycocotools and lvis-api fail on either in mask
    /// evaluation, detectron2 drops such an instance when it trains masks), never an empty mask.
    pub fn mask(&self) -> Option<&Segmentation> {
        match &self.segmentation {
            Some(Segmentation::Polygons(p)) if p.is_empty() => None,
            other => other.as_ref(),
        }
    }
}

/// An instance mask as stored in JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Segmentation {
    /// Polygons, each `[x0, y0, x1, y1, ...]`; the mask is their union.
    Polygons(Vec<Vec<f64>>),
    /// Run-length encoding, column-major as in pycocotools.
    Rle(Rle),
}

/// A COCO run-length encoded mask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rle {
    /// `[height, width]`.
    pub size: [u32; 2],
    pub counts: RleCounts,
}

/// The two spellings of RLE counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RleCounts {
    /// pycocotools' compact string (`mask.encode` output).
    Compressed(String),
    /// Plain run lengths, starting with a run of zeros (used for COCO crowd regions).
    Uncompressed(Vec<u32>),
}

// Hand-written visitors instead of `#[serde(untagged)]`: untagged enums buffer the value and
// fail with "data did not match any variant", losing both the reason and the JSON path.
impl<'de> Deserialize<'de> for Segmentation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Segmentation;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of polygons or an RLE object {size, counts}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Segmentation, A::Error> {
                let mut polys = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(p) = seq.next_element::<Vec<f64>>()? {
                    polys.push(p);
                }
                Ok(Segmentation::Polygons(polys))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Segmentation, A::Error> {
                Rle::deserialize(de::value::MapAccessDeserializer::new(map)).map(Segmentation::Rle)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RleCounts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RleCounts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RLE string or a list of run lengths")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RleCounts, E> {
                Ok(RleCounts::Compressed(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<RleCounts, E> {
                Ok(RleCounts::Compressed(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RleCounts, A::Error> {
                let mut runs = Vec::with_capacity(seq.size_hint().unwrap_or(16));
                while let Some(r) = seq.next_element::<u32>()? {
                    runs.push(r);
                }
                Ok(RleCounts::Uncompressed(runs))
            }
        }
        d.deserialize_any(V)
    }
}

/// Which official tool's conventions a file follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Lvis,
    Coco,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Lvis => "lvis",
            Format::Coco => "coco",
        })
    }
}

impl Dataset {
    /// Reads a `.json` or `.json.gz` file and checks it with [`Dataset::validate`] and, for an
    /// LVIS file, [`Dataset::check_lvis_lists`].
    pub fn load(file: &Path) -> Result<Self> {
        let ds = Self::load_unchecked_lists(file)?;
        ds.check_lvis_lists(file)?;
        Ok(ds)
    }

    /// Reads a file to describe or draw it (`seesaw data stats`, `data show`): every check of
    /// [`Dataset::load`] stops it, except the problems that do not stop a file from being
    /// described (an LVIS image without its category lists), which come back as warnings.
    pub fn load_with_warnings(file: &Path) -> Result<(Self, Vec<crate::error::DataError>)> {
        let ds = Self::load_unchecked_lists(file)?;
        let warnings = ds.check_lvis_lists(file).err().into_iter().collect();
        Ok((ds, warnings))
    }

    fn load_unchecked_lists(file: &Path) -> Result<Self> {
        let t0 = std::time::Instant::now();
        let bytes = io::read_bytes(file)?;
        let t_read = t0.elapsed();
        // serde would read a list as the struct's fields in order, with a baffling message.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(crate::error::DataError::invalid(
                file,
                crate::error::JsonPath::root(),
                "the top level is a list, but an annotation file is an object with images, \
                 annotations and categories (is this a results file?)",
            ));
        }
        let ds: Dataset = io::parse_json(file, &bytes)?;
        let t_parse = t0.elapsed();
        drop(bytes);
        ds.validate(file)?;
        io::log_load_times(file, t0, t_read, t_parse);
        Ok(ds)
    }

    /// Writes the dataset (gzip-compressed when the name ends in `.gz`), atomically.
    pub fn save(&self, file: &Path) -> Result<()> {
        io::write_json(file, self)
    }

    /// LVIS when any category carries a `frequency`, as lvis-api files all do.
    pub fn format(&self) -> Format {
        if self.categories.iter().any(|c| c.frequency.is_some()) {
            Format::Lvis
        } else {
            Format::Coco
        }
    }

    /// Image id -> position in `images`.
    pub fn image_index(&self) -> HashMap<u64, usize> {
        self.images
            .iter()
            .enumerate()
            .map(|(i, im)| (im.id, i))
            .collect()
    }

    /// Category id -> position in `categories`.
    pub fn category_index(&self) -> HashMap<u64, usize> {
        self.categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i))
            .collect()
    }

    /// Annotation positions per image position (images without annotations get an empty list).
    pub fn annotations_per_image(&self) -> Vec<Vec<usize>> {
        let index = self.image_index();
        let mut per = vec![Vec::new(); self.images.len()];
        for (a, ann) in self.annotations.iter().enumerate() {
            if let Some(&i) = index.get(&ann.image_id) {
                per[i].push(a);
            }
        }
        per
    }

    /// For each category (by position), the number of distinct images it appears in and its
    /// number of instances, counted from the annotations (the LVIS way).
    pub fn category_counts(&self) -> Vec<(u64, u64)> {
        let cats = self.category_index();
        let mut counts = vec![(0u64, 0u64); self.categories.len()];
        let mut seen = std::collections::HashSet::new();
        for ann in &self.annotations {
            if let Some(&c) = cats.get(&ann.category_id) {
                counts[c].1 += 1;
                if seen.insert((ann.image_id, ann.category_id)) {
                    counts[c].0 += 1;
                }
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_the_tools_ignore_are_ignored_and_lvis_paths_come_from_the_url() {
        // Unknown fields anywhere are skipped, as Python's json + pycocotools / lvis-api skip
        // them; optional ones read as absent.
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("x.json");
        std::fs::write(
            &f,
            r#"{"type": "instances", "info": {"year": 2017},
                "images": [{"id": 1, "width": 8, "height": 6, "license": 3, "extra": [1],
                            "coco_url": "http://images.cocodataset.org/val2017/000000397133.jpg"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1],
                                 "area": 1, "num_keypoints": 0, "attributes": {}}],
                "categories": [{"id": 1, "name": "a", "keypoints": []}]}"#,
        )
        .expect("write");
        let ds = Dataset::load(&f).expect("loads");
        assert_eq!(ds.format(), Format::Coco);
        let im = &ds.images[0];
        // LVIS v1 has no file_name: mmdetection and detectron2 take the URL's last two parts.
        assert_eq!(
            im.relative_path().as_deref(),
            Some("val2017/000000397133.jpg")
        );
        let mut named = im.clone();
        named.file_name = Some("a/b.jpg".into());
        assert_eq!(named.relative_path().as_deref(), Some("a/b.jpg"));
        named.file_name = None;
        named.coco_url = None;
        assert_eq!(named.relative_path(), None);
        // No iscrowd reads as not crowd; no segmentation and an empty list are both no mask.
        let mut a = ds.annotations[0].clone();
        assert!(!a.is_crowd() && a.mask().is_none());
        a.segmentation = Some(Segmentation::Polygons(vec![]));
        assert!(a.mask().is_none());
        a.segmentation = Some(Segmentation::Polygons(vec![vec![
            0.0, 0.0, 1.0, 0.0, 1.0, 1.0,
        ]]));
        assert!(a.mask().is_some());
    }
}
