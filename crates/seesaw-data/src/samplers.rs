//! The training order: which images each iteration trains on.
//!
//! - [`SamplerKind::Random`]: every trainable image once an epoch, shuffled (mmdetection's
//!   `DefaultSampler` / `InfiniteSampler` with `shuffle=True`).
//! - [`SamplerKind::Rfs`]: repeat-factor sampling (Gupta et al. 2019, LVIS; mmdetection's
//!   `ClassBalancedDataset` in `mmdet/datasets/dataset_wrappers.py`): each image repeated by
//!   its repeat factor ([`crate::sampling`]), then shuffled.
//! - [`SamplerKind::ClassAware`]: mmdetection's `ClassAwareSampler`
//!   (`mmdet/datasets/samplers/class_aware_sampler.py`): a class drawn uniformly, then one of
//!   its images.
//!
//! Every choice is a function of (seed, epoch), so a resumed run sees exactly the order an
//! uninterrupted one would.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::sampling::{self, Rounding};
use crate::split::Split;

/// Which training sampler a run uses (`data.sampler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// `"random"`: uniform over the trainable images, each once an epoch. The default.
    #[default]
    Random,
    /// `"rfs"`: repeat-factor sampling, with `data.rfs_threshold` and `data.rfs_rounding`.
    Rfs,
    /// `"class_aware"`: a class drawn uniformly, then one of its images.
    ClassAware,
}

impl Split {
    /// The training sampler of a config over the training images
    /// ([`Split::training_images`] under `filter_empty_gt`): each once an epoch
    /// ([`SamplerKind::Random`]), repeated by its repeat factor at `threshold`
    /// ([`SamplerKind::Rfs`], rounded per `rounding`), or class-aware
    /// ([`SamplerKind::ClassAware`]).
    pub fn train_sampler(
        &self,
        sampler: SamplerKind,
        threshold: f64,
        rounding: Rounding,
        filter_empty_gt: bool,
        seed: u64,
        batch_size: usize,
    ) -> Result<TrainSampler> {
        let images = self.training_images(filter_empty_gt).kept;
        let factors = match sampler {
            SamplerKind::ClassAware => {
                let mut lists = vec![Vec::new(); self.num_classes()];
                for &i in &images {
                    for c in self.classes_of_image(i) {
                        lists[c].push(i);
                    }
                }
                lists.retain(|l| !l.is_empty());
                return Ok(TrainSampler::new(images, None, seed, batch_size)?.class_aware(lists));
            }
            SamplerKind::Rfs => Some((
                sampling::repeat_factors(self, &images, threshold).per_image,
                rounding,
            )),
            SamplerKind::Random => None,
        };
        TrainSampler::new(images, factors, seed, batch_size)
    }
}

/// The training order: epochs of a shuffled index list (with repeat factors, redrawn each
/// epoch when rounding is stochastic), every choice a function of (seed, epoch).
#[derive(Debug, Clone)]
pub struct TrainSampler {
    images: Vec<usize>,
    factors: Option<(Vec<f64>, Rounding)>,
    /// Class-aware sampling: the images of each class.
    class_images: Option<Vec<Vec<usize>>>,
    seed: u64,
    batch_size: usize,
    /// Where each epoch generated so far starts, in samples, and the last epoch's order.
    starts: Vec<usize>,
    current: (u64, Vec<usize>),
}

impl TrainSampler {
    /// A sampler over `images` (positions in the dataset), repeated per `factors` (indexed by
    /// position) when given; an error when there is no image or `batch_size` is 0.
    pub fn new(
        images: Vec<usize>,
        factors: Option<(Vec<f64>, Rounding)>,
        seed: u64,
        batch_size: usize,
    ) -> Result<Self> {
        if images.is_empty() || batch_size == 0 {
            return Err(DataError::Request(
                "the training set has no image to train on (with data.filter_empty_gt, none \
                 has a usable annotation)"
                    .into(),
            ));
        }
        let mut s = Self {
            images,
            factors,
            class_images: None,
            seed,
            batch_size,
            starts: vec![0],
            current: (u64::MAX, vec![]),
        };
        let first = s.epoch_order(0);
        s.starts.push(first.len());
        s.current = (0, first);
        Ok(s)
    }

