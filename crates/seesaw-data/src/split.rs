//! A dataset split with its image folder: class order, per-image annotations, the images fit
//! for training (mmdetection's `filter_empty_gt`).
//!
//! Loading one of its images with its ground truths is [`Split::sample`] (in
//! [`crate::loading`]); its training order is [`Split::train_sampler`] (in
//! [`crate::samplers`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::dataset::{Annotation, Dataset};
use crate::error::Result;

/// A dataset split with its image folder.
#[derive(Debug, Clone)]
pub struct Split {
    pub dataset: Dataset,
    pub json: PathBuf,
    pub image_root: PathBuf,
    /// Category ids in class order (sorted ids).
    pub category_ids: Vec<u64>,
    pub(crate) class_of: HashMap<u64, usize>,
    pub(crate) anns_of: Vec<Vec<usize>>,
}

impl Split {
    /// Loads the annotations (the images are read when sampled).
    pub fn load(json: &Path, image_root: &Path) -> Result<Self> {
        let dataset = Dataset::load(json)?;
        Ok(Self::new(dataset, json, image_root))
    }

    pub fn new(dataset: Dataset, json: &Path, image_root: &Path) -> Self {
        let mut category_ids: Vec<u64> = dataset.categories.iter().map(|c| c.id).collect();
        category_ids.sort_unstable();
        let class_of = category_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        let anns_of = dataset.annotations_per_image();
        Split {
            dataset,
            json: json.to_path_buf(),
            image_root: image_root.to_path_buf(),
            category_ids,
            class_of,
            anns_of,
        }
    }

    pub fn num_classes(&self) -> usize {
        self.category_ids.len()
    }

    /// Class names in class order.
    pub fn class_names(&self) -> Vec<String> {
        let by_id: HashMap<u64, &str> = self
            .dataset
            .categories
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect();
        self.category_ids
            .iter()
            .map(|id| by_id.get(id).copied().unwrap_or("?").to_string())
            .collect()
    }

    /// The classes annotated on image `index`, sorted, each once.
    pub(crate) fn classes_of_image(&self, index: usize) -> Vec<usize> {
        let mut classes: Vec<usize> = self.anns_of[index]
            .iter()
            .filter_map(|&a| self.class_of.get(&self.dataset.annotations[a].category_id))
            .copied()
            .collect();
        classes.sort_unstable();
        classes.dedup();
        classes
    }

    /// Per class, the number of images it appears in (for EQL, federated loss, RFS).
    pub fn image_counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.num_classes()];
        for i in 0..self.anns_of.len() {
            for c in self.classes_of_image(i) {
                counts[c] += 1;
            }
        }
        counts
    }

    /// The images training samples from: with `filter_empty_gt` (`data.filter_empty_gt`,
    /// mmdetection's `filter_empty_gt`, detectron2's `DATALOADER.FILTER_EMPTY_ANNOTATIONS`),
    /// those with at least one usable box (not a crowd region, at least 1 px wide and high),
    /// the others counted by reason; without it, every image.
    ///
    /// Everything that describes the training set for sampling (repeat factors, class-aware
    /// lists) is computed over these images only.
    pub fn training_images(&self, filter_empty_gt: bool) -> TrainingImages {
        let mut out = TrainingImages::default();
        for (i, anns) in self.anns_of.iter().enumerate() {
            if !filter_empty_gt {
                out.kept.push(i);
            } else if anns.is_empty() {
                out.without_annotations += 1;
            } else if !anns
                .iter()
                .any(|&a| is_usable(&self.dataset.annotations[a]))
            {
                out.without_usable_boxes += 1;
            } else {
                out.kept.push(i);
            }
        }
        out
    }
}

/// A box training can learn from: not a crowd region, at least 1 px wide and high (smaller
/// boxes are skipped when a sample is loaded, as mmdetection skips them).
fn is_usable(a: &Annotation) -> bool {
    !a.is_crowd() && a.bbox[2] >= 1.0 && a.bbox[3] >= 1.0
}

/// The training images of a split under `data.filter_empty_gt`, and how many were left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainingImages {
    /// Positions in `dataset.images` of the images kept, in file order.
    pub kept: Vec<usize>,
    /// Images left out for having no annotation at all.
    pub without_annotations: usize,
    /// Images left out whose annotations are all crowd regions or boxes under 1 px.
    pub without_usable_boxes: usize,
}

impl TrainingImages {
    /// Images left out, for either reason.
    pub fn dropped(&self) -> usize {
        self.without_annotations + self.without_usable_boxes
    }

    /// One line for logs and reports: `kept N of M images (dropped ...)`.
    pub fn describe(&self) -> String {
        let total = self.kept.len() + self.dropped();
        if self.dropped() == 0 {
            return format!("{total} images");
        }
        let mut why = vec![format!(
            "{} for having no annotations",
            self.without_annotations
        )];
        if self.without_usable_boxes > 0 {
            why.push(format!(
                "{} whose annotations are all crowd regions or boxes under 1 px",
                self.without_usable_boxes
            ));
        }
        format!(
            "{} of {total} images (data.filter_empty_gt dropped {})",
            self.kept.len(),
            why.join(" and ")
        )
    }
}
