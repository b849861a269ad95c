//! The data pipeline: a dataset split with its images, the training order (uniform or
//! repeat-factor sampling, reshuffled each epoch), and the transforms (keep-ratio resize to a
//! drawn scale, horizontal flip, normalisation, padding into a batch).
//!
//! Everything random is a function of (seed, iteration), so a resumed run sees exactly the
//! batches an uninterrupted one would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use seesaw_data::Dataset;
use seesaw_data::sampling::{self, Rounding};
use seesaw_model::burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::structures::{GtInstances, GtMask, ImageMeta};

use crate::config::DataConfig;
use crate::error::{EngineError, Result};

/// A dataset split with its image folder.
#[derive(Debug, Clone)]
pub struct Split {
    pub dataset: Dataset,
    pub json: PathBuf,
    pub image_root: PathBuf,
    /// Category ids in class order (sorted ids).
    pub category_ids: Vec<u64>,
    class_of: HashMap<u64, usize>,
    anns_of: Vec<Vec<usize>>,
}

/// One image ready for the network, before padding.
#[derive(Debug, Clone)]
pub struct Sample {
    /// `[3, H, W]` normalised, row-major per channel.
    pub pixels: Vec<f32>,
    pub meta: ImageMeta,
    pub gt: GtInstances,
}

/// A padded batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, 3, H, W]`.
    pub images: Tensor<4>,
    pub metas: Vec<ImageMeta>,
    pub gts: Vec<GtInstances>,
}

impl Split {
    /// Loads the annotations (the images are read when sampled).
    pub fn load(json: &Path, image_root: &Path) -> Result<Self> {
        let dataset = Dataset::load(json)?;
        Ok(Self::new(dataset, json, image_root))
    }

    pub fn new(dataset: Dataset, json: &Path, image_root: &Path) -> Self {
        let mut category_ids: Vec<u64> = dataset.categories.iter().map(|c| c.id).collect();
        category_ids.sort_unstable();
        let class_of = category_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        let anns_of = dataset.annotations_per_image();
        Split {
            dataset,
            json: json.to_path_buf(),
            image_root: image_root.to_path_buf(),
            category_ids,
            class_of,
            anns_of,
        }
    }

    pub fn num_classes(&self) -> usize {
        self.category_ids.len()
    }

    /// Class names in class order.
    pub fn class_names(&self) -> Vec<String> {
        let by_id: HashMap<u64, &str> = self
            .dataset
            .categories
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect();
        self.category_ids
            .iter()
            .map(|id| by_id.get(id).copied().unwrap_or("?").to_string())
            .collect()
    }

