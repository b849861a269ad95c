//! The built-in long-tailed instance segmentation dataset: everything runs with no download.
//!
//! Classes are shape x colour (8 shapes, up to 10 colours). Each class gets a target number of
//! training images from a geometric schedule (from 40% of the training images down to 4), so
//! that, counted the LVIS way, the rare, common and frequent groups are all populated. Objects
//! vary in scale and rotation, occlude each other (each keeps at least 55% of itself visible),
//! and sit on cluttered backgrounds among unlabelled distractor shapes in colours no class uses.
//! Masks are exact: they are the pixels painted.
//!
//! Generation is deterministic for a seed, byte for byte, whatever the number of threads:
//! every image draws from its own random stream.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::dataset::{Annotation, Category, Dataset, Frequency, Image, Segmentation};
use crate::error::{DataError, Result};
use crate::io;
use crate::mask::Bitmap;

/// The shapes, in class order.
pub const SHAPES: [&str; 8] = [
    "circle", "square", "triangle", "star", "cross", "ring", "hexagon", "crescent",
];

/// Class colours (name, RGB); saturated, and far from every distractor colour.
pub const COLOURS: [(&str, [u8; 3]); 10] = [
    ("red", [215, 40, 40]),
    ("green", [40, 170, 50]),
    ("blue", [40, 70, 220]),
    ("yellow", [230, 205, 40]),
    ("magenta", [200, 50, 200]),
    ("orange", [240, 125, 20]),
    ("cyan", [30, 200, 210]),
    ("purple", [115, 45, 175]),
    ("pink", [250, 150, 185]),
    ("lime", [160, 230, 60]),
];

/// Unlabelled distractor colours: greys, white, black and brown.
const DISTRACTORS: [[u8; 3]; 4] = [
    [128, 128, 128],
    [235, 235, 235],
    [20, 20, 20],
    [130, 85, 40],
];

/// Settings of the generator. Defaults are the demo's (40 classes, 128 px, 1000 train images).
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Number of classes, at most `SHAPES.len() * COLOURS.len()` = 80. Default 40.
    pub classes: usize,
    /// Training images. Default 1000.
    pub train_images: usize,
    /// Validation images; `None` sizes the split so that each class lands in about
    /// `max(val_min_images, 10% of its train count)` images (2.5 classes per image).
    pub val_images: Option<usize>,
    /// Image side in pixels (square images). Default 128.
    pub size: u32,
    /// Seed of every random choice. Default 0.
    pub seed: u64,
    /// Target train images of the most frequent class, as a fraction of `train_images`. Default 0.4.
    pub max_count_frac: f64,
    /// Target train images of the rarest class. Default 4.
    pub min_count: usize,
    /// Minimum validation images per class. Default 15.
    pub val_min_images: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            classes: 40,
            train_images: 1000,
            val_images: None,
            size: 128,
            seed: 0,
            max_count_frac: 0.4,
            min_count: 4,
            val_min_images: 15,
        }
    }
}

/// The two splits, as written to disk.
#[derive(Debug, Clone)]
pub struct SynthOutput {
    pub train: Dataset,
    pub val: Dataset,
    pub train_json: PathBuf,
    pub val_json: PathBuf,
}

/// Most classes one image is given before others are preferred.
const MAX_CLASSES_PER_IMAGE: usize = 6;
/// Validation classes per image, used to size the validation split.
const VAL_CLASSES_PER_IMAGE: f64 = 2.5;
/// Geometric parameter for instances of a class in an image (1 to 3).
const INSTANCES_P: f64 = 0.75;
/// Fraction of an earlier object that must stay visible when a later one is placed.
const MIN_VISIBLE: f64 = 0.55;

impl SynthConfig {
    fn check(&self) -> Result<()> {
        let max = SHAPES.len() * COLOURS.len();
        let fail = |m: String| Err(DataError::Request(m));
        if self.classes == 0 || self.classes > max {
            return fail(format!(
                "--classes must be in 1..={max} (got {})",
                self.classes
            ));
        }
        if self.train_images < 2 {
            return fail(format!(
                "--train-images must be at least 2 (got {})",
                self.train_images
            ));
        }
        if self.size < 32 {
            return fail(format!("--size must be at least 32 px (got {})", self.size));
        }
        if self.val_images == Some(0) {
            return fail("--val-images must be positive".into());
        }
        Ok(())
    }

