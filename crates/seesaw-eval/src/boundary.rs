//! Boundary IoU (Cheng et al. 2021, "Boundary IoU: Improving Object-Centric Image Segmentation
//! Evaluation"), as boundary-iou-api computes it for Boundary AP.
//!
//! A mask's boundary is the set of its pixels within `d` pixels (chessboard distance) of a pixel
//! outside it, pixels beyond the image counting as outside: boundary-iou-api erodes the mask,
//! padded by one zero pixel, `d` times with a 3x3 square (`cv2.erode`) and subtracts the result.
//! `d` is [`dilation_pixels`] of the image's size. Boundary AP then matches with
//! min(mask IoU, boundary IoU), the mask's IoA alone against crowd regions.
//!
//! The erosion runs on the mask's bounding box only, on runs rather than a decoded image: a
//! detection's box is small beside its canvas, and LVIS has 300 of them per image.

use hotcoco::Rle;
use hotcoco::primitives::sim::mask_iou_flat;

/// The dilation ratio of Boundary AP: 2% of the image's diagonal.
pub const DEFAULT_DILATION_RATIO: f64 = 0.02;

/// boundary-iou-api's `int(round(ratio * sqrt(h² + w²)))`, at least 1. Python rounds halves to
/// even.
pub fn dilation_pixels(h: u32, w: u32, ratio: f64) -> u32 {
    let diag = (f64::from(h) * f64::from(h) + f64::from(w) * f64::from(w)).sqrt();
    let d = (ratio * diag).round_ties_even();
    if d.is_finite() && d >= 1.0 {
        d.min(f64::from(u32::MAX)) as u32
    } else {
        1
    }
}

/// The boundary of `mask` at `dilation` pixels, on the same canvas.
pub fn mask_boundary(mask: &Rle, dilation: u32) -> Rle {
    let h = mask.h as usize;
    let d = dilation as usize;
    // Runs of ones split per column: (column, first row, end row).
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    let mut pos = 0usize;
    for (i, &c) in mask.counts.iter().enumerate() {
        let (start, end) = (pos, pos + c as usize);
        pos = end;
        if i % 2 == 1 && start < end && h > 0 {
            let mut s = start;
            while s < end {
                let col = s / h;
                let e = end.min((col + 1) * h);
                runs.push((col, s - col * h, e - col * h));
                s = e;
            }
        }
    }
    let Some(&(x0, _, _)) = runs.first() else {
        return empty_like(mask);
    };
    let x1 = runs.last().map_or(x0, |r| r.0) + 1;
    let y0 = runs.iter().map(|r| r.1).min().unwrap_or(0);
    let y1 = runs.iter().map(|r| r.2).max().unwrap_or(0);
    let (cw, ch) = (x1 - x0, y1 - y0);

    // Column-major crop: bit 0 the mask, bit 1 the mask eroded along its columns.
    let mut crop = vec![0u8; cw * ch];
    for &(x, s, e) in &runs {
        let col = &mut crop[(x - x0) * ch..(x - x0 + 1) * ch];
        col[s - y0..e - y0].iter_mut().for_each(|p| *p = 1);
        if s + d < e.saturating_sub(d) {
            col[s + d - y0..e - d - y0].iter_mut().for_each(|p| *p |= 2);
        }
    }
    // Along rows: a pixel survives when the 2d + 1 columns centred on it all survived the
    // column pass. `len[y]` counts the surviving columns ending at the current one.
    let mut len = vec![0usize; ch];
    for xi in 0..cw {
        for (y, n) in len.iter_mut().enumerate() {
            if crop[xi * ch + y] & 2 != 0 {
                *n += 1;
                if *n > 2 * d {
                    crop[(xi - d) * ch + y] |= 4;
                }
            } else {
                *n = 0;
            }
        }
    }
    // Boundary = mask and not eroded, back to runs on the whole canvas.
    let mut counts = Vec::with_capacity(2 * runs.len() + 1);
    let mut last = 0usize; // end of the last run written
    let mut in_run = false;
    let mut run_start = 0usize;
    for xi in 0..cw {
        let base = (x0 + xi) * h + y0;
        for y in 0..ch {
            let v = crop[xi * ch + y];
            let on = v & 1 != 0 && v & 4 == 0;
            let p = base + y;
            if on && !in_run {
                counts.push((p - last) as u32);
                run_start = p;
                in_run = true;
            } else if !on && in_run {
                counts.push((p - run_start) as u32);
                last = p;
                in_run = false;
            }
        }
        // A run goes on into the next column only when the crop spans whole columns.
        if in_run && !(ch == h && xi + 1 < cw) {
            let p = base + ch;
            counts.push((p - run_start) as u32);
            last = p;
            in_run = false;
        }
    }
    let total = h * mask.w as usize;
    if last < total {
        counts.push((total - last) as u32);
    }
    Rle {
        h: mask.h,
        w: mask.w,
        counts,
    }
}

fn empty_like(mask: &Rle) -> Rle {
    Rle {
        h: mask.h,
        w: mask.w,
        counts: vec![mask.h * mask.w],
    }
}

