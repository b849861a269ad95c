//! Pasting a predicted RoI mask back into the image, as mmdetection's `_do_paste_mask` does:
//! every image pixel whose centre falls near the box samples the `M x M` mask bilinearly
//! (`grid_sample`, `align_corners=False`, zeros outside), then the probability is thresholded;
//! or as torchvision's detection models do ([`paste_mask_torchvision`]).

use serde::{Deserialize, Serialize};

use super::Box2;

/// How a RoI mask goes back into the image (`model.roi.test.mask_paste`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskPaste {
    /// mmdetection's `_do_paste_mask` ([`paste_mask`]); pixels `>=` the threshold.
    #[default]
    Mmdet,
    /// torchvision's `paste_masks_in_image` ([`paste_mask_torchvision`]); pixels `>` the
    /// threshold, as its COCO evaluation binarises them.
    Torchvision,
}

/// The binary image mask of `mask` (`m x m` probabilities) predicted for `bbox`, pasted the
/// `kind` way at `threshold`.
pub fn paste_mask_with(
    kind: MaskPaste,
    mask: &[f32],
    m: usize,
    bbox: &Box2,
    img_h: usize,
    img_w: usize,
    threshold: f32,
) -> Vec<u8> {
    match kind {
        MaskPaste::Mmdet => paste_mask(mask, m, bbox, img_h, img_w, threshold),
        MaskPaste::Torchvision => paste_mask_torchvision(mask, m, bbox, img_h, img_w)
            .into_iter()
            .map(|p| u8::from(p > threshold))
            .collect(),
    }
}

/// torchvision's `paste_masks_in_image` with `padding = 1` for one mask
/// (torchvision/models/detection/roi_heads.py `expand_masks`, `expand_boxes`,
/// `paste_mask_in_image`): the `m x m` probabilities padded with one zero on each side, the box
/// scaled by `(m + 2) / m` about its centre and truncated to integers, the padded mask resized
/// bilinearly (`align_corners=False`) to `(x2 - x1 + 1) x (y2 - y1 + 1)` pixels and written at
/// `(x1, y1)`, clipped to the image; soft probabilities `[img_h * img_w]`, zero elsewhere.
pub fn paste_mask_torchvision(
    mask: &[f32],
    m: usize,
    bbox: &Box2,
    img_h: usize,
    img_w: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; img_h * img_w];
    if m == 0 || mask.len() < m * m || !bbox.iter().all(|v| v.is_finite()) {
        return out;
    }
    let p = m + 2;
    let padded = |y: usize, x: usize| -> f32 {
        if y == 0 || x == 0 || y > m || x > m {
            0.0
        } else {
            mask[(y - 1) * m + (x - 1)]
        }
    };
    let scale = p as f32 / m as f32;
    let [x1, y1, x2, y2] = *bbox;
    let (w_half, h_half) = ((x2 - x1) * 0.5 * scale, (y2 - y1) * 0.5 * scale);
    let (xc, yc) = ((x2 + x1) * 0.5, (y2 + y1) * 0.5);
    // `.to(torch.int64)`: truncation toward zero.
    let b = [
        (xc - w_half) as i64,
        (yc - h_half) as i64,
        (xc + w_half) as i64,
        (yc + h_half) as i64,
    ];
    let w = (b[2] - b[0] + 1).max(1) as usize;
    let h = (b[3] - b[1] + 1).max(1) as usize;
    // F.interpolate(bilinear, align_corners=False) from p x p to h x w: source index
    // (dst + 0.5) * in / out - 0.5, floored at 0, the upper neighbour clamped to the edge.
    let source = |dst: usize, out_len: usize| -> (usize, usize, f32) {
        let s = ((dst as f32 + 0.5) * (p as f32 / out_len as f32) - 0.5).max(0.0);
        let lo = (s as usize).min(p - 1);
        let hi = if lo < p - 1 { lo + 1 } else { lo };
        (lo, hi, s - lo as f32)
    };
    let x_0 = b[0].max(0);
    let x_1 = (b[2] + 1).min(img_w as i64);
    let y_0 = b[1].max(0);
    let y_1 = (b[3] + 1).min(img_h as i64);
    for iy in y_0..y_1 {
        let (ylo, yhi, ly) = source((iy - b[1]) as usize, h);
        for ix in x_0..x_1 {
            let (xlo, xhi, lx) = source((ix - b[0]) as usize, w);
            let v = (1.0 - ly) * ((1.0 - lx) * padded(ylo, xlo) + lx * padded(ylo, xhi))
                + ly * ((1.0 - lx) * padded(yhi, xlo) + lx * padded(yhi, xhi));
            out[iy as usize * img_w + ix as usize] = v;
        }
    }
    out
}