    /// Per class, the number of images it appears in (for EQL, federated loss, RFS).
    pub fn image_counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.num_classes()];
        for anns in &self.anns_of {
            let mut seen: Vec<usize> = anns
                .iter()
                .filter_map(|&a| self.class_of.get(&self.dataset.annotations[a].category_id))
                .copied()
                .collect();
            seen.sort_unstable();
            seen.dedup();
            for c in seen {
                counts[c] += 1;
            }
        }
        counts
    }

    /// Images with at least one usable (non-crowd, non-empty) box: mmdetection's
    /// `filter_empty_gt` for training.
    pub fn trainable_images(&self) -> Vec<usize> {
        (0..self.dataset.images.len())
            .filter(|&i| {
                self.anns_of[i].iter().any(|&a| {
                    let ann = &self.dataset.annotations[a];
                    !ann.is_crowd() && ann.bbox[2] >= 1.0 && ann.bbox[3] >= 1.0
                })
            })
            .collect()
    }

    /// The training sampler of a config: every trainable image once an epoch ("random"), or
    /// repeated by its repeat factor ("rfs"; `rounding` "ceil" as mmdetection, "stochastic" as
    /// the LVIS paper and detectron2).
    pub fn train_sampler(
        &self,
        sampler: &str,
        threshold: f64,
        rounding: &str,
        seed: u64,
        batch_size: usize,
    ) -> Result<TrainSampler> {
        if sampler == "class_aware" {
            let images = self.trainable_images();
            let mut lists = vec![Vec::new(); self.num_classes()];
            for &i in &images {
                let mut classes: Vec<usize> = self.anns_of[i]
                    .iter()
                    .filter_map(|&a| self.class_of.get(&self.dataset.annotations[a].category_id))
                    .copied()
                    .collect();
                classes.sort_unstable();
                classes.dedup();
                for c in classes {
                    lists[c].push(i);
                }
            }
            lists.retain(|l| !l.is_empty());
            return Ok(TrainSampler::new(images, None, seed, batch_size)?.class_aware(lists));
        }
        let factors = if sampler == "rfs" {
            let rounding: Rounding = rounding.parse().map_err(EngineError::Request)?;
            Some((
                sampling::image_repeat_factors(&self.dataset, threshold),
                rounding,
            ))
        } else {
            None
        };
        TrainSampler::new(self.trainable_images(), factors, seed, batch_size)
    }

    /// Loads image `index`, resized to `scale` (`[short, long]`, keep ratio), flipped if asked,
    /// normalised; with its ground truths at that scale (masks only when `with_masks`).
    pub fn sample(
        &self,
        index: usize,
        scale: [u32; 2],
        flip: bool,
        cfg: &DataConfig,
        with_masks: bool,
    ) -> Result<Sample> {
        let im = &self.dataset.images[index];
        let rel = im.relative_path().ok_or_else(|| {
            EngineError::Request(format!(
                "{}: images[{index}] (id {}) has no file_name or coco_url",
                self.json.display(),
                im.id
            ))
        })?;
        let path = self.image_root.join(&rel);
        let (pixels, mut meta) = load_image(&path, scale, flip, cfg)?;
        meta.image_id = im.id;
        let (h0, w0) = meta.ori_shape;
        let (h, w) = meta.img_shape;
        let (sx, sy) = meta.scale;
        let mut gt = GtInstances::default();
        for &a in &self.anns_of[index] {
            let ann = &self.dataset.annotations[a];
            let [x, y, bw, bh] = ann.bbox;
            if bw < 1.0 || bh < 1.0 {
                continue;
            }
            let mut b = [
                x as f32 * sx,
                y as f32 * sy,
                (x + bw) as f32 * sx,
                (y + bh) as f32 * sy,
            ];
            if flip {
                b = [w as f32 - b[2], b[1], w as f32 - b[0], b[3]];
            }
            if ann.is_crowd() {
                gt.ignore.push(b);
                continue;
            }
            let Some(&class) = self.class_of.get(&ann.category_id) else {
                continue;
            };
            if with_masks {
                let seg = ann.segmentation.as_ref().ok_or_else(|| {
                    EngineError::Request(format!(
                        "{}: annotations (id {}) has no segmentation; masks are trained",
                        self.json.display(),
                        ann.id
                    ))
                })?;
                let full = seesaw_data::mask::decode(seg, h0, w0).map_err(|e| {
                    EngineError::Request(format!(
                        "{}: annotation id {}: {e}",
                        self.json.display(),
                        ann.id
                    ))
                })?;
                gt.masks.push(resize_mask(
                    &full.data,
                    h0 as usize,
                    w0 as usize,
                    h,
                    w,
                    flip,
                ));
            }
            gt.boxes.push(b);
            gt.labels.push(class);
        }
        Ok(Sample { pixels, meta, gt })
    }
}