    /// Target train image count per class (class index order), before generation.
    fn train_targets(&self, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let c = self.classes;
        let max = (self.max_count_frac * self.train_images as f64).max(1.0);
        let min = (self.min_count as f64).clamp(1.0, max);
        let mut ranks: Vec<usize> = (0..c).collect();
        shuffle(&mut ranks, rng);
        (0..c)
            .map(|k| {
                let t = if c == 1 {
                    0.0
                } else {
                    ranks[k] as f64 / (c - 1) as f64
                };
                let v = (max.ln() + t * (min.ln() - max.ln())).exp();
                (v.round() as usize).clamp(1, self.train_images)
            })
            .collect()
    }
}

/// Name of class `k` (0-based): `red_circle`, ...
pub fn class_name(k: usize) -> String {
    let (shape, colour) = class_parts(k);
    format!("{}_{}", COLOURS[colour].0, SHAPES[shape])
}

fn class_parts(k: usize) -> (usize, usize) {
    (k % SHAPES.len(), (k / SHAPES.len()) % COLOURS.len())
}

/// Generates the dataset into `out`: `train/*.png`, `val/*.png`, `train.json`, `val.json`.
pub fn generate(cfg: &SynthConfig, out: &Path) -> Result<SynthOutput> {
    cfg.check()?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let targets = cfg.train_targets(&mut rng);
    let val_targets: Vec<usize> = targets
        .iter()
        .map(|&t| cfg.val_min_images.max((0.1 * t as f64).round() as usize))
        .collect();
    let n_val = cfg.val_images.unwrap_or_else(|| {
        (val_targets.iter().sum::<usize>() as f64 / VAL_CLASSES_PER_IMAGE).ceil() as usize
    });
    let train_plan = assign_classes(cfg.train_images, &targets, &targets, &mut rng);
    let val_plan = assign_classes(n_val, &val_targets, &targets, &mut rng);

    for split in ["train", "val"] {
        let dir = out.join(split);
        std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, "cannot create", e))?;
    }
    let train = render_split(cfg, out, "train", 0, &train_plan, 1)?;
    let val = render_split(cfg, out, "val", 1, &val_plan, cfg.train_images as u64 + 1)?;

    let categories = categories(cfg.classes, &train);
    let info = serde_json::json!({
        "description": "Seesaw built-in long-tailed shapes",
        "version": "1.0",
        "seed": cfg.seed,
    });
    let mut ann_id = 1;
    let mut finish = |images: Vec<Image>, rendered: Vec<Instances>| -> Result<Dataset> {
        let mut annotations = Vec::new();
        for (im, objs) in images.iter().zip(rendered) {
            for (k, m) in objs {
                let bbox = m.bbox().unwrap_or([0.0; 4]);
                annotations.push(Annotation {
                    id: ann_id,
                    image_id: im.id,
                    category_id: k as u64 + 1,
                    bbox,
                    area: m.area() as f64,
                    segmentation: Some(Segmentation::Rle(m.to_rle()?)),
                    iscrowd: None,
                    ignore: None,
                });
                ann_id += 1;
            }
        }
        Ok(Dataset {
            info: Some(info.clone()),
            licenses: Some(serde_json::json!([])),
            images,
            annotations,
            categories: categories.clone(),
        })
    };
    let train = finish(train.0, train.1)?;
    let val = finish(val.0, val.1)?;
    let train_json = out.join("train.json");
    let val_json = out.join("val.json");
    train.save(&train_json)?;
    val.save(&val_json)?;
    Ok(SynthOutput {
        train,
        val,
        train_json,
        val_json,
    })
}

/// Visible mask of each labelled instance of an image, with its class index.
type Instances = Vec<(usize, Bitmap)>;
type Rendered = (Vec<Image>, Vec<Instances>);

