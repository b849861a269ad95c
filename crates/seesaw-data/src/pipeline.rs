//! One training iteration's samples: the sampler's image indices, then per image the draws
//! of every augmentation that is on (scale, flip, crop offset, photometric distortion,
//! InstaBoost seed), in that order, from the iteration's own generator; then the images
//! loaded and transformed in parallel: loaded, resized and flipped ([`crate::loading`]), then
//! InstaBoost, photometric distortion and crop ([`crate::transforms`]), in that order.
//!
//! Everything random is a function of (seed, iteration), so a resumed run sees exactly the
//! batches an uninterrupted one would.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::config::DataConfig;
use crate::error::Result;
use crate::loading::Sample;
use crate::samplers::TrainSampler;
use crate::split::Split;
use crate::transforms::flip::draw_flip;
use crate::transforms::{Photometric, draw_scale, instaboost, random_crop};

/// The generator of iteration `iter`'s random choices (scales, flips, sampled RoIs).
pub fn iteration_rng(seed: u64, iter: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(0x17E4 << 32 | iter as u64);
    rng
}

/// The generator of image `index` (its place in the global batch) of iteration `iter`: it
/// draws that image's sampled anchors and RoIs, so an image's draws do not depend on which
/// other images share its batch or its data-parallel replica.
pub fn image_rng(seed: u64, iter: usize, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(0x17E5 << 48 | (iter as u64 & 0xFFFF_FFFF) << 16 | (index as u64 & 0xFFFF));
    rng
}

/// Which images of each global batch a data-parallel replica trains on: image k goes to
/// replica `k % world` (so replica r takes images r, r + world, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Shard {
    /// The whole batch (one process).
    pub const WHOLE: Shard = Shard { rank: 0, world: 1 };

    /// Whether image `k` of a global batch is this replica's.
    pub fn owns(&self, k: usize) -> bool {
        k % self.world.max(1) == self.rank
    }
}

/// Loads this replica's training samples of iteration `iter` (images in parallel), each with
/// the generator ([`image_rng`]) that goes on to draw its anchors and RoIs. The augmentation
/// draws are made for the whole global batch in order and then shared out, so a sample is the
/// same whichever replica loads it.
pub fn train_samples(
    split: &Split,
    sampler: &mut TrainSampler,
    iter: usize,
    seed: u64,
    cfg: &DataConfig,
    with_masks: bool,
    shard: Shard,
) -> Result<(Vec<Sample>, Vec<ChaCha8Rng>)> {
    let mut rng = iteration_rng(seed, iter);
    type Plan = (usize, [u32; 2], bool, f64, f64, Option<Photometric>, u64);
    let plan: Vec<(usize, Plan)> = sampler
        .batch(iter)
        .into_iter()
        .enumerate()
        .map(|(k, i)| {
            let s = draw_scale(&cfg.train_scales, cfg.train_scale_mode, &mut rng);
            let flip = draw_flip(cfg.flip_ratio, &mut rng);
            // Draws only for the augmentations that are on, so that turning one on leaves
            // the others' draws (and a recipe without it) as they were.
            let crop_on = cfg.crop_size[0] > 0 && cfg.crop_size[1] > 0;
            let (fy, fx) = if crop_on {
                (rng.random::<f64>(), rng.random::<f64>())
            } else {
                (0.0, 0.0)
            };
            let photo = cfg.photometric.then(|| Photometric::draw(&mut rng));
            let jitter_seed = if cfg.instaboost.is_on() {
                rng.random::<u64>()
            } else {
                0
            };
            (k, (i, s, flip, fy, fx, photo, jitter_seed))
        })
        .collect();
    let (indices, plan): (Vec<usize>, Vec<Plan>) =
        plan.into_iter().filter(|(k, _)| shard.owns(*k)).unzip();
    let crop = cfg.crop_size.map(|v| v as usize);
    let samples = plan
        .par_iter()
        .map(|&(i, s, f, fy, fx, photo, jitter_seed)| {
            let mut sample = split.sample(i, s, f, cfg, with_masks)?;
            if cfg.instaboost.is_on() && with_masks {
                sample = instaboost(sample, &cfg.instaboost, cfg.mean, cfg.std, jitter_seed);
            }
            if let Some(p) = photo {
                p.apply(&mut sample.pixels, cfg.mean, cfg.std);
            }
            Ok(if crop[0] > 0 && crop[1] > 0 {
                random_crop(sample, crop, fy, fx)
            } else {
                sample
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let rngs = indices
        .into_iter()
        .map(|k| image_rng(seed, iter, k))
        .collect();
    Ok((samples, rngs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samplers::SamplerKind;
    use crate::sampling::Rounding;

    #[test]
    fn transformed_masks_match_their_boxes_and_repeat_per_seed() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = crate::generate(
            &crate::SynthConfig {
                classes: 6,
                train_images: 12,
                val_images: Some(2),
                ..Default::default()
            },
            dir.path(),
        )
        .expect("synth");
        let split = Split::new(out.train, &out.train_json, dir.path());
        let cfg = DataConfig {
            train_scales: vec![[96, 96], [128, 128], [160, 200]],
            crop_size: [80, 100],
            photometric: true,
            instaboost: crate::transforms::InstaBoostConfig::default(),
            ..Default::default()
        };
        let mut sampler = split
            .train_sampler(SamplerKind::Random, 1e-3, Rounding::Ceil, true, 1, 4)
            .expect("sampler");
        let (mut seen, mut cropped) = (0, 0);
        for iter in 0..6 {
            let (a, _) =
                train_samples(&split, &mut sampler, iter, 9, &cfg, true, Shard::WHOLE).expect("a");
            let (b, _) =
                train_samples(&split, &mut sampler, iter, 9, &cfg, true, Shard::WHOLE).expect("b");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.pixels, y.pixels);
                assert_eq!(x.gt, y.gt);
                let (h, w) = x.meta.img_shape;
                assert_eq!(x.pixels.len(), 3 * h * w);
                // Cropped, or left whole when no instance would survive the crop.
                cropped += usize::from(h <= 80 && w <= 100);
                assert_eq!(x.gt.masks.len(), x.gt.boxes.len());
                for (m, bx) in x.gt.masks.iter().zip(&x.gt.boxes) {
                    assert_eq!((m.height, m.width), (h, w));
                    let got = m.bbox().expect("no empty mask");
                    for k in 0..4 {
                        assert!(
                            (got[k] - bx[k]).abs() <= 1.5,
                            "mask box {got:?} vs box {bx:?}"
                        );
                    }
                    seen += 1;
                }
            }
        }
        assert!(seen > 20, "{seen} instances checked");
        assert!(cropped > 12, "{cropped} of 24 samples cropped");
        // Two replicas load the images 0, 2 and 1, 3 of each global batch: the same samples
        // and generators as one process loading all four.
        for iter in 0..3 {
            let (whole, whole_rngs) =
                train_samples(&split, &mut sampler, iter, 9, &cfg, true, Shard::WHOLE)
                    .expect("whole");
            for rank in 0..2 {
                let shard = Shard { rank, world: 2 };
                let (part, rngs) =
                    train_samples(&split, &mut sampler, iter, 9, &cfg, true, shard).expect("part");
                assert_eq!(part.len(), 2);
                for (j, (x, r)) in part.iter().zip(&rngs).enumerate() {
                    let k = rank + 2 * j;
                    assert_eq!(x.pixels, whole[k].pixels, "iteration {iter}, image {k}");
                    assert_eq!(x.gt, whole[k].gt);
                    assert_eq!(r, &whole_rngs[k]);
                }
            }
        }
    }
}