/// mmdetection's `RandomCrop` (absolute size, boxes clipped to the crop) at offsets drawn as
/// fractions `fy`, `fx` of the free room: pixels, boxes and masks are cut to `[ch, cw]` (or
/// less, on a smaller image); instances that vanish are dropped, and with masks each box is
/// recomputed from its cropped mask. A crop that would leave no instance returns the sample
/// unchanged (mmdetection draws another image instead).
pub fn random_crop(s: Sample, [ch, cw]: [usize; 2], fy: f64, fx: f64) -> Sample {
    let (h, w) = s.meta.img_shape;
    let (ch, cw) = (ch.min(h), cw.min(w));
    if (ch, cw) == (h, w) || ch == 0 || cw == 0 {
        return s;
    }
    let y0 = ((fy.clamp(0.0, 1.0) * (h - ch + 1) as f64) as usize).min(h - ch);
    let x0 = ((fx.clamp(0.0, 1.0) * (w - cw + 1) as f64) as usize).min(w - cw);
    let clip = |b: &[f32; 4]| {
        [
            (b[0] - x0 as f32).clamp(0.0, cw as f32),
            (b[1] - y0 as f32).clamp(0.0, ch as f32),
            (b[2] - x0 as f32).clamp(0.0, cw as f32),
            (b[3] - y0 as f32).clamp(0.0, ch as f32),
        ]
    };
    let with_masks = s.gt.masks.len() == s.gt.boxes.len() && !s.gt.masks.is_empty();
    let mut gt = GtInstances {
        ignore: s.gt.ignore.iter().map(clip).collect(),
        ..Default::default()
    };
    for (k, b) in s.gt.boxes.iter().enumerate() {
        if with_masks {
            let m = &s.gt.masks[k];
            let mut data = vec![0u8; ch * cw];
            for y in 0..ch {
                let src = (y + y0) * m.width + x0;
                data[y * cw..(y + 1) * cw].copy_from_slice(&m.data[src..src + cw]);
            }
            let cropped = GtMask {
                height: ch,
                width: cw,
                data,
            };
            let Some(bx) = cropped.bbox() else { continue };
            gt.boxes.push(bx);
            gt.masks.push(cropped);
        } else {
            let c = clip(b);
            if c[2] - c[0] < 1.0 || c[3] - c[1] < 1.0 {
                continue;
            }
            gt.boxes.push(c);
        }
        gt.labels.push(s.gt.labels[k]);
    }
    if gt.boxes.is_empty() {
        return s;
    }
    let mut pixels = vec![0f32; 3 * ch * cw];
    for c in 0..3 {
        for y in 0..ch {
            let src = c * h * w + (y + y0) * w + x0;
            pixels[(c * ch + y) * cw..(c * ch + y + 1) * cw]
                .copy_from_slice(&s.pixels[src..src + cw]);
        }
    }
    Sample {
        pixels,
        meta: ImageMeta {
            img_shape: (ch, cw),
            ..s.meta
        },
        gt,
    }
}

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

/// Draws of mmdetection's `PhotoMetricDistortion` for one image; each is applied or not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Photometric {
    /// Added to every channel (0-255 scale).
    pub brightness: Option<f32>,
    /// Multiplies every channel.
    pub contrast: Option<f32>,
    /// Multiplies the HSV saturation.
    pub saturation: Option<f32>,
    /// Added to the HSV hue, in degrees.
    pub hue: Option<f32>,
}

impl Photometric {
    /// mmdetection's defaults: each part with probability 0.5, brightness +/-32, contrast and
    /// saturation 0.5-1.5, hue +/-18 degrees.
    pub fn draw<R: Rng>(rng: &mut R) -> Self {
        let mut part = |lo: f32, hi: f32| {
            let on = rng.random_bool(0.5);
            let v = lo + (hi - lo) * rng.random::<f32>();
            on.then_some(v)
        };
        Photometric {
            brightness: part(-32.0, 32.0),
            contrast: part(0.5, 1.5),
            saturation: part(0.5, 1.5),
            hue: part(-18.0, 18.0),
        }
    }

    /// Applies the distortion to normalised `[3, H, W]` pixels (undoing and redoing the
    /// normalisation with `mean` and `std`), clamping to 0-255 as uint8 images are.
    pub fn apply(&self, pixels: &mut [f32], mean: [f32; 3], std: [f32; 3]) {
        let n = pixels.len() / 3;
        for i in 0..n {
            let mut rgb: [f32; 3] = std::array::from_fn(|c| pixels[c * n + i] * std[c] + mean[c]);
            if let Some(d) = self.brightness {
                rgb = rgb.map(|v| (v + d).clamp(0.0, 255.0));
            }
            if let Some(k) = self.contrast {
                rgb = rgb.map(|v| (v * k).clamp(0.0, 255.0));
            }
            if self.saturation.is_some() || self.hue.is_some() {
                let (mut h, mut sat, v) = rgb_to_hsv(rgb);
                if let Some(k) = self.saturation {
                    sat = (sat * k).clamp(0.0, 1.0);
                }
                if let Some(d) = self.hue {
                    h = (h + d).rem_euclid(360.0);
                }
                rgb = hsv_to_rgb(h, sat, v);
            }
            for c in 0..3 {
                pixels[c * n + i] = (rgb[c] - mean[c]) / std[c];
            }
        }
    }
}

