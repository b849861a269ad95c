//! Counts that describe a dataset's long tail: per class, per frequency group, per image.

use crate::dataset::{Dataset, Format, Frequency};

/// One class's counts in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassStats {
    pub id: u64,
    pub name: String,
    /// The group the file declares (LVIS), else the one its own image count gives.
    pub frequency: Frequency,
    /// Distinct images with at least one instance, in this file.
    pub images: u64,
    pub instances: u64,
}

/// Totals of one frequency group.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GroupStats {
    pub classes: usize,
    pub images: u64,
    pub instances: u64,
    /// Classes of the group with no instance in this file.
    pub absent: usize,
}

/// What `seesaw data stats` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetStats {
    pub format: Format,
    pub images: usize,
    pub annotations: usize,
    pub classes: Vec<ClassStats>,
    /// Rare, common, frequent.
    pub groups: [GroupStats; 3],
    /// `instances_per_image[k]` = number of images with exactly `k` instances.
    pub instances_per_image: Vec<usize>,
    /// Whether the groups come from the file's `frequency` fields (true) or were counted.
    pub declared_groups: bool,
}

impl DatasetStats {
    /// Computes the statistics of `ds`.
    pub fn of(ds: &Dataset) -> Self {
        let counts = ds.category_counts();
        let declared = ds.format() == Format::Lvis;
        let classes: Vec<ClassStats> = ds
            .categories
            .iter()
            .zip(&counts)
            .map(|(c, &(images, instances))| ClassStats {
                id: c.id,
                name: c.name.clone(),
                frequency: c
                    .frequency
                    .unwrap_or_else(|| Frequency::from_image_count(images)),
                images,
                instances,
            })
            .collect();
        let mut groups = [GroupStats::default(); 3];
        for c in &classes {
            let g = &mut groups[c.frequency as usize];
            g.classes += 1;
            g.images += c.images;
            g.instances += c.instances;
            g.absent += usize::from(c.instances == 0);
        }
        let mut instances_per_image = vec![0usize; 1];
        for anns in ds.annotations_per_image() {
            if anns.len() >= instances_per_image.len() {
                instances_per_image.resize(anns.len() + 1, 0);
            }
            instances_per_image[anns.len()] += 1;
        }
        Self {
            format: ds.format(),
            images: ds.images.len(),
            annotations: ds.annotations.len(),
            classes,
            groups,
            instances_per_image,
            declared_groups: declared,
        }
    }

    /// Mean instances per image.
    pub fn mean_instances(&self) -> f64 {
        if self.images == 0 {
            0.0
        } else {
            self.annotations as f64 / self.images as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Annotation, Category, Image};

    fn image(id: u64) -> Image {
        Image {
            id,
            width: 10,
            height: 10,
            file_name: None,
            coco_url: None,
            flickr_url: None,
            license: None,
            date_captured: None,
            neg_category_ids: None,
            not_exhaustive_category_ids: None,
        }
    }

    fn ann(id: u64, image_id: u64, category_id: u64) -> Annotation {
        Annotation {
            id,
            image_id,
            category_id,
            bbox: [0.0, 0.0, 1.0, 1.0],
            area: 1.0,
            segmentation: None,
            iscrowd: None,
            ignore: None,
        }
    }

    fn cat(id: u64) -> Category {
        Category {
            id,
            name: format!("c{id}"),
            supercategory: None,
            frequency: None,
            image_count: None,
            instance_count: None,
            synonyms: None,
            synset: None,
            def: None,
        }
    }

    #[test]
    fn counts_images_once_per_class_and_groups_by_count() {
        let mut ds = Dataset {
            info: None,
            licenses: None,
            images: (1..=12).map(image).collect(),
            annotations: vec![],
            categories: vec![cat(1), cat(2)],
        };
        // Class 1: two instances in image 1, one in each of images 2..=12 -> 12 images (common).
        ds.annotations.push(ann(100, 1, 1));
        for i in 1..=12 {
            ds.annotations.push(ann(i, i, 1));
        }
        ds.annotations.push(ann(200, 3, 2));
        let s = DatasetStats::of(&ds);
        assert_eq!(s.classes[0].images, 12);
        assert_eq!(s.classes[0].instances, 13);
        assert_eq!(s.classes[0].frequency, Frequency::Common);
        assert_eq!(s.classes[1].frequency, Frequency::Rare);
        assert_eq!(s.groups[0].classes, 1);
        assert_eq!(s.groups[1].instances, 13);
        assert!(!s.declared_groups);
        // Images 1 and 3 hold two instances, the other ten hold one.
        assert_eq!(s.instances_per_image, vec![0, 10, 2]);
    }
}
