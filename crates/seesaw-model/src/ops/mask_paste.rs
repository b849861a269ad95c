//! Pasting a predicted RoI mask back into the image, as mmdetection's `_do_paste_mask` does:
//! every image pixel whose centre falls near the box samples the `M x M` mask bilinearly
//! (`grid_sample`, `align_corners=False`, zeros outside), then the probability is thresholded.

use super::Box2;

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
