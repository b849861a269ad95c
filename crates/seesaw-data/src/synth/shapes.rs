//! Shape outlines as polygons, and their exact rasterisation.

use std::f64::consts::PI;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::SHAPES;
use crate::mask::Bitmap;

/// Outline polygons and holes of a shape of diameter `d` centred at (`cx`, `cy`), with a random
/// aspect ratio and rotation.
pub(super) fn shape_polygons(
    shape: usize,
    d: f64,
    cx: f64,
    cy: f64,
    rng: &mut ChaCha8Rng,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let r = d / 2.0;
    let aspect: f64 = rng.random_range(0.8..1.25);
    let rot: f64 = rng.random_range(0.0..2.0 * PI);
    let (sn, cs) = rot.sin_cos();
    let tf = |pts: Vec<(f64, f64)>| -> Vec<f64> {
        pts.into_iter()
            .flat_map(|(x, y)| {
                let (x, y) = (x * aspect, y / aspect);
                [cx + x * cs - y * sn, cy + x * sn + y * cs]
            })
            .collect()
    };
    let regular = |n: usize, rad: f64, phase: f64, dx: f64| -> Vec<(f64, f64)> {
        (0..n)
            .map(|k| {
                let a = k as f64 * 2.0 * PI / n as f64 + phase;
                (dx + rad * a.cos(), rad * a.sin())
            })
            .collect()
    };
    match SHAPES[shape] {
        "square" => (vec![tf(regular(4, r, PI / 4.0, 0.0))], vec![]),
        "triangle" => (vec![tf(regular(3, r * 1.1, -PI / 2.0, 0.0))], vec![]),
        "star" => {
            let pts = (0..10)
                .map(|k| {
                    let rr = if k % 2 == 0 { r * 1.1 } else { r * 0.45 };
                    let a = k as f64 * PI / 5.0 - PI / 2.0;
                    (rr * a.cos(), rr * a.sin())
                })
                .collect();
            (vec![tf(pts)], vec![])
        }
        "cross" => {
            let w = r * 0.38;
            let pts = vec![
                (-w, -r),
                (w, -r),
                (w, -w),
                (r, -w),
                (r, w),
                (w, w),
                (w, r),
                (-w, r),
                (-w, w),
                (-r, w),
                (-r, -w),
                (-w, -w),
            ];
            (vec![tf(pts)], vec![])
        }
        "ring" => (
            vec![tf(regular(48, r, 0.0, 0.0))],
            vec![tf(regular(48, r * 0.5, 0.0, 0.0))],
        ),
        "hexagon" => (vec![tf(regular(6, r, 0.0, 0.0))], vec![]),
        "crescent" => (
            vec![tf(regular(48, r, 0.0, 0.0))],
            vec![tf(regular(48, r * 0.85, 0.0, r * 0.55))],
        ),
        _ => (vec![tf(regular(48, r, 0.0, 0.0))], vec![]),
    }
}

/// Area of a polygon given as flat `[x0, y0, x1, y1, ...]` (shoelace formula).
pub(super) fn polygon_area(p: &[f64]) -> f64 {
    let n = p.len() / 2;
    let mut a = 0.0;
    for i in 0..n {
        let j = (i + 1) % n;
        a += p[2 * i] * p[2 * j + 1] - p[2 * j] * p[2 * i + 1];
    }
    a.abs() / 2.0
}

/// Union of `polys` minus union of `holes`, rasterised with pycocotools' polygon rule.
pub(super) fn rasterise(polys: &[Vec<f64>], holes: &[Vec<f64>], size: u32) -> Option<Bitmap> {
    let fill = |ps: &[Vec<f64>]| -> Option<Bitmap> {
        let rle = hotcoco::mask::fr_polys(ps, size, size).ok()?;
        let col = hotcoco::mask::decode(&rle);
        let s = size as usize;
        let mut m = Bitmap::zeros(size, size);
        for x in 0..s {
            for y in 0..s {
                m.data[y * s + x] = u8::from(col[x * s + y] != 0);
            }
        }
        Some(m)
    };
    let mut mask = fill(polys)?;
    if !holes.is_empty() {
        let h = fill(holes)?;
        for (v, &o) in mask.data.iter_mut().zip(&h.data) {
            *v &= 1 - o;
        }
    }
    Some(mask)
}
