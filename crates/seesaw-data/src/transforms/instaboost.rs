//! InstaBoost (Fang et al. 2019, "InstaBoost: Boosting Instance Segmentation via Probability
//! Map Guided Copy-Pasting"; mmdetection's `InstaBoost` in
//! `mmdet/datasets/transforms/transforms.py`, which wraps the `instaboostfast` package), without
//! its appearance-consistency heatmap: instances cut out, jittered and pasted back.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::loading::Sample;
use crate::structures::GtInstances;

/// One instance's InstaBoost-style jitter: scale about its box centre, rotation (degrees) and
/// shift (pixels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    pub scale: f32,
    pub rotate: f32,
    pub dx: f32,
    pub dy: f32,
}

impl Jitter {
    /// InstaBoost's defaults: scale 0.8-1.2, rotation +/-1 degree, shift +/-15 px.
    pub fn draw<R: Rng>(rng: &mut R) -> Self {
        Jitter {
            scale: 0.8 + 0.4 * rng.random::<f32>(),
            rotate: -1.0 + 2.0 * rng.random::<f32>(),
            dx: -15.0 + 30.0 * rng.random::<f32>(),
            dy: -15.0 + 30.0 * rng.random::<f32>(),
        }
    }
}

/// InstaBoost-style instance jitter (Fang et al. 2019, without its appearance-consistency
/// heatmap): each instance with probability `p` is cut out, its hole filled from the nearest
/// pixels left and right of it on the same row (averaged), and pasted back moved, scaled and
/// rotated (`Jitter::draw`), on top of the others, whose masks lose what it now covers. Boxes
/// are recomputed from the masks; instances left empty are dropped. Needs masks; `seed`
/// drives every draw.
pub fn instaboost(mut s: Sample, p: f64, seed: u64) -> Sample {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (h, w) = s.meta.img_shape;
    let n = s.gt.boxes.len();
    if s.gt.masks.len() != n || n == 0 {
        return s;
    }
    for k in 0..n {
        if !rng.random_bool(p.clamp(0.0, 1.0)) {
            continue;
        }
        let j = Jitter::draw(&mut rng);
        let src_mask = s.gt.masks[k].data.clone();
        // Where the instance lands: the inverse of the jitter maps each target pixel centre
        // back into the source mask.
        let b = s.gt.boxes[k];
        let (cx, cy) = ((b[0] + b[2]) * 0.5, (b[1] + b[3]) * 0.5);
        let (sin, cos) = j.rotate.to_radians().sin_cos();
        let mut new_mask = vec![0u8; h * w];
        let mut from = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let (tx, ty) = (x as f32 + 0.5 - cx - j.dx, y as f32 + 0.5 - cy - j.dy);
                let (ux, uy) = (
                    (cos * tx + sin * ty) / j.scale,
                    (-sin * tx + cos * ty) / j.scale,
                );
                let (sx, sy) = ((ux + cx).floor(), (uy + cy).floor());
                if sx < 0.0 || sy < 0.0 || sx >= w as f32 || sy >= h as f32 {
                    continue;
                }
                let (sx, sy) = (sx as usize, sy as usize);
                if src_mask[sy * w + sx] != 0 {
                    new_mask[y * w + x] = 1;
                    from.push((y * w + x, sy * w + sx));
                }
            }
        }
        // An instance the jitter would push out of the image stays where it is.
        if from.is_empty() {
            continue;
        }
        let src_pixels = s.pixels.clone();
        // Fill the hole row by row from its nearest outside neighbours.
        for y in 0..h {
            let row = &src_mask[y * w..(y + 1) * w];
            let mut x = 0;
            while x < w {
                if row[x] == 0 {
                    x += 1;
                    continue;
                }
                let start = x;
                while x < w && row[x] != 0 {
                    x += 1;
                }
                let (left, right) = (start.checked_sub(1), (x < w).then_some(x));
                for c in 0..3 {
                    let at = |xx: usize| src_pixels[c * h * w + y * w + xx];
                    let v = match (left, right) {
                        (Some(l), Some(r)) => 0.5 * (at(l) + at(r)),
                        (Some(l), None) => at(l),
                        (None, Some(r)) => at(r),
                        (None, None) => 0.0,
                    };
                    for xx in start..x {
                        s.pixels[c * h * w + y * w + xx] = v;
                    }
                }
            }
        }
        for &(to, src) in &from {
            for c in 0..3 {
                s.pixels[c * h * w + to] = src_pixels[c * h * w + src];
            }
        }
        for (i, m) in s.gt.masks.iter_mut().enumerate() {
            if i == k {
                m.data.clone_from(&new_mask);
            } else {
                for (v, &cover) in m.data.iter_mut().zip(&new_mask) {
                    if cover != 0 {
                        *v = 0;
                    }
                }
            }
        }
    }
    let old = std::mem::take(&mut s.gt);
    let mut gt = GtInstances {
        ignore: old.ignore,
        ..Default::default()
    };
    for (m, label) in old.masks.into_iter().zip(old.labels) {
        if let Some(bx) = m.bbox() {
            gt.boxes.push(bx);
            gt.masks.push(m);
            gt.labels.push(label);
        }
    }
    s.gt = gt;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structures::{GtMask, ImageMeta};

    #[test]
    fn instaboost_moves_an_instance_and_fills_its_hole() {
        // A 3x3 square of value 1 at (20..23, 20..23) on a 0 background, 48x48.
        let (h, w) = (48, 48);
        let mut data = vec![0u8; h * w];
        let mut pixels = vec![0f32; 3 * h * w];
        for y in 20..23 {
            for x in 20..23 {
                data[y * w + x] = 1;
                for c in 0..3 {
                    pixels[c * h * w + y * w + x] = 1.0;
                }
            }
        }
        let sample = Sample {
            pixels,
            meta: ImageMeta {
                image_id: 1,
                ori_shape: (48, 48),
                img_shape: (h, w),
                scale: (1.0, 1.0),
                flip: false,
            },
            gt: GtInstances {
                boxes: vec![[20.0, 20.0, 23.0, 23.0]],
                labels: vec![2],
                masks: vec![GtMask {
                    height: h,
                    width: w,
                    data,
                }],
                ignore: vec![],
            },
        };
        // Find a seed whose draw jitters the instance, then check the result against the draw.
        for seed in 0..50 {
            let out = instaboost(sample.clone(), 1.0, seed);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            assert!(rng.random_bool(1.0));
            let j = Jitter::draw(&mut rng);
            assert_eq!(out.gt.labels, vec![2]);
            let b = out.gt.boxes[0];
            // The box moved by the shift, within the scaling of a 3-px square and a pixel.
            let (cx, cy) = ((b[0] + b[2]) * 0.5, (b[1] + b[3]) * 0.5);
            assert!((cx - (21.5 + j.dx)).abs() <= 1.5 && (cy - (21.5 + j.dy)).abs() <= 1.5);
            let m = &out.gt.masks[0].data;
            let set: usize = m.iter().map(|&v| usize::from(v)).sum();
            assert!((2..=16).contains(&set), "{set} pixels");
            // Pixels are 1 exactly on the new mask (the hole was filled from the 0 background).
            for (i, &v) in m.iter().enumerate() {
                assert_eq!(out.pixels[i], f32::from(v), "seed {seed} pixel {i}");
            }
        }
    }
}