fn rgb_to_hsv([r, g, b]: [f32; 3]) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    let h = if d == 0.0 {
        0.0
    } else if max == r {
        60.0 * ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    let s = if max == 0.0 { 0.0 } else { d / max };
    (h, s, max)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let c = v * s;
    let x = c * (1.0 - ((h / 60.0).rem_euclid(2.0) - 1.0).abs());
    let m = v - c;
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    [r + m, g + m, b + m]
}

/// Reads an image file, resizes it to `scale` (keep ratio), flips it if asked and normalises
/// it: `[3, H, W]` pixels and the meta (image id 0).
pub fn load_image(
    path: &Path,
    scale: [u32; 2],
    flip: bool,
    cfg: &DataConfig,
) -> Result<(Vec<f32>, ImageMeta)> {
    let rgb = image::open(path)
        .map_err(|e| EngineError::Request(format!("{}: {e}", path.display())))?
        .to_rgb8();
    let (w0, h0) = rgb.dimensions();
    let (nh, nw, sx, sy) = rescale(h0, w0, scale);
    let rgb = if (nh, nw) == (h0, w0) {
        rgb
    } else {
        image::imageops::resize(&rgb, nw, nh, image::imageops::FilterType::Triangle)
    };
    let (h, w) = (nh as usize, nw as usize);
    let mut pixels = vec![0f32; 3 * h * w];
    for (x, y, p) in rgb.enumerate_pixels() {
        let x = if flip { w - 1 - x as usize } else { x as usize };
        for c in 0..3 {
            pixels[c * h * w + y as usize * w + x] = (f32::from(p[c]) - cfg.mean[c]) / cfg.std[c];
        }
    }
    let meta = ImageMeta {
        image_id: 0,
        ori_shape: (h0, w0),
        img_shape: (h, w),
        scale: (sx, sy),
        flip,
    };
    Ok((pixels, meta))
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
fn resize_mask(data: &[u8], h0: usize, w0: usize, h: usize, w: usize, flip: bool) -> GtMask {
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

/// Pads samples to a common size (a multiple of `divisor`) into one tensor on `device`.
pub fn collate(samples: Vec<Sample>, divisor: usize, device: &Device) -> Batch {
    let ph = samples
        .iter()
        .map(|s| s.meta.img_shape.0)
        .max()
        .unwrap_or(1);
    let pw = samples
        .iter()
        .map(|s| s.meta.img_shape.1)
        .max()
        .unwrap_or(1);
    let (ph, pw) = (
        ph.div_ceil(divisor) * divisor,
        pw.div_ceil(divisor) * divisor,
    );
    let b = samples.len();
    let mut data = vec![0f32; b * 3 * ph * pw];
    let mut metas = Vec::with_capacity(b);
    let mut gts = Vec::with_capacity(b);
    for (i, s) in samples.into_iter().enumerate() {
        let (h, w) = s.meta.img_shape;
        for c in 0..3 {
            for y in 0..h {
                let src = &s.pixels[c * h * w + y * w..c * h * w + y * w + w];
                let dst = ((i * 3 + c) * ph + y) * pw;
                data[dst..dst + w].copy_from_slice(src);
            }
        }
        metas.push(s.meta);
        gts.push(s.gt);
    }
    Batch {
        images: Tensor::from_data(TensorData::new(data, [b, 3, ph, pw]), device),
        metas,
        gts,
    }
}

/// The training order: epochs of a shuffled index list (with repeat factors, redrawn each
/// epoch when rounding is stochastic), every choice a function of (seed, epoch).
#[derive(Debug, Clone)]
pub struct TrainSampler {
    images: Vec<usize>,
    factors: Option<(Vec<f64>, Rounding)>,
    /// Class-aware sampling: the images of each class.
    class_images: Option<Vec<Vec<usize>>>,
    seed: u64,
    batch_size: usize,
    /// Where each epoch generated so far starts, in samples, and the last epoch's order.
    starts: Vec<usize>,
    current: (u64, Vec<usize>),
}

impl TrainSampler {
    pub fn new(
        images: Vec<usize>,
        factors: Option<(Vec<f64>, Rounding)>,
        seed: u64,
        batch_size: usize,
    ) -> Result<Self> {
        if images.is_empty() || batch_size == 0 {
            return Err(EngineError::Request(
                "the training set has no image with a usable annotation".into(),
            ));
        }
        let mut s = Self {
            images,
            factors,
            class_images: None,
            seed,
            batch_size,
            starts: vec![0],
            current: (u64::MAX, vec![]),
        };
        let first = s.epoch_order(0);
        s.starts.push(first.len());
        s.current = (0, first);
        Ok(s)
    }

    /// mmdetection's `ClassAwareSampler` (one sample per class draw): each sample is a class
    /// drawn uniformly, then one of its images; an epoch has as many samples as images.
    pub fn class_aware(mut self, lists: Vec<Vec<usize>>) -> Self {
        if !lists.is_empty() {
            self.class_images = Some(lists);
            self.starts = vec![0];
            let first = self.epoch_order(0);
            self.starts.push(first.len());
            self.current = (0, first);
        }
        self
    }

    /// Samples in the first epoch.
    pub fn epoch_len(&self) -> usize {
        self.starts[1]
    }

    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream((0x0EB0C << 20) | epoch);
        if let Some(lists) = &self.class_images {
            return (0..self.images.len())
                .map(|_| {
                    let l = &lists[rng.random_range(0..lists.len())];
                    l[rng.random_range(0..l.len())]
                })
                .collect();
        }
        let mut order = match &self.factors {
            Some((f, rounding)) => sampling::epoch_indices(&self.images, f, *rounding, &mut rng),
            None => self.images.clone(),
        };
        if order.is_empty() {
            order = self.images.clone();
        }
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        order
    }

    /// The epoch holding sample `k`, generating epochs as needed.
    fn locate(&mut self, k: usize) -> (u64, usize) {
        while *self.starts.last().unwrap_or(&0) <= k {
            let e = (self.starts.len() - 1) as u64;
            let len = self.epoch_order(e).len();
            let end = self.starts.last().copied().unwrap_or(0) + len;
            self.starts.push(end);
        }
        let e = self.starts.partition_point(|&s| s <= k) - 1;
        (e as u64, k - self.starts[e])
    }

    /// Image indices of iteration `iter`.
    pub fn batch(&mut self, iter: usize) -> Vec<usize> {
        let start = iter * self.batch_size;
        let mut out = Vec::with_capacity(self.batch_size);
        for k in start..start + self.batch_size {
            let (e, pos) = self.locate(k);
            if self.current.0 != e {
                self.current = (e, self.epoch_order(e));
            }
            out.push(self.current.1[pos]);
        }
        out
    }
}

/// The generator of iteration `iter`'s random choices (scales, flips, sampled RoIs).
pub fn iteration_rng(seed: u64, iter: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(0x17E4 << 32 | iter as u64);
    rng
}

/// A training scale: one of `scales` ("value"), or a short and a long side drawn uniformly
/// between the smallest and largest of `scales` ("range"), as mmdetection's `Resize`.
pub fn draw_scale<R: Rng>(scales: &[[u32; 2]], mode: &str, rng: &mut R) -> [u32; 2] {
    if mode == "range" && scales.len() >= 2 {
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

/// Loads the training samples of iteration `iter` (images in parallel), with the generator
/// that goes on to draw the iteration's anchors and RoIs.
pub fn train_samples(
    split: &Split,
    sampler: &mut TrainSampler,
    iter: usize,
    seed: u64,
    cfg: &DataConfig,
    with_masks: bool,
) -> Result<(Vec<Sample>, ChaCha8Rng)> {
    let mut rng = iteration_rng(seed, iter);
    type Plan = (usize, [u32; 2], bool, f64, f64, Option<Photometric>, u64);
    let plan: Vec<Plan> = sampler
        .batch(iter)
        .into_iter()
        .map(|i| {
            let s = draw_scale(&cfg.train_scales, &cfg.train_scale_mode, &mut rng);
            let flip = rng.random_bool(cfg.flip_ratio.clamp(0.0, 1.0));
            // Draws only for the augmentations that are on, so that turning one on leaves
            // the others' draws (and a recipe without it) as they were.
            let crop_on = cfg.crop_size[0] > 0 && cfg.crop_size[1] > 0;
            let (fy, fx) = if crop_on {
                (rng.random::<f64>(), rng.random::<f64>())
            } else {
                (0.0, 0.0)
            };
            let photo = cfg.photometric.then(|| Photometric::draw(&mut rng));
            let jitter_seed = if cfg.instaboost > 0.0 {
                rng.random::<u64>()
            } else {
                0
            };
            (i, s, flip, fy, fx, photo, jitter_seed)
        })
        .collect();
    let crop = cfg.crop_size.map(|v| v as usize);
    let samples = plan
        .par_iter()
        .map(|&(i, s, f, fy, fx, photo, jitter_seed)| {
            let mut sample = split.sample(i, s, f, cfg, with_masks)?;
            if cfg.instaboost > 0.0 && with_masks {
                sample = instaboost(sample, cfg.instaboost, jitter_seed);
            }
            if let Some(p) = photo {
                p.apply(&mut sample.pixels, cfg.mean, cfg.std);
            }
            Ok(if crop[0] > 0 && crop[1] > 0 {
                random_crop(sample, crop, fy, fx)
            } else {
                sample
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((samples, rng))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn sampler_is_a_function_of_seed_and_iteration() {
        let mut s = TrainSampler::new((0..10).collect(), None, 3, 4).expect("sampler");
        let first: Vec<usize> = (0..5).flat_map(|i| s.batch(i)).collect();
        // Two epochs: each a permutation of all indices.
        let mut e0 = first[..10].to_vec();
        e0.sort_unstable();
        assert_eq!(e0, (0..10).collect::<Vec<_>>());
        assert_ne!(first[..10], first[10..20]);
        let mut fresh = TrainSampler::new((0..10).collect(), None, 3, 4).expect("s");
        assert_eq!(fresh.batch(3), first[12..16]);

        // Stochastic repeat factors: image 0 has r = 2.5 (2 or 3 a time), the rest 1; epochs
        // differ in length, and a sampler asked for iteration 40 first agrees with one that
        // walked there.
        let mut factors = vec![1.0; 10];
        factors[0] = 2.5;
        let mk = || {
            TrainSampler::new(
                (0..10).collect(),
                Some((factors.clone(), Rounding::Stochastic)),
                5,
                4,
            )
            .expect("rfs")
        };
        let mut walked = mk();
        let seq: Vec<Vec<usize>> = (0..41).map(|i| walked.batch(i)).collect();
        assert_eq!(mk().batch(40), seq[40]);
        let lens: Vec<usize> = walked.starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(lens.iter().all(|&l| l == 11 || l == 12), "{lens:?}");
        assert!(lens.contains(&11) && lens.contains(&12), "{lens:?}");
        let ceil = TrainSampler::new((0..10).collect(), Some((factors, Rounding::Ceil)), 5, 4)
            .expect("ceil");
        assert_eq!(ceil.epoch_len(), 12);
    }

    #[test]
    fn transformed_masks_match_their_boxes_and_repeat_per_seed() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = seesaw_data::generate(
            &seesaw_data::SynthConfig {
                classes: 6,
                train_images: 12,
                val_images: Some(2),
                ..Default::default()
            },
            dir.path(),
        )
        .expect("synth");
        let split = Split::new(out.train, &out.train_json, dir.path());
        let cfg = DataConfig {
            train_scales: vec![[96, 96], [128, 128], [160, 200]],
            crop_size: [80, 100],
            photometric: true,
            instaboost: 0.5,
            ..Default::default()
        };
        let mut sampler = split
            .train_sampler("random", 1e-3, "ceil", 1, 4)
            .expect("sampler");
        let (mut seen, mut cropped) = (0, 0);
        for iter in 0..6 {
            let (a, _) = train_samples(&split, &mut sampler, iter, 9, &cfg, true).expect("a");
            let (b, _) = train_samples(&split, &mut sampler, iter, 9, &cfg, true).expect("b");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.pixels, y.pixels);
                assert_eq!(x.gt, y.gt);
                let (h, w) = x.meta.img_shape;
                assert_eq!(x.pixels.len(), 3 * h * w);
                // Cropped, or left whole when no instance would survive the crop.
                cropped += usize::from(h <= 80 && w <= 100);
                assert_eq!(x.gt.masks.len(), x.gt.boxes.len());
                for (m, bx) in x.gt.masks.iter().zip(&x.gt.boxes) {
                    assert_eq!((m.height, m.width), (h, w));
                    let got = m.bbox().expect("no empty mask");
                    for k in 0..4 {
                        assert!(
                            (got[k] - bx[k]).abs() <= 1.5,
                            "mask box {got:?} vs box {bx:?}"
                        );
                    }
                    seen += 1;
                }
            }
        }
        assert!(seen > 20, "{seen} instances checked");
        assert!(cropped > 12, "{cropped} of 24 samples cropped");
    }

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

    #[test]
    fn class_aware_sampling_and_range_scales() {
        // Class 0 in images 0-7, class 1 in image 8 only: class-aware draws image 8 about
        // half the time.
        let lists = vec![(0..8).collect::<Vec<usize>>(), vec![8]];
        let mut s = TrainSampler::new((0..9).collect(), None, 1, 9)
            .expect("s")
            .class_aware(lists);
        let drawn: Vec<usize> = (0..100).flat_map(|i| s.batch(i)).collect();
        let eights = drawn.iter().filter(|&&i| i == 8).count();
        assert!((350..=550).contains(&eights), "{eights} of 900");
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for _ in 0..100 {
            let [a, b] = draw_scale(&[[640, 1333], [800, 1400]], "range", &mut rng);
            assert!((640..=800).contains(&a) && (1333..=1400).contains(&b));
            let v = draw_scale(&[[640, 1333], [800, 1400]], "value", &mut rng);
            assert!(v == [640, 1333] || v == [800, 1400]);
        }
    }

    #[test]
    fn photometric_parts_by_hand() {
        let (mean, std) = ([0.0; 3], [1.0; 3]);
        // One pixel, red-ish: [200, 100, 50].
        let px = || vec![200.0, 100.0, 50.0];
        let none = Photometric {
            brightness: None,
            contrast: None,
            saturation: None,
            hue: None,
        };
        let mut p = px();
        none.apply(&mut p, mean, std);
        assert_eq!(p, px());
        let mut p = px();
        Photometric {
            brightness: Some(60.0),
            ..none
        }
        .apply(&mut p, mean, std);
        assert_eq!(p, vec![255.0, 160.0, 110.0]);
        let mut p = px();
        Photometric {
            contrast: Some(0.5),
            ..none
        }
        .apply(&mut p, mean, std);
        assert_eq!(p, vec![100.0, 50.0, 25.0]);
        // Saturation 0 gives grey at the value (max channel); hue 120 turns red into green.
        let mut p = px();
        Photometric {
            saturation: Some(0.0),
            ..none
        }
        .apply(&mut p, mean, std);
        assert_eq!(p, vec![200.0, 200.0, 200.0]);
        let mut p = vec![200.0, 0.0, 0.0];
        Photometric {
            hue: Some(120.0),
            ..none
        }
        .apply(&mut p, mean, std);
        assert!(
            (p[0] - 0.0).abs() < 1e-3 && (p[1] - 200.0).abs() < 1e-3 && p[2].abs() < 1e-3,
            "{p:?}"
        );
        // Round trip through HSV keeps the colour.
        let (h, s, v) = rgb_to_hsv([200.0, 100.0, 50.0]);
        let back = hsv_to_rgb(h, s, v);
        assert!(
            back.iter()
                .zip([200.0, 100.0, 50.0])
                .all(|(a, b)| (a - b).abs() < 1e-3)
        );
    }

    #[test]
    fn masks_resize_and_flip() {
        let m = resize_mask(&[1, 0, 0, 0], 2, 2, 4, 4, true);
        assert_eq!(m.data[..4], [0, 0, 1, 1]);
        assert_eq!(m.data[12..], [0, 0, 0, 0]);
    }
}
