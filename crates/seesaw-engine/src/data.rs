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

    /// The training index list: each trainable image once ("random"), or ⌈r(I)⌉ times with
    /// r(I) = max over its classes of max(1, sqrt(t / f(c))) ("rfs", mmdetection's
    /// `ClassBalancedDataset`).
    pub fn train_indices(&self, sampler: &str, threshold: f64) -> Vec<usize> {
        let images = self.trainable_images();
        if sampler != "rfs" {
            return images;
        }
        let total = self.dataset.images.len().max(1) as f64;
        let counts = self.image_counts();
        let class_rf: Vec<f64> = counts
            .iter()
            .map(|&n| (threshold / (n as f64 / total).max(1e-12)).sqrt().max(1.0))
            .collect();
        let mut out = Vec::new();
        for i in images {
            let r = self.anns_of[i]
                .iter()
                .filter_map(|&a| self.class_of.get(&self.dataset.annotations[a].category_id))
                .map(|&c| class_rf[c])
                .fold(1.0, f64::max);
            out.extend(std::iter::repeat_n(i, r.ceil() as usize));
        }
        out
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

/// The training order: epochs of a shuffled index list, every choice a function of
/// (seed, iteration).
#[derive(Debug, Clone)]
pub struct TrainSampler {
    indices: Vec<usize>,
    seed: u64,
    batch_size: usize,
}

impl TrainSampler {
    pub fn new(indices: Vec<usize>, seed: u64, batch_size: usize) -> Result<Self> {
        if indices.is_empty() {
            return Err(EngineError::Request(
                "the training set has no image with a usable annotation".into(),
            ));
        }
        Ok(Self {
            indices,
            seed,
            batch_size,
        })
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(0x0EB0C << 20 | epoch);
        let mut order = self.indices.clone();
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        order
    }

    /// Image indices of iteration `iter`.
    pub fn batch(&self, iter: usize) -> Vec<usize> {
        let n = self.indices.len();
        let start = iter * self.batch_size;
        let mut out = Vec::with_capacity(self.batch_size);
        let mut epoch = u64::MAX;
        let mut order = Vec::new();
        for k in start..start + self.batch_size {
            let e = (k / n) as u64;
            if e != epoch {
                epoch = e;
                order = self.epoch_order(e);
            }
            out.push(order[k % n]);
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

/// Loads the training batch of iteration `iter` (images in parallel).
pub fn train_batch(
    split: &Split,
    sampler: &TrainSampler,
    iter: usize,
    seed: u64,
    cfg: &DataConfig,
    with_masks: bool,
    device: &Device,
) -> Result<(Batch, ChaCha8Rng)> {
    let mut rng = iteration_rng(seed, iter);
    let plan: Vec<(usize, [u32; 2], bool)> = sampler
        .batch(iter)
        .into_iter()
        .map(|i| {
            let s = cfg.train_scales[rng.random_range(0..cfg.train_scales.len())];
            (i, s, rng.random_bool(cfg.flip_ratio.clamp(0.0, 1.0)))
        })
        .collect();
    let samples = plan
        .par_iter()
        .map(|&(i, s, f)| split.sample(i, s, f, cfg, with_masks))
        .collect::<Result<Vec<_>>>()?;
    Ok((collate(samples, cfg.size_divisor, device), rng))
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
        let s = TrainSampler::new((0..10).collect(), 3, 4).expect("sampler");
        let first: Vec<usize> = (0..5).flat_map(|i| s.batch(i)).collect();
        // Two epochs: each a permutation of all indices.
        let mut e0 = first[..10].to_vec();
        e0.sort_unstable();
        assert_eq!(e0, (0..10).collect::<Vec<_>>());
        assert_eq!(
            s.batch(3),
            TrainSampler::new((0..10).collect(), 3, 4)
                .expect("s")
                .batch(3)
        );
        assert_ne!(first[..10], first[10..20]);
    }

    #[test]
    fn masks_resize_and_flip() {
        let m = resize_mask(&[1, 0, 0, 0], 2, 2, 4, 4, true);
        assert_eq!(m.data[..4], [0, 0, 1, 1]);
        assert_eq!(m.data[12..], [0, 0, 0, 0]);
    }
}