fn render_split(
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

fn categories(classes: usize, train: &Rendered) -> Vec<Category> {
    let mut images = vec![0u64; classes];
    let mut instances = vec![0u64; classes];
    for objs in &train.1 {
        let mut seen = vec![false; classes];
        for (k, _) in objs {
            instances[*k] += 1;
            if !std::mem::replace(&mut seen[*k], true) {
                images[*k] += 1;
            }
        }
    }
    (0..classes)
        .map(|k| {
            let name = class_name(k);
            let (shape, colour) = class_parts(k);
            Category {
                id: k as u64 + 1,
                supercategory: Some(SHAPES[shape].to_string()),
                frequency: Some(Frequency::from_image_count(images[k])),
                image_count: Some(images[k]),
                instance_count: Some(instances[k]),
                synonyms: Some(vec![name.clone()]),
                synset: Some(format!("{name}.n.01")),
                def: Some(format!("a {} {}", COLOURS[colour].0, SHAPES[shape])),
                name,
            }
        })
        .collect()
}

/// For each class, `counts[c]` distinct images, preferring the least loaded ones; frequent
/// classes are placed first. Images left empty get one class, drawn towards frequent ones.
fn assign_classes(
    n_images: usize,
    counts: &[usize],
    train_targets: &[usize],
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<usize>> {
    let mut per_image: Vec<Vec<usize>> = vec![Vec::new(); n_images];
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(counts[c]));
    for c in order {
        // Weighted sampling without replacement (Efraimidis-Spirakis keys).
        let mut keyed: Vec<(f64, usize)> = (0..n_images)
            .filter(|&i| per_image[i].len() < MAX_CLASSES_PER_IMAGE)
            .map(|i| {
                let w = (-0.7 * per_image[i].len() as f64).exp();
                let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                (u.ln() / w, i)
            })
            .collect();
        keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
        for &(_, i) in keyed.iter().take(counts[c]) {
            per_image[i].push(c);
        }
    }
    for classes in per_image.iter_mut().filter(|l| l.is_empty()) {
        let pick = (0..train_targets.len())
            .map(|c| (train_targets[c] as f64 * rng.random_range(0.5..1.0), c))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(0, |(_, c)| c);
        classes.push(pick);
    }
    per_image
}

fn shuffle<T>(v: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

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

/// Outline polygons and holes of a shape of diameter `d` centred at (`cx`, `cy`), with a random
/// aspect ratio and rotation.
fn shape_polygons(
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

fn polygon_area(p: &[f64]) -> f64 {
    let n = p.len() / 2;
    let mut a = 0.0;
    for i in 0..n {
        let j = (i + 1) % n;
        a += p[2 * i] * p[2 * j + 1] - p[2 * j] * p[2 * i + 1];
    }
    a.abs() / 2.0
}

/// Union of `polys` minus union of `holes`, rasterised with pycocotools' polygon rule.
fn rasterise(polys: &[Vec<f64>], holes: &[Vec<f64>], size: u32) -> Option<Bitmap> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SynthConfig {
        SynthConfig {
            classes: 12,
            train_images: 60,
            val_images: Some(12),
            size: 64,
            seed: 7,
            ..SynthConfig::default()
        }
    }

    #[test]
    fn same_seed_same_bytes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(&small(), a.path()).unwrap();
        generate(&small(), b.path()).unwrap();
        for rel in [
            "train.json",
            "val.json",
            "train/000001.png",
            "val/000061.png",
        ] {
            let x = std::fs::read(a.path().join(rel)).unwrap();
            let y = std::fs::read(b.path().join(rel)).unwrap();
            assert!(x == y, "{rel} differs between two runs with one seed");
        }
        let c = tempfile::tempdir().unwrap();
        generate(&SynthConfig { seed: 8, ..small() }, c.path()).unwrap();
        let x = std::fs::read(a.path().join("train.json")).unwrap();
        let z = std::fs::read(c.path().join("train.json")).unwrap();
        assert!(x != z, "another seed must give another dataset");
    }

    #[test]
    fn written_files_are_valid_and_masks_exact() {
        let dir = tempfile::tempdir().unwrap();
        let out = generate(&small(), dir.path()).unwrap();
        let train = Dataset::load(&out.train_json).unwrap();
        let val = Dataset::load(&out.val_json).unwrap();
        assert_eq!(train.images.len(), 60);
        assert_eq!(val.images.len(), 12);
        assert!(!train.annotations.is_empty());
        for ann in &train.annotations {
            let m = crate::mask::decode(ann.segmentation.as_ref().unwrap(), 64, 64).unwrap();
            assert_eq!(m.area() as f64, ann.area);
            assert_eq!(m.bbox().unwrap(), ann.bbox);
        }
        // neg_category_ids lists exactly the classes absent from each image.
        for (im, anns) in val.images.iter().zip(val.annotations_per_image()) {
            let present: std::collections::HashSet<u64> = anns
                .iter()
                .map(|&a| val.annotations[a].category_id)
                .collect();
            let neg = im.neg_category_ids.as_ref().unwrap();
            assert_eq!(neg.len() + present.len(), 12);
            assert!(neg.iter().all(|c| !present.contains(c)));
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for cfg in [
            SynthConfig {
                classes: 81,
                ..small()
            },
            SynthConfig {
                classes: 0,
                ..small()
            },
            SynthConfig { size: 8, ..small() },
            SynthConfig {
                train_images: 1,
                ..small()
            },
        ] {
            let err = generate(&cfg, dir.path()).unwrap_err();
            assert!(matches!(err, DataError::Request(_)), "{err}");
        }
    }
}
