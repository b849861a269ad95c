//! A dataset split with its image folder: class order, per-image annotations, the images fit
//! for training (mmdetection's `filter_empty_gt`).
//!
//! Loading one of its images with its ground truths is [`Split::sample`] (in
//! [`crate::loading`]); its training order is [`Split::train_sampler`] (in
//! [`crate::samplers`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
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

    /// Images with at least one usable (non-crowd, non-empty) box: mmdetection's
    /// `filter_empty_gt` for training.
    pub fn trainable_images(&self) -> Vec<usize> {
        (0..self.dataset.images.len())
            .filter(|&i| {
                self.anns_of[i].iter().any(|&a| {
                    let ann = &self.dataset.annotations[a];
                    !ann.is_crowd() && ann.bbox[2] >= 1.0 && ann.bbox[3] >= 1.0
                })
            })
            .collect()
    }
}