/// Boundary AP's similarity of each detection (rows) with each ground truth (columns):
/// min(mask IoU, boundary IoU), or the mask's IoA against a crowd region. Row-major `D x G`,
/// empty when either side is; `dilation_ratio` as in [`dilation_pixels`].
pub fn boundary_similarity(
    dt: &[Rle],
    gt: &[Rle],
    iscrowd: &[bool],
    dilation_ratio: f64,
) -> Vec<f64> {
    boundary_similarity_from(dt, gt, iscrowd, dilation_ratio, f64::NEG_INFINITY)
}

/// [`boundary_similarity`] where it can reach `floor`: a pair whose mask IoU is below `floor`
/// keeps its mask IoU, since the minimum is below `floor` too. Matching never looks below its
/// lowest threshold, so with that threshold as `floor` the matches are those of the exact
/// similarity, and only the masks of pairs that can match need a boundary (on LVIS, a few of
/// the 300 detections of an image).
pub fn boundary_similarity_from(
    dt: &[Rle],
    gt: &[Rle],
    iscrowd: &[bool],
    dilation_ratio: f64,
    floor: f64,
) -> Vec<f64> {
    let mut ious = mask_iou_flat(dt, gt, iscrowd);
    if ious.is_empty() {
        return ious;
    }
    let g = gt.len();
    let wanted: Vec<bool> = (0..ious.len())
        .map(|k| !iscrowd[k % g] && ious[k] >= floor)
        .collect();
    let mut rows = vec![false; dt.len()];
    let mut cols = vec![false; g];
    for k in (0..ious.len()).filter(|&k| wanted[k]) {
        rows[k / g] = true;
        cols[k % g] = true;
    }
    let boundaries = |masks: &[Rle], keep: &[bool]| -> Vec<Option<Rle>> {
        masks
            .iter()
            .zip(keep)
            .map(|(m, &k)| k.then(|| mask_boundary(m, dilation_pixels(m.h, m.w, dilation_ratio))))
            .collect()
    };
    let (db, gb) = (boundaries(dt, &rows), boundaries(gt, &cols));
    for k in 0..ious.len() {
        if !wanted[k] {
            continue;
        }
        if let (Some(d), Some(t)) = (&db[k / g], &gb[k % g]) {
            let b = mask_iou_flat(std::slice::from_ref(d), std::slice::from_ref(t), &[false]);
            if let Some(&b) = b.first() {
                ious[k] = ious[k].min(b);
            }
        }
    }
    ious
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rle(h: u32, w: u32, counts: &[u32]) -> Rle {
        Rle {
            h,
            w,
            counts: counts.to_vec(),
        }
    }

    #[test]
    fn dilation_rounds_like_python() {
        // 0.02 * 25 = 0.5: Python's round gives 0, and the floor of 1 applies.
        assert_eq!(dilation_pixels(15, 20, 0.02), 1);
        assert_eq!(dilation_pixels(480, 640, 0.02), 16);
        assert_eq!(dilation_pixels(0, 0, 0.02), 1);
    }

    #[test]
    fn a_filled_square_keeps_a_ring() {
        // 5x5 canvas, all ones, d = 1: the outer ring is boundary, the 3x3 inside is not.
        let b = mask_boundary(&rle(5, 5, &[0, 25]), 1);
        let dense = hotcoco::mask::decode(&b);
        let inside = |x: usize, y: usize| (1..4).contains(&x) && (1..4).contains(&y);
        for x in 0..5 {
            for y in 0..5 {
                assert_eq!(dense[x * 5 + y], u8::from(!inside(x, y)), "({x}, {y})");
            }
        }
        assert_eq!(b.counts.iter().map(|&c| c as usize).sum::<usize>(), 25);
    }

    #[test]
    fn thin_masks_are_all_boundary() {
        let m = rle(4, 6, &[5, 3, 16]);
        assert_eq!(mask_boundary(&m, 2).counts, m.counts);
        let empty = rle(3, 3, &[9]);
        assert_eq!(mask_boundary(&empty, 1).counts, vec![9]);
    }

    #[test]
    fn similarity_is_the_smaller_iou_except_for_crowds() {
        let big = rle(8, 8, &[0, 64]);
        let inner = rle(8, 8, &[9, 6, 2, 6, 2, 6, 2, 6, 2, 6, 2, 6, 2, 6, 9]);
        let s = boundary_similarity(
            std::slice::from_ref(&inner),
            &[big.clone(), big.clone()],
            &[false, true],
            0.02,
        );
        assert_eq!(s.len(), 2);
        // Mask IoU 42/64; the boundaries (d = 1) share only what both rings cover.
        assert!(s[0] < 42.0 / 64.0);
        assert_eq!(s[1], 1.0);
        // Below the floor the mask IoU stands; above it the boundary's is taken.
        let f = boundary_similarity_from(
            std::slice::from_ref(&inner),
            &[big.clone(), big.clone()],
            &[false, true],
            0.02,
            0.9,
        );
        assert_eq!(f[0], 42.0 / 64.0);
        let f = boundary_similarity_from(
            std::slice::from_ref(&inner),
            &[big.clone(), big],
            &[false, true],
            0.02,
            0.5,
        );
        assert_eq!(f, s);
    }
}