/// Bilinear sample of `mask` (`m x m`, row-major) at pixel coordinates (y, x), zero outside.
fn sample(mask: &[f32], m: usize, y: f32, x: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |yy: f32, xx: f32| {
        if yy < 0.0 || xx < 0.0 || yy >= m as f32 || xx >= m as f32 {
            0.0
        } else {
            mask[yy as usize * m + xx as usize]
        }
    };
    at(y0, x0) * (1.0 - fy) * (1.0 - fx)
        + at(y0, x0 + 1.0) * (1.0 - fy) * fx
        + at(y0 + 1.0, x0) * fy * (1.0 - fx)
        + at(y0 + 1.0, x0 + 1.0) * fy * fx
}

/// The binary image mask (`img_h x img_w`, row-major, 0/1) of a mask of probabilities
/// (`m x m`) predicted for `bbox`; pixels with probability `>= threshold` are set.
pub fn paste_mask(
    mask: &[f32],
    m: usize,
    bbox: &Box2,
    img_h: usize,
    img_w: usize,
    threshold: f32,
) -> Vec<u8> {
    let mut out = vec![0u8; img_h * img_w];
    let [x1, y1, x2, y2] = *bbox;
    let (bw, bh) = (x2 - x1, y2 - y1);
    if m == 0
        || mask.len() < m * m
        || !(bw > 0.0 && bh > 0.0)
        || !bbox.iter().all(|v| v.is_finite())
    {
        return out;
    }
    // Only pixels within a pixel of the box can sample a non-zero value.
    let xs = ((x1.floor() - 1.0).max(0.0) as usize)
        ..((x2.ceil() + 1.0).min(img_w as f32).max(0.0) as usize);
    let ys = ((y1.floor() - 1.0).max(0.0) as usize)
        ..((y2.ceil() + 1.0).min(img_h as f32).max(0.0) as usize);
    let mf = m as f32;
    for py in ys {
        // Normalised grid coordinate, then grid_sample's unnormalisation (align_corners=False).
        let gy = (py as f32 + 0.5 - y1) / bh * 2.0 - 1.0;
        let sy = ((gy + 1.0) * mf - 1.0) / 2.0;
        for px in xs.clone() {
            let gx = (px as f32 + 0.5 - x1) / bw * 2.0 - 1.0;
            let sx = ((gx + 1.0) * mf - 1.0) / 2.0;
            if sample(mask, m, sy, sx) >= threshold {
                out[py * img_w + px] = 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_mask_fills_the_pixels_whose_centres_are_in_the_box() {
        let ones = vec![1.0f32; 28 * 28];
        let out = paste_mask(&ones, 28, &[2.0, 2.0, 6.0, 6.0], 10, 10, 0.5);
        let set: Vec<(usize, usize)> = (0..100)
            .filter(|&i| out[i] == 1)
            .map(|i| (i / 10, i % 10))
            .collect();
        assert_eq!(set.len(), 16);
        assert!(
            set.iter()
                .all(|&(y, x)| (2..6).contains(&y) && (2..6).contains(&x))
        );
        // The left half of a mask lands on the left half of the box.
        let mut half = vec![0.0f32; 28 * 28];
        for r in 0..28 {
            for c in 0..14 {
                half[r * 28 + c] = 1.0;
            }
        }
        let out = paste_mask(&half, 28, &[0.0, 0.0, 8.0, 4.0], 4, 8, 0.5);
        assert_eq!(&out[..8], &[1, 1, 1, 1, 0, 0, 0, 0]);
        // Boxes outside the image, empty or NaN paste nothing.
        assert!(
            paste_mask(&ones, 28, &[20.0, 20.0, 30.0, 30.0], 10, 10, 0.5)
                .iter()
                .all(|&v| v == 0)
        );
        assert!(
            paste_mask(&ones, 28, &[3.0, 3.0, 3.0, 8.0], 10, 10, 0.5)
                .iter()
                .all(|&v| v == 0)
        );
        assert!(
            paste_mask(&ones, 28, &[f32::NAN, 0.0, 5.0, 5.0], 10, 10, 0.5)
                .iter()
                .all(|&v| v == 0)
        );
    }
}
