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

/// Loads the training samples of iteration `iter` (images in parallel), with the generator
/// that goes on to draw the iteration's anchors and RoIs.
pub fn train_samples(
    split: &Split,
    sampler: &mut TrainSampler,
    iter: usize,
    seed: u64,
    cfg: &DataConfig,
    with_masks: bool,
) -> Result<(Vec<Sample>, ChaCha8Rng)> {
    let mut rng = iteration_rng(seed, iter);
    type Plan = (usize, [u32; 2], bool, f64, f64, Option<Photometric>, u64);
    let plan: Vec<Plan> = sampler
        .batch(iter)
        .into_iter()
        .map(|i| {
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
            let jitter_seed = if cfg.instaboost > 0.0 {
                rng.random::<u64>()
            } else {
                0
            };
            (i, s, flip, fy, fx, photo, jitter_seed)
        })
        .collect();
    let crop = cfg.crop_size.map(|v| v as usize);
    let samples = plan
        .par_iter()
        .map(|&(i, s, f, fy, fx, photo, jitter_seed)| {
            let mut sample = split.sample(i, s, f, cfg, with_masks)?;
            if cfg.instaboost > 0.0 && with_masks {
                sample = instaboost(sample, cfg.instaboost, jitter_seed);
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
    Ok((samples, rng))
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
            instaboost: 0.5,
            ..Default::default()
        };
        let mut sampler = split
            .train_sampler(SamplerKind::Random, 1e-3, Rounding::Ceil, true, 1, 4)
            .expect("sampler");
        let (mut seen, mut cropped) = (0, 0);
        for iter in 0..6 {
            let (a, _) = train_samples(&split, &mut sampler, iter, 9, &cfg, true).expect("a");
            let (b, _) = train_samples(&split, &mut sampler, iter, 9, &cfg, true).expect("b");
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
    }
}
