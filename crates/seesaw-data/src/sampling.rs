//! Repeat-factor sampling (RFS) for the long tail (Gupta et al. 2019, LVIS): a class seen in a
//! fraction f(c) of the training images gets r(c) = max(1, sqrt(t / f(c))); an image gets the
//! largest r(c) of its classes. mmdetection's `ClassBalancedDataset`
//! (`mmdet/datasets/dataset_wrappers.py`) repeats each image ⌈r(I)⌉ times, always; the LVIS
//! paper and detectron2 repeat it ⌊r(I)⌋ times plus once more with probability r(I) - ⌊r(I)⌋,
//! drawn again every epoch.
//!
//! The training images are those left after `data.filter_empty_gt` (on by default, as
//! mmdetection's `filter_empty_gt` and detectron2's `FILTER_EMPTY_ANNOTATIONS`): images without
//! annotations are dropped before anything else, so f(c) is a fraction of the annotated images.
//! With the filter off they stay, holding a background class of their own (mmdetection's
//! `ClassBalancedDataset` with `filter_empty_gt=False`).
//!
//! This file holds the factors and one epoch's repetitions; the training order built from
//! them (shuffled, epoch after epoch) is [`crate::samplers::TrainSampler`].

use std::collections::HashMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::Frequency;
use crate::split::{Split, TrainingImages};

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

/// The repeat factors of a split's training images.
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatFactors {
    /// r(c) per category id; 1 for a class on none of the training images.
    pub per_category: HashMap<u64, f64>,
    /// r of the background pseudo-class, when a training image has no annotation (only with
    /// `data.filter_empty_gt = false`).
    pub background: Option<f64>,
    /// r(I) per image position in `dataset.images`; 1 for an image not among the training
    /// images.
    pub per_image: Vec<f64>,
}

