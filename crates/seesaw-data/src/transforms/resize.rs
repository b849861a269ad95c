//! mmdetection's `Resize` with `keep_ratio=True` (`mmdet/datasets/transforms/transforms.py`;
//! multi-scale training as mmdetection 2.x's `multiscale_mode` "value" / "range", 3.x's
//! `RandomChoiceResize` / `RandomResize`): the training scale drawn per image, the keep-ratio
//! rescale, and the mask resize. The image itself is resized as it is loaded
//! ([`crate::loading::load_image`]).

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::structures::GtMask;

/// How a training scale is drawn from `data.train_scales` (`data.train_scale_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleMode {
    /// `"value"`: one of the given scales, uniformly. The default.
    #[default]
    Value,
    /// `"range"`: the short and the long side each drawn uniformly between the smallest and
    /// the largest given.
    Range,
}

/// A training scale: one of `scales` ([`ScaleMode::Value`]), or a short and a long side drawn
/// uniformly between the smallest and largest of `scales` ([`ScaleMode::Range`]), as
/// mmdetection's `Resize`.
pub fn draw_scale<R: Rng>(scales: &[[u32; 2]], mode: ScaleMode, rng: &mut R) -> [u32; 2] {
    if mode == ScaleMode::Range && scales.len() >= 2 {
        let lo = |k: usize| scales.iter().map(|s| s[k]).min().unwrap_or(1);
        let hi = |k: usize| scales.iter().map(|s| s[k]).max().unwrap_or(1);
        [
            rng.random_range(lo(0)..=hi(0)),
            rng.random_range(lo(1)..=hi(1)),
        ]
    } else {
        scales[rng.random_range(0..scales.len())]
    }
}

/// Whose keep-ratio resize the images get (`data.resize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeKind {
    /// mmdetection's `Resize`: sides rounded to the nearest pixel ([`rescale`]), the 8-bit
    /// image resampled with a triangle filter. The default.
    #[default]
    Mmdet,
    /// torchvision's `GeneralizedRCNNTransform.resize`
    /// (torchvision/models/detection/transform.py): sides truncated ([`rescale_torchvision`]), the normalised image resampled bilinearly as
    /// `F.interpolate(..., mode="bilinear", align_corners=False)` ([`resize_bilinear`]).
    Torchvision,
}

/// torchvision's keep-ratio rescale (`_resize_image_and_masks`, eager mode): factor `min(short
/// / min side, long / max side)` in double precision, each side `int(side * factor)`
/// (truncated; `F.interpolate`'s output size with `recompute_scale_factor=True`). Returns `(h,
/// w, sx, sy)`, the factors the boxes are mapped back with (torchvision's `resize_boxes`
/// ratios).
pub fn rescale_torchvision(h: u32, w: u32, [short, long]: [u32; 2]) -> (u32, u32, f32, f32) {
    let (lo, hi) = (f64::from(h.min(w)), f64::from(h.max(w)));
    let f = (f64::from(short) / lo).min(f64::from(long) / hi);
    let nh = (f64::from(h) * f).floor().max(1.0) as u32;
    let nw = (f64::from(w) * f).floor().max(1.0) as u32;
    (nh, nw, nw as f32 / w as f32, nh as f32 / h as f32)
}

/// Bilinear resize of `planes` channel-major planes of `h0 x w0` floats to `h x w`, as
/// PyTorch's `F.interpolate(mode="bilinear", align_corners=False)` without antialiasing: the
/// source of output pixel `i` is `(i + 0.5) * in / out - 0.5`, floored at 0, its upper
/// neighbour clamped to the edge.
pub fn resize_bilinear(
    data: &[f32],
    planes: usize,
    (h0, w0): (usize, usize),
    (h, w): (usize, usize),
) -> Vec<f32> {
    let axis = |len_in: usize, len_out: usize| -> Vec<(usize, usize, f32)> {
        (0..len_out)
            .map(|i| {
                let s = ((i as f32 + 0.5) * (len_in as f32 / len_out as f32) - 0.5).max(0.0);
                let lo = (s as usize).min(len_in - 1);
                let hi = if lo + 1 < len_in { lo + 1 } else { lo };
                (lo, hi, s - lo as f32)
            })
            .collect()
    };
    let (ys, xs) = (axis(h0, h), axis(w0, w));
    let mut out = vec![0f32; planes * h * w];
    for c in 0..planes {
        let src = &data[c * h0 * w0..(c + 1) * h0 * w0];
        for (y, &(y_lo, y_hi, ly)) in ys.iter().enumerate() {
            for (x, &(x_lo, x_hi, lx)) in xs.iter().enumerate() {
                let top = (1.0 - lx) * src[y_lo * w0 + x_lo] + lx * src[y_lo * w0 + x_hi];
                let bottom = (1.0 - lx) * src[y_hi * w0 + x_lo] + lx * src[y_hi * w0 + x_hi];
                out[c * h * w + y * w + x] = (1.0 - ly) * top + ly * bottom;
            }
        }
    }
    out
}

/// mmdetection's keep-ratio rescale: the largest factor with the long side within `long` and
/// the short side within `short`. Returns `(h, w, sx, sy)`.
pub fn rescale(h: u32, w: u32, [short, long]: [u32; 2]) -> (u32, u32, f32, f32) {
    let (lo, hi) = (h.min(w) as f64, h.max(w) as f64);
    let f = (f64::from(long) / hi).min(f64::from(short) / lo);
    let nw = ((f64::from(w) * f) + 0.5).floor().max(1.0) as u32;
    let nh = ((f64::from(h) * f) + 0.5).floor().max(1.0) as u32;
    (nh, nw, nw as f32 / w as f32, nh as f32 / h as f32)
}

/// Nearest-neighbour resize of a row-major 0/1 mask, then an optional horizontal flip.
pub(crate) fn resize_mask(
    data: &[u8],
    h0: usize,
    w0: usize,
    h: usize,
    w: usize,
    flip: bool,
) -> GtMask {
    let mut out = vec![0u8; h * w];
    for y in 0..h {
        let sy = ((y as f64 + 0.5) * h0 as f64 / h as f64) as usize;
        for x in 0..w {
            let sx = ((x as f64 + 0.5) * w0 as f64 / w as f64) as usize;
            let dx = if flip { w - 1 - x } else { x };
            out[y * w + dx] = data[sy.min(h0 - 1) * w0 + sx.min(w0 - 1)];
        }
    }
    GtMask {
        height: h,
        width: w,
        data: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn rescale_keeps_ratio_within_both_sides() {
        assert_eq!(
            rescale(480, 640, [800, 1333]),
            (800, 1067, 1067.0 / 640.0, 800.0 / 480.0)
        );
        assert_eq!(rescale(128, 128, [128, 128]).0, 128);
        let (h, w, _, _) = rescale(100, 1000, [800, 1333]);
        assert_eq!((h, w), (133, 1333));
    }

    #[test]
    fn range_scales() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for _ in 0..100 {
            let [a, b] = draw_scale(&[[640, 1333], [800, 1400]], ScaleMode::Range, &mut rng);
            assert!((640..=800).contains(&a) && (1333..=1400).contains(&b));
            let v = draw_scale(&[[640, 1333], [800, 1400]], ScaleMode::Value, &mut rng);
            assert!(v == [640, 1333] || v == [800, 1400]);
        }
    }

    #[test]
    fn masks_resize_and_flip() {
        let m = resize_mask(&[1, 0, 0, 0], 2, 2, 4, 4, true);
        assert_eq!(m.data[..4], [0, 0, 1, 1]);
        assert_eq!(m.data[12..], [0, 0, 0, 0]);
    }
}
