//! InstaBoost's appearance-consistency probability map (`hflag`; the package's
//! `paste_position`): where a group of instances is pasted when the map chooses.

use rand::Rng;

/// A square dilation of `mask` by `radius` pixels (the package's 5 x 5 box kernel applied
/// `radius / 2` times).
pub(super) fn dilate(mask: &[bool], h: usize, w: usize, radius: usize) -> Vec<bool> {
    let mut rows = vec![false; h * w];
    for y in 0..h {
        for x in 0..w {
            let (a, b) = (x.saturating_sub(radius), (x + radius).min(w - 1));
            rows[y * w + x] = (a..=b).any(|xx| mask[y * w + xx]);
        }
    }
    let mut out = vec![false; h * w];
    for y in 0..h {
        for x in 0..w {
            let (a, b) = (y.saturating_sub(radius), (y + radius).min(h - 1));
            out[y * w + x] = (a..=b).any(|yy| rows[yy * w + x]);
        }
    }
    out
}

/// The probability map's destination for a group (the package's `paste_position`): on a grid
/// 10x coarser, each position scores how far the background there (`bg`, the image without
/// its instances) is in colour from the object's original surroundings, ring by ring (0-4,
/// 4-8 and 8-12 px around the group's mask, weights 0.40, 0.35, 0.25); heat = (1 - score /
/// max)^3 scaled to 255, brought back to full resolution; the destination is a pixel drawn
/// uniformly among those hotter than 200 (150 with probability 0.4, or when none is). `None`
/// when the map has no such pixel (the jitter's shift is kept).
#[allow(clippy::too_many_arguments)]
pub(super) fn heat_position<R: Rng>(
    img: &[f32],
    bg: &[f32],
    group_mask: &[bool],
    centre: (f64, f64),
    h: usize,
    w: usize,
    rng: &mut R,
) -> Option<(f64, f64)> {
    const SHRINK: usize = 10;
    let (hs, ws) = (h / SHRINK, w / SHRINK);
    if hs == 0 || ws == 0 {
        return None;
    }
    let plane = h * w;
    // Rings: 3 (inner, 0-4 px), 2 (4-8 px), 1 (8-12 px) around the mask.
    let d: Vec<Vec<bool>> = [4, 8, 12]
        .iter()
        .map(|&r| dilate(group_mask, h, w, r))
        .collect();
    let ring_of = |i: usize| -> u8 {
        if group_mask[i] {
            4
        } else if d[0][i] {
            3
        } else if d[1][i] {
            2
        } else if d[2][i] {
            1
        } else {
            0
        }
    };
    // The coarse grid samples each cell's centre.
    let at = |ys: usize, xs: usize| {
        (ys * SHRINK + SHRINK / 2).min(h - 1) * w + (xs * SHRINK + SHRINK / 2).min(w - 1)
    };
    let colour = |src: &[f32], i: usize| [src[i], src[plane + i], src[2 * plane + i]];
    let mut rings: [Vec<(i64, i64, [f32; 3])>; 3] = Default::default();
    for ys in 0..hs {
        for xs in 0..ws {
            let i = at(ys, xs);
            let k = ring_of(i);
            if (1..=3).contains(&k) {
                rings[usize::from(k) - 1].push((ys as i64, xs as i64, colour(img, i)));
            }
        }
    }
    if rings.iter().all(Vec::is_empty) {
        return None;
    }
    let weights = [0.25f64, 0.35, 0.40];
    let o = (
        (centre.1 / SHRINK as f64) as i64,
        (centre.0 / SHRINK as f64) as i64,
    );
    let mut score = vec![-1f64; hs * ws];
    for qy in 0..hs as i64 {
        for qx in 0..ws as i64 {
            let mut s = 0f64;
            let mut valid = true;
            'rings: for (ring, wt) in rings.iter().zip(weights) {
                let mut part = 0f64;
                for &(py, px, c) in ring {
                    let (y, x) = (py - o.0 + qy, px - o.1 + qx);
                    if y < 0 || x < 0 || y >= hs as i64 || x >= ws as i64 {
                        valid = false;
                        break 'rings;
                    }
                    let b = colour(bg, at(y as usize, x as usize));
                    let dist: f32 = (0..3).map(|k| (c[k] - b[k]).powi(2)).sum::<f32>().sqrt();
                    part += f64::from(dist) / 255.0;
                }
                s += wt * part;
            }
            if valid {
                score[qy as usize * ws + qx as usize] = s;
            }
        }
    }
    let max = score.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max <= 0.0 {
        return None;
    }
    let heat: Vec<f64> = score
        .iter()
        .map(|&s| (1.0 - if s < 0.0 { max } else { s } / max).powi(3))
        .collect();
    let top = heat.iter().copied().fold(0.0, f64::max);
    if top <= 0.0 {
        return None;
    }
    // Back to full resolution, bilinear between cell centres.
    let full: Vec<f64> = (0..plane)
        .map(|i| {
            let (y, x) = (i / w, i % w);
            let gy = ((y as f64 + 0.5) / SHRINK as f64 - 0.5).clamp(0.0, (hs - 1) as f64);
            let gx = ((x as f64 + 0.5) / SHRINK as f64 - 0.5).clamp(0.0, (ws - 1) as f64);
            let (y0, x0) = (gy.floor() as usize, gx.floor() as usize);
            let (y1, x1) = ((y0 + 1).min(hs - 1), (x0 + 1).min(ws - 1));
            let (fy, fx) = (gy - y0 as f64, gx - x0 as f64);
            let v = |yy: usize, xx: usize| heat[yy * ws + xx] / top * 255.0;
            (v(y0, x0) * (1.0 - fx) + v(y0, x1) * fx) * (1.0 - fy)
                + (v(y1, x0) * (1.0 - fx) + v(y1, x1) * fx) * fy
        })
        .collect();
    let above = |t: f64| -> Vec<usize> { (0..plane).filter(|&i| full[i] > t).collect() };
    let mut cand = above(200.0);
    if rng.random::<f64>() < 0.4 || cand.is_empty() {
        cand = above(150.0);
    }
    if cand.is_empty() {
        return None;
    }
    let i = cand[rng.random_range(0..cand.len())];
    Some(((i % w) as f64, (i / w) as f64))
}