/// Repeat factors over the training images `kept` (positions in `split.dataset.images`, from
/// [`Split::training_images`]): f(c) is the fraction of those images holding class c, r(c) =
/// max(1, sqrt(t / f(c))), and r(I) the largest r(c) of its classes. An image without any
/// annotation counts as holding a background class of its own, as mmdetection's
/// `ClassBalancedDataset` does with `filter_empty_gt=False`; with the filter on there is none.
///
/// The one computation behind both `seesaw data rfs` and the trainer's sampler.
pub fn repeat_factors(split: &Split, kept: &[usize], threshold: f64) -> RepeatFactors {
    let ds = &split.dataset;
    let total = kept.len().max(1) as f64;
    let r = |images: u64| {
        let f = images as f64 / total;
        if f > 0.0 {
            (threshold / f).sqrt().max(1.0)
        } else {
            1.0
        }
    };
    let mut images_with: HashMap<u64, u64> = HashMap::new();
    let mut background_images = 0u64;
    let classes_of: Vec<Vec<u64>> = kept
        .iter()
        .map(|&i| {
            let mut cats: Vec<u64> = split.anns_of[i]
                .iter()
                .map(|&a| ds.annotations[a].category_id)
                .collect();
            cats.sort_unstable();
            cats.dedup();
            if cats.is_empty() {
                background_images += 1;
            }
            for &c in &cats {
                *images_with.entry(c).or_default() += 1;
            }
            cats
        })
        .collect();
    let per_category: HashMap<u64, f64> = ds
        .categories
        .iter()
        .map(|c| (c.id, r(images_with.get(&c.id).copied().unwrap_or(0))))
        .collect();
    let background = (background_images > 0).then(|| r(background_images));
    let mut per_image = vec![1.0; ds.images.len()];
    for (&i, cats) in kept.iter().zip(&classes_of) {
        per_image[i] = if cats.is_empty() {
            background.unwrap_or(1.0)
        } else {
            cats.iter()
                .filter_map(|c| per_category.get(c))
                .copied()
                .fold(1.0, f64::max)
        };
    }
    RepeatFactors {
        per_category,
        background,
        per_image,
    }
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

/// What RFS does to a training set: the images it samples from (after
/// `data.filter_empty_gt`), epoch sizes and, per frequency group, the images holding a class of
/// that group before and after repetition (expected, for stochastic rounding).
#[derive(Debug, Clone, PartialEq)]
pub struct RfsSummary {
    /// The training images and those `data.filter_empty_gt` left out.
    pub training: TrainingImages,
    /// Training images without annotations, sampled as the background class (only with
    /// `data.filter_empty_gt = false`).
    pub background_images: usize,
    /// Samples in an epoch with ⌈r⌉ repeats (mmdetection).
    pub epoch_ceil: usize,
    /// Expected samples in an epoch with stochastic rounding (LVIS paper, detectron2).
    pub epoch_stochastic: f64,
    /// (group, images, after ceil, expected after stochastic rounding).
    pub groups: Vec<(Frequency, usize, usize, f64)>,
}

/// Summarises RFS at `threshold` over the training images of `split` (under
/// `filter_empty_gt`), with the factors the trainer uses ([`repeat_factors`]); groups from the
/// categories' `frequency`, or counted from the file when absent.
pub fn summarize(split: &Split, threshold: f64, filter_empty_gt: bool) -> RfsSummary {
    let ds = &split.dataset;
    let training = split.training_images(filter_empty_gt);
    let factors = repeat_factors(split, &training.kept, threshold).per_image;
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
    let mut groups: Vec<(Frequency, usize, usize, f64)> =
        Frequency::ALL.iter().map(|&g| (g, 0, 0, 0.0)).collect();
    let (mut epoch_ceil, mut epoch_stochastic, mut background_images) = (0, 0.0, 0);
    for &i in &training.kept {
        let anns = &split.anns_of[i];
        let r = factors[i];
        epoch_ceil += r.ceil() as usize;
        epoch_stochastic += r;
        background_images += usize::from(anns.is_empty());
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
        training,
        background_images,
        epoch_ceil,
        epoch_stochastic,
        groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Annotation, Category, Dataset, Image};
    use crate::samplers::SamplerKind;
    use rand::SeedableRng;

    /// A split of `n` images (ids 1..=n) and categories 1..=`classes`, with one 5x5 box per
    /// `(image id, category id)`.
    pub(crate) fn split_of(n: u64, classes: u64, anns: &[(u64, u64)]) -> Split {
        let images = (1..=n)
            .map(|id| Image {
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
            })
            .collect();
        let annotations = anns
            .iter()
            .enumerate()
            .map(|(k, &(image_id, category_id))| Annotation {
                id: k as u64 + 1,
                image_id,
                category_id,
                bbox: [0.0, 0.0, 5.0, 5.0],
                area: 25.0,
                segmentation: None,
                iscrowd: None,
                ignore: None,
            })
            .collect();
        let categories = (1..=classes)
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
        let ds = Dataset {
            info: None,
            licenses: None,
            images,
            annotations,
            categories,
        };
        Split::new(
            ds,
            std::path::Path::new("t.json"),
            std::path::Path::new("."),
        )
    }

    #[test]
    fn repeat_factors_by_hand() {
        // 100 images; class 1 in all of them, class 2 in image 0 only, class 3 in images 0-3.
        let mut anns: Vec<(u64, u64)> = (1..=100).map(|i| (i, 1)).collect();
        anns.push((1, 2));
        anns.extend((1..=4).map(|i| (i, 3)));
        let split = split_of(100, 3, &anns);
        let kept = split.training_images(true).kept;
        assert_eq!(kept.len(), 100);
        let rf = repeat_factors(&split, &kept, 0.1);
        // f = 1, 0.01, 0.04 -> r = 1, sqrt(10), sqrt(2.5).
        assert_eq!(rf.per_category[&1], 1.0);
        assert!((rf.per_category[&2] - 10f64.sqrt()).abs() < 1e-12);
        assert!((rf.per_category[&3] - 2.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(rf.background, None);
        let ri = rf.per_image;
        assert!((ri[0] - 10f64.sqrt()).abs() < 1e-12);
        assert!((ri[1] - 2.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(ri[4], 1.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let e = epoch_indices(&kept, &ri, Rounding::Ceil, &mut rng);
        // 4 + 2 + 2 + 2 + 96 x 1.
        assert_eq!(e.len(), 106);
        assert_eq!(e.iter().filter(|&&i| i == 0).count(), 4);
        let s = summarize(&split, 0.1, true);
        assert_eq!((s.training.kept.len(), s.epoch_ceil), (100, 106));
        // Stochastic: image 0 gets 3 or 4, images 1-3 get 1 or 2; the mean matches r.
        let mut total = 0;
        for _ in 0..2000 {
            let e = epoch_indices(&kept, &ri, Rounding::Stochastic, &mut rng);
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

    /// 10 images, 4 of them without annotations: class 1 on image 1, class 2 on images 2-3,
    /// class 3 on images 4-6.
    fn four_unannotated() -> Split {
        split_of(10, 3, &[(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 3)])
    }

    #[test]
    fn unannotated_images_are_dropped_before_f_is_taken() {
        // mmdetection (filter_empty_gt) and detectron2 (FILTER_EMPTY_ANNOTATIONS) drop the 4
        // unannotated images first: f = 1/6, 2/6, 3/6, so at t = 0.3 only class 1 repeats
        // (r = sqrt(1.8), ceil 2) and the ceil epoch is 2 + 5 = 7 samples.
        let split = four_unannotated();
        let s = summarize(&split, 0.3, true);
        assert_eq!(s.training.kept, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(
            (
                s.training.without_annotations,
                s.training.without_usable_boxes
            ),
            (4, 0)
        );
        assert_eq!(s.epoch_ceil, 7);
        assert!((s.epoch_stochastic - (1.8f64.sqrt() + 5.0)).abs() < 1e-12);
        assert_eq!(s.background_images, 0);
        // The trainer samples from the same images with the same factors.
        let sampler = split
            .train_sampler(SamplerKind::Rfs, 0.3, Rounding::Ceil, true, 0, 1)
            .expect("sampler");
        assert_eq!(sampler.epoch_len(), 7);
        let mut sampler = sampler;
        let mut epoch: Vec<usize> = (0..7).flat_map(|i| sampler.batch(i)).collect();
        epoch.sort_unstable();
        assert_eq!(epoch, vec![0, 0, 1, 2, 3, 4, 5]);
        assert_eq!(
            s.training.describe(),
            "6 of 10 images (data.filter_empty_gt dropped 4 for having no annotations)"
        );
    }

    #[test]
    fn without_the_filter_unannotated_images_are_a_background_class() {
        // mmdetection's ClassBalancedDataset with filter_empty_gt=False: all 10 images, the 4
        // unannotated ones holding a background class (f = 0.4, r = 1); f = 0.1, 0.2, 0.3
        // give r = sqrt(3), sqrt(1.5), 1: the ceil epoch is 2 + 2 + 2 + 3 + 4 = 13.
        let split = four_unannotated();
        let s = summarize(&split, 0.3, false);
        assert_eq!(s.training.kept, (0..10).collect::<Vec<_>>());
        assert_eq!(s.training.dropped(), 0);
        assert_eq!((s.epoch_ceil, s.background_images), (13, 4));
        let sampler = split
            .train_sampler(SamplerKind::Rfs, 0.3, Rounding::Ceil, false, 0, 1)
            .expect("sampler");
        assert_eq!(sampler.epoch_len(), 13);
        // One unannotated image of 10: its background class is rare (f = 0.1, r = sqrt(3)).
        let split = split_of(10, 1, &(1..=9).map(|i| (i, 1)).collect::<Vec<_>>());
        let rf = repeat_factors(&split, &split.training_images(false).kept, 0.3);
        assert!((rf.background.expect("background") - 3f64.sqrt()).abs() < 1e-12);
        assert!((rf.per_image[9] - 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(rf.per_image[0], 1.0);
        assert_eq!(summarize(&split, 0.3, false).epoch_ceil, 11);
        assert_eq!(summarize(&split, 0.3, true).epoch_ceil, 9);
    }

    #[test]
    fn images_with_only_crowd_or_tiny_boxes_are_dropped_and_counted_apart() {
        let mut split = split_of(4, 1, &[(1, 1), (2, 1), (3, 1)]);
        split.dataset.annotations[1].iscrowd = Some(1);
        split.dataset.annotations[2].bbox = [0.0, 0.0, 0.5, 4.0];
        let t = split.training_images(true);
        assert_eq!(t.kept, vec![0]);
        assert_eq!((t.without_annotations, t.without_usable_boxes), (1, 2));
        assert_eq!(
            t.describe(),
            "1 of 4 images (data.filter_empty_gt dropped 1 for having no annotations and 2 \
             whose annotations are all crowd regions or boxes under 1 px)"
        );
        assert_eq!(split.training_images(false).kept, vec![0, 1, 2, 3]);
    }
}
