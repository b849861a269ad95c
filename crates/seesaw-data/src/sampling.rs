//! Repeat-factor sampling (RFS) for the long tail (Gupta et al. 2019, LVIS): a class seen in a
//! fraction f(c) of the training images gets r(c) = max(1, sqrt(t / f(c))); an image gets the
//! largest r(c) of its classes. mmdetection's `ClassBalancedDataset`
//! (`mmdet/datasets/dataset_wrappers.py`) repeats each image ⌈r(I)⌉ times, always; the LVIS
//! paper and detectron2 repeat it ⌊r(I)⌋ times plus once more with probability r(I) - ⌊r(I)⌋,
//! drawn again every epoch.
//!
//! This file holds the factors and one epoch's repetitions; the training order built from
//! them (shuffled, epoch after epoch) is [`crate::samplers::TrainSampler`].

use std::collections::HashMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Frequency};

/// How fractional repeat factors become whole repetitions (`data.rfs_rounding`: `"ceil"` or
/// `"stochastic"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// ⌈r⌉ every epoch (mmdetection's `ClassBalancedDataset`). The default.
    #[default]
    Ceil,
    /// ⌊r⌋ plus a Bernoulli(r - ⌊r⌋) draw per epoch (LVIS paper, detectron2).
    Stochastic,
}

/// Per category id, r(c) = max(1, sqrt(t / f(c))); f(c) counts images of `ds` with the class
/// among all its images.
pub fn category_repeat_factors(ds: &Dataset, threshold: f64) -> HashMap<u64, f64> {
    let total = ds.images.len().max(1) as f64;
    ds.category_counts()
        .into_iter()
        .zip(&ds.categories)
        .map(|((images, _), c)| {
            let f = images as f64 / total;
            let r = if f > 0.0 {
                (threshold / f).sqrt().max(1.0)
            } else {
                1.0
            };
            (c.id, r)
        })
        .collect()
}

/// Per image of `ds` (in order), r(I) = the largest r(c) of its annotations' classes; 1 for an
/// image without annotations.
pub fn image_repeat_factors(ds: &Dataset, threshold: f64) -> Vec<f64> {
    let rc = category_repeat_factors(ds, threshold);
    ds.annotations_per_image()
        .iter()
        .map(|anns| {
            anns.iter()
                .filter_map(|&a| rc.get(&ds.annotations[a].category_id))
                .copied()
                .fold(1.0, f64::max)
        })
        .collect()
}

/// One epoch's index list over `images` (indices into `factors`), each repeated per `rounding`.
pub fn epoch_indices<R: Rng>(
    images: &[usize],
    factors: &[f64],
    rounding: Rounding,
    rng: &mut R,
) -> Vec<usize> {
    let mut out = Vec::new();
    for &i in images {
        let r = factors.get(i).copied().unwrap_or(1.0);
        let n = match rounding {
            Rounding::Ceil => r.ceil() as usize,
            Rounding::Stochastic => {
                let whole = r.floor();
                whole as usize + usize::from(rng.random::<f64>() < r - whole)
            }
        };
        out.extend(std::iter::repeat_n(i, n));
    }
    out
}

/// What RFS does to a dataset: epoch sizes and, per frequency group, the images holding a class
/// of that group before and after repetition (expected, for stochastic rounding).
#[derive(Debug, Clone, PartialEq)]
pub struct RfsSummary {
    pub images: usize,
    pub epoch_ceil: usize,
    pub epoch_stochastic: f64,
    /// (group, images, after ceil, expected after stochastic rounding).
    pub groups: Vec<(Frequency, usize, usize, f64)>,
}

