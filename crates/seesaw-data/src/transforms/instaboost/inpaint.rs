//! InstaBoost's hole filling: the instances' pixels filled from the background around them
//! (harmonic diffusion, in place of the package's OpenCV Navier-Stokes inpainting).

/// Fills the pixels of `hole` (`[H * W]`) in the planar `[3, H, W]` image by harmonic
/// diffusion: each row's hole first takes the mean of its nearest known pixels left and right,
/// then Gauss-Seidel sweeps set every hole pixel to the mean of its 4 neighbours until the
/// largest change is below 0.5 (of 255) or 300 sweeps.
pub(super) fn inpaint(img: &[f32], h: usize, w: usize, hole: &[bool]) -> Vec<f32> {
    let plane = h * w;
    let mut out = img.to_vec();
    let pixels: Vec<usize> = (0..plane).filter(|&i| hole[i]).collect();
    if pixels.is_empty() || pixels.len() == plane {
        return out;
    }
    for y in 0..h {
        let mut x = 0;
        while x < w {
            if !hole[y * w + x] {
                x += 1;
                continue;
            }
            let start = x;
            while x < w && hole[y * w + x] {
                x += 1;
            }
            let (l, r) = (start.checked_sub(1), (x < w).then_some(x));
            for c in 0..3 {
                let at = |xx: usize| img[c * plane + y * w + xx];
                let v = match (l, r) {
                    (Some(l), Some(r)) => 0.5 * (at(l) + at(r)),
                    (Some(l), None) => at(l),
                    (None, Some(r)) => at(r),
                    (None, None) => f32::NAN,
                };
                for xx in start..x {
                    out[c * plane + y * w + xx] = v;
                }
            }
        }
    }
    // Rows that were all hole start from the image's mean of known pixels.
    for c in 0..3 {
        let (sum, n) = (0..plane)
            .filter(|&i| !hole[i])
            .fold((0f64, 0usize), |(s, n), i| {
                (s + f64::from(img[c * plane + i]), n + 1)
            });
        let mean = (sum / n.max(1) as f64) as f32;
        for &i in &pixels {
            if out[c * plane + i].is_nan() {
                out[c * plane + i] = mean;
            }
        }
    }
    for _ in 0..300 {
        let mut change = 0f32;
        for &i in &pixels {
            let (y, x) = (i / w, i % w);
            let mut near = [0usize; 4];
            let mut k = 0;
            if x > 0 {
                near[k] = i - 1;
                k += 1;
            }
            if x + 1 < w {
                near[k] = i + 1;
                k += 1;
            }
            if y > 0 {
                near[k] = i - w;
                k += 1;
            }
            if y + 1 < h {
                near[k] = i + w;
                k += 1;
            }
            for c in 0..3 {
                let v = near[..k].iter().map(|&j| out[c * plane + j]).sum::<f32>() / k as f32;
                change = change.max((v - out[c * plane + i]).abs());
                out[c * plane + i] = v;
            }
        }
        if change < 0.5 {
            break;
        }
    }
    out
}
