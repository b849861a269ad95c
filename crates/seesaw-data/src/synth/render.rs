//! Rendering: cluttered backgrounds, placing instances so that each stays visible enough,
//! painting them, and writing the PNGs.

use std::f64::consts::PI;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::shapes::{polygon_area, rasterise, shape_polygons};
use super::{COLOURS, SHAPES, SynthConfig, class_parts, shuffle};
use crate::dataset::Image;
use crate::error::{DataError, Result};
use crate::io;
use crate::mask::Bitmap;

/// Unlabelled distractor colours: greys, white, black and brown.
const DISTRACTORS: [[u8; 3]; 4] = [
    [128, 128, 128],
    [235, 235, 235],
    [20, 20, 20],
    [130, 85, 40],
];

/// Geometric parameter for instances of a class in an image (1 to 3).
const INSTANCES_P: f64 = 0.75;
/// Fraction of an earlier object that must stay visible when a later one is placed.
const MIN_VISIBLE: f64 = 0.55;

/// Visible mask of each labelled instance of an image, with its class index.
pub(super) type Instances = Vec<(usize, Bitmap)>;
/// The images of a split, and the labelled instances of each.
pub(super) type Rendered = (Vec<Image>, Vec<Instances>);

/// Renders and writes the images of one split (`plan[i]`: the classes wanted in image `i`),
/// numbering them from `first_id`.
pub(super) fn render_split(
    cfg: &SynthConfig,
    out: &Path,
    split: &str,
    split_no: u64,
    plan: &[Vec<usize>],
    first_id: u64,
) -> Result<Rendered> {
    let classes = cfg.classes;
    let rendered: Vec<(Image, Instances)> = plan
        .par_iter()
        .enumerate()
        .map(|(i, wanted)| {
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            rng.set_stream((split_no << 40) | i as u64);
            let id = first_id + i as u64;
            let (pixels, objs) = render_image(cfg.size, wanted, &mut rng);
            let rel = format!("{split}/{id:06}.png");
            write_png(&out.join(&rel), &pixels, cfg.size)?;
            let present: std::collections::BTreeSet<u64> =
                objs.iter().map(|(k, _)| *k as u64 + 1).collect();
            let image = Image {
                id,
                width: cfg.size,
                height: cfg.size,
                file_name: Some(rel),
                coco_url: None,
                flickr_url: None,
                license: None,
                date_captured: None,
                // The labels are exhaustive: every absent class is verified absent.
                neg_category_ids: Some(
                    (1..=classes as u64)
                        .filter(|c| !present.contains(c))
                        .collect(),
                ),
                not_exhaustive_category_ids: Some(Vec::new()),
            };
            Ok((image, objs))
        })
        .collect::<Result<_>>()?;
    let (images, objs) = rendered.into_iter().unzip();
    Ok((images, objs))
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

/// Renders one image: returns RGB pixels and the visible mask of each labelled instance.
fn render_image(
    size: u32,
    wanted: &[usize],
    rng: &mut ChaCha8Rng,
) -> (Vec<f32>, Vec<(usize, Bitmap)>) {
    let s = size as usize;
    let scale = f64::from(size) / 128.0;
    let mut img = background(size, rng);

    // Objects to place: labelled instances (1-3 per wanted class) and 0-2 distractors,
    // in random order so that distractors may occlude objects too.
    let mut queue: Vec<Option<usize>> = Vec::new();
    for &c in wanted {
        let mut k = 1;
        while k < 3 && rng.random::<f64>() >= INSTANCES_P {
            k += 1;
        }
        queue.extend(std::iter::repeat_n(Some(c), k));
    }
    queue.extend(std::iter::repeat_n(None, rng.random_range(0..3)));
    shuffle(&mut queue, rng);

    let (min_d, max_d) = (18.0 * scale, 60.0 * scale);
    let mut placed: Vec<(Option<usize>, Bitmap)> = Vec::new();
    for cls in queue {
        let shape = match cls {
            Some(c) => class_parts(c).0,
            None => rng.random_range(0..SHAPES.len()),
        };
        let Some(mask) = place(size, shape, min_d, max_d, &placed, rng) else {
            continue;
        };
        for (_, m) in &mut placed {
            for (v, &n) in m.data.iter_mut().zip(&mask.data) {
                *v &= 1 - n;
            }
        }
        let colour = match cls {
            Some(c) => COLOURS[class_parts(c).1].1,
            None => DISTRACTORS[rng.random_range(0..DISTRACTORS.len())],
        };
        paint(&mut img, s, &mask, colour, rng);
        placed.push((cls, mask));
    }
    let min_area = (20.0 * scale * scale) as u64;
    let objs = placed
        .into_iter()
        .filter_map(|(c, m)| c.filter(|_| m.area() >= min_area).map(|c| (c, m)))
        .collect();
    (img, objs)
}

/// Tries to put one shape on the canvas: mostly inside the image, and leaving every earlier
/// object at least `MIN_VISIBLE` of its visible area.
fn place(
    size: u32,
    shape: usize,
    min_d: f64,
    max_d: f64,
    placed: &[(Option<usize>, Bitmap)],
    rng: &mut ChaCha8Rng,
) -> Option<Bitmap> {
    let side = f64::from(size);
    for attempt in 0..30 {
        let mut d = rng.random_range(min_d.ln()..max_d.ln()).exp();
        if attempt >= 15 {
            d *= 0.7;
        }
        let cx = rng.random_range(-0.25 * d..side + 0.25 * d);
        let cy = rng.random_range(-0.25 * d..side + 0.25 * d);
        let (polys, holes) = shape_polygons(shape, d, cx, cy, rng);
        let nominal = polys.iter().map(|p| polygon_area(p)).sum::<f64>()
            - holes.iter().map(|p| polygon_area(p)).sum::<f64>();
        let mask = rasterise(&polys, &holes, size)?;
        if (mask.area() as f64) < 0.75 * nominal || mask.area() == 0 {
            continue;
        }
        let keeps_others = placed.iter().all(|(_, m)| {
            let vis = m.area();
            let kept = m
                .data
                .iter()
                .zip(&mask.data)
                .filter(|&(&a, &b)| a == 1 && b == 0)
                .count();
            vis == 0 || kept as f64 >= MIN_VISIBLE * vis as f64
        });
        if keeps_others {
            return Some(mask);
        }
    }
    None
}

/// A low-saturation base with a gradient, grey clutter (lines and rectangles) and noise.
fn background(size: u32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let s = size as usize;
    let side = f64::from(size);
    let mut base = [0.0f64; 3];
    for b in &mut base {
        *b = rng.random_range(60.0..190.0);
    }
    let mean = base.iter().sum::<f64>() / 3.0;
    for b in &mut base {
        *b = mean + (*b - mean) * 0.25;
    }
    let (gx, gy) = (rng.random_range(-30.0..30.0), rng.random_range(-30.0..30.0));
    let mut img = vec![0f32; s * s * 3];
    for y in 0..s {
        for x in 0..s {
            let g = gx * x as f64 / side + gy * y as f64 / side;
            for ch in 0..3 {
                img[(y * s + x) * 3 + ch] = (base[ch] + g) as f32;
            }
        }
    }
    for _ in 0..rng.random_range(3..9) {
        let g: f64 = rng.random_range(40.0..220.0);
        let col: Vec<f32> = (0..3)
            .map(|_| (g + rng.random_range(-15.0..15.0)).clamp(0.0, 255.0) as f32)
            .collect();
        let shape = if rng.random::<bool>() {
            // A line, drawn as a thin quadrilateral.
            let (x0, y0, x1, y1) = (
                rng.random_range(0.0..side),
                rng.random_range(0.0..side),
                rng.random_range(0.0..side),
                rng.random_range(0.0..side),
            );
            let width = rng.random_range(1.0..3.5) * side / 128.0;
            let (dx, dy) = (x1 - x0, y1 - y0);
            let len = (dx * dx + dy * dy).sqrt().max(1e-6);
            let (nx, ny) = (-dy / len * width / 2.0, dx / len * width / 2.0);
            vec![
                x0 + nx,
                y0 + ny,
                x1 + nx,
                y1 + ny,
                x1 - nx,
                y1 - ny,
                x0 - nx,
                y0 - ny,
            ]
        } else {
            let (x0, y0) = (rng.random_range(0.0..side), rng.random_range(0.0..side));
            let (w, h) = (
                rng.random_range(5.0..side / 3.0),
                rng.random_range(5.0..side / 3.0),
            );
            vec![x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]
        };
        if let Some(m) = rasterise(&[shape], &[], size) {
            for (p, &v) in m.data.iter().enumerate() {
                if v != 0 {
                    img[p * 3..p * 3 + 3].copy_from_slice(&col);
                }
            }
        }
    }
    for v in &mut img {
        *v += (8.0 * normal(rng)) as f32;
    }
    img
}

/// Paints `mask` in `colour` with a random tint, a left-to-right shading and noise.
fn paint(img: &mut [f32], s: usize, mask: &Bitmap, colour: [u8; 3], rng: &mut ChaCha8Rng) {
    let tint: Vec<f64> = colour
        .iter()
        .map(|&c| f64::from(c) + rng.random_range(-20.0..20.0))
        .collect();
    let xs: Vec<f64> = (0..mask.data.len())
        .filter(|&p| mask.data[p] != 0)
        .map(|p| (p % s) as f64)
        .collect();
    if xs.is_empty() {
        return;
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
    let slope: f64 = rng.random_range(-0.2..0.2);
    for p in (0..mask.data.len()).filter(|&p| mask.data[p] != 0) {
        let shade = 1.0 + slope * ((p % s) as f64 - mean) / (3.0 * sd).max(1.0);
        for ch in 0..3 {
            img[p * 3 + ch] = (tint[ch] * shade + 6.0 * normal(rng)) as f32;
        }
    }
}

/// Writes RGB `pixels` (rounded and clamped to 0..=255) as a `size` x `size` PNG.
fn write_png(file: &Path, pixels: &[f32], size: u32) -> Result<()> {
    let bytes: Vec<u8> = pixels
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    let mut encoded = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut encoded),
        &bytes,
        size,
        size,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| DataError::Image {
        file: file.to_path_buf(),
        message: e.to_string(),
    })?;
    io::write_atomic(file, |w| std::io::Write::write_all(w, &encoded))
}