/// Summarises RFS at `threshold` over `ds`; groups from the categories' `frequency`, or counted
/// from `ds` when absent.
pub fn summarize(ds: &Dataset, threshold: f64) -> RfsSummary {
    let factors = image_repeat_factors(ds, threshold);
    let counts: HashMap<u64, u64> = ds
        .categories
        .iter()
        .zip(ds.category_counts())
        .map(|(c, (images, _))| (c.id, images))
        .collect();
    let group: HashMap<u64, Frequency> = ds
        .categories
        .iter()
        .map(|c| {
            let g = c.frequency.unwrap_or_else(|| {
                Frequency::from_image_count(counts.get(&c.id).copied().unwrap_or(0))
            });
            (c.id, g)
        })
        .collect();
    let per_image = ds.annotations_per_image();
    let mut groups: Vec<(Frequency, usize, usize, f64)> =
        Frequency::ALL.iter().map(|&g| (g, 0, 0, 0.0)).collect();
    for (anns, &r) in per_image.iter().zip(&factors) {
        for row in groups.iter_mut() {
            if anns
                .iter()
                .any(|&a| group.get(&ds.annotations[a].category_id) == Some(&row.0))
            {
                row.1 += 1;
                row.2 += r.ceil() as usize;
                row.3 += r;
            }
        }
    }
    RfsSummary {
        images: ds.images.len(),
        epoch_ceil: factors.iter().map(|r| r.ceil() as usize).sum(),
        epoch_stochastic: factors.iter().sum(),
        groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Annotation, Category, Image};
    use rand::SeedableRng;

    fn tiny() -> Dataset {
        // 100 images; class 1 in all of them, class 2 in image 0 only, class 3 in images 0-3.
        let images = (0..100)
            .map(|i| Image {
                id: i + 1,
                width: 10,
                height: 10,
                file_name: None,
                coco_url: None,
                flickr_url: None,
                license: None,
                date_captured: None,
                neg_category_ids: None,
                not_exhaustive_category_ids: None,
            })
            .collect();
        let mut annotations = Vec::new();
        let mut add = |img: u64, cat: u64| {
            annotations.push(Annotation {
                id: annotations.len() as u64 + 1,
                image_id: img,
                category_id: cat,
                bbox: [0.0, 0.0, 5.0, 5.0],
                area: 25.0,
                segmentation: None,
                iscrowd: None,
                ignore: None,
            })
        };
        for i in 1..=100 {
            add(i, 1);
        }
        add(1, 2);
        for i in 1..=4 {
            add(i, 3);
        }
        let categories = (1..=3)
            .map(|id| Category {
                id,
                name: format!("c{id}"),
                supercategory: None,
                frequency: None,
                image_count: None,
                instance_count: None,
                synset: None,
                synonyms: None,
                def: None,
            })
            .collect();
        Dataset {
            info: None,
            licenses: None,
            images,
            annotations,
            categories,
        }
    }

    #[test]
    fn repeat_factors_by_hand() {
        let ds = tiny();
        let rc = category_repeat_factors(&ds, 0.1);
        // f = 1, 0.01, 0.04 -> r = 1, sqrt(10), sqrt(2.5).
        assert_eq!(rc[&1], 1.0);
        assert!((rc[&2] - 10f64.sqrt()).abs() < 1e-12);
        assert!((rc[&3] - 2.5f64.sqrt()).abs() < 1e-12);
        let ri = image_repeat_factors(&ds, 0.1);
        assert!((ri[0] - 10f64.sqrt()).abs() < 1e-12);
        assert!((ri[1] - 2.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(ri[4], 1.0);
        let all: Vec<usize> = (0..100).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let e = epoch_indices(&all, &ri, Rounding::Ceil, &mut rng);
        // 4 + 2 + 2 + 2 + 96 x 1.
        assert_eq!(e.len(), 106);
        assert_eq!(e.iter().filter(|&&i| i == 0).count(), 4);
        let s = summarize(&ds, 0.1);
        assert_eq!((s.images, s.epoch_ceil), (100, 106));
        // Stochastic: image 0 gets 3 or 4, images 1-3 get 1 or 2; the mean matches r.
        let mut total = 0;
        for _ in 0..2000 {
            let e = epoch_indices(&all, &ri, Rounding::Stochastic, &mut rng);
            let n0 = e.iter().filter(|&&i| i == 0).count();
            assert!(n0 == 3 || n0 == 4);
            total += e.len();
        }
        let mean = total as f64 / 2000.0;
        assert!(
            (mean - s.epoch_stochastic).abs() < 0.1,
            "{mean} vs {}",
            s.epoch_stochastic
        );
    }
}