    /// mmdetection's `ClassAwareSampler` (one sample per class draw): each sample is a class
    /// drawn uniformly, then one of its images; an epoch has as many samples as images.
    pub fn class_aware(mut self, lists: Vec<Vec<usize>>) -> Self {
        if !lists.is_empty() {
            self.class_images = Some(lists);
            self.starts = vec![0];
            let first = self.epoch_order(0);
            self.starts.push(first.len());
            self.current = (0, first);
        }
        self
    }

    /// Samples in the first epoch.
    pub fn epoch_len(&self) -> usize {
        self.starts[1]
    }

    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream((0x0EB0C << 20) | epoch);
        if let Some(lists) = &self.class_images {
            return (0..self.images.len())
                .map(|_| {
                    let l = &lists[rng.random_range(0..lists.len())];
                    l[rng.random_range(0..l.len())]
                })
                .collect();
        }
        let mut order = match &self.factors {
            Some((f, rounding)) => sampling::epoch_indices(&self.images, f, *rounding, &mut rng),
            None => self.images.clone(),
        };
        if order.is_empty() {
            order = self.images.clone();
        }
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        order
    }

    /// The epoch holding sample `k`, generating epochs as needed.
    fn locate(&mut self, k: usize) -> (u64, usize) {
        while *self.starts.last().unwrap_or(&0) <= k {
            let e = (self.starts.len() - 1) as u64;
            let len = self.epoch_order(e).len();
            let end = self.starts.last().copied().unwrap_or(0) + len;
            self.starts.push(end);
        }
        let e = self.starts.partition_point(|&s| s <= k) - 1;
        (e as u64, k - self.starts[e])
    }

    /// Image indices of iteration `iter`.
    pub fn batch(&mut self, iter: usize) -> Vec<usize> {
        let start = iter * self.batch_size;
        let mut out = Vec::with_capacity(self.batch_size);
        for k in start..start + self.batch_size {
            let (e, pos) = self.locate(k);
            if self.current.0 != e {
                self.current = (e, self.epoch_order(e));
            }
            out.push(self.current.1[pos]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_is_a_function_of_seed_and_iteration() {
        let mut s = TrainSampler::new((0..10).collect(), None, 3, 4).expect("sampler");
        let first: Vec<usize> = (0..5).flat_map(|i| s.batch(i)).collect();
        // Two epochs: each a permutation of all indices.
        let mut e0 = first[..10].to_vec();
        e0.sort_unstable();
        assert_eq!(e0, (0..10).collect::<Vec<_>>());
        assert_ne!(first[..10], first[10..20]);
        let mut fresh = TrainSampler::new((0..10).collect(), None, 3, 4).expect("s");
        assert_eq!(fresh.batch(3), first[12..16]);

        // Stochastic repeat factors: image 0 has r = 2.5 (2 or 3 a time), the rest 1; epochs
        // differ in length, and a sampler asked for iteration 40 first agrees with one that
        // walked there.
        let mut factors = vec![1.0; 10];
        factors[0] = 2.5;
        let mk = || {
            TrainSampler::new(
                (0..10).collect(),
                Some((factors.clone(), Rounding::Stochastic)),
                5,
                4,
            )
            .expect("rfs")
        };
        let mut walked = mk();
        let seq: Vec<Vec<usize>> = (0..41).map(|i| walked.batch(i)).collect();
        assert_eq!(mk().batch(40), seq[40]);
        let lens: Vec<usize> = walked.starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(lens.iter().all(|&l| l == 11 || l == 12), "{lens:?}");
        assert!(lens.contains(&11) && lens.contains(&12), "{lens:?}");
        let ceil = TrainSampler::new((0..10).collect(), Some((factors, Rounding::Ceil)), 5, 4)
            .expect("ceil");
        assert_eq!(ceil.epoch_len(), 12);
    }

    #[test]
    fn class_aware_sampling() {
        // Class 0 in images 0-7, class 1 in image 8 only: class-aware draws image 8 about
        // half the time.
        let lists = vec![(0..8).collect::<Vec<usize>>(), vec![8]];
        let mut s = TrainSampler::new((0..9).collect(), None, 1, 9)
            .expect("s")
            .class_aware(lists);
        let drawn: Vec<usize> = (0..100).flat_map(|i| s.batch(i)).collect();
        let eights = drawn.iter().filter(|&&i| i == 8).count();
        assert!((350..=550).contains(&eights), "{eights} of 900");
    }
}
