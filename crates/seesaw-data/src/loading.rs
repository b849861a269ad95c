//! Loading: an image file decoded (as mmcv and detectron2 read it: [`crate::image_file`]) and
//! checked against its record's size, resized to a drawn scale (keep ratio), flipped if drawn and
//! normalised, with its annotations as ground truths at that scale: mmdetection's
//! `LoadImageFromFile` + `LoadAnnotations` + `Resize` + `RandomFlip` + `Normalize`
//! (`mmdet/datasets/transforms/loading.py`, `transforms.py`) in one pass over the pixels, since
//! the scale and the flip are drawn before the image is read.

use std::path::Path;

use crate::config::DataConfig;
use crate::error::{DataError, JsonPath, Result};
use crate::image_file::{check_image_size, read_image};
use crate::split::Split;
use crate::structures::{GtInstances, ImageMeta};
use crate::transforms::flip::flip_box;
use crate::transforms::resize::{
    ResizeKind, rescale, rescale_torchvision, resize_bilinear, resize_mask,
};

/// One image ready for the network, before padding.
#[derive(Debug, Clone)]
pub struct Sample {
    /// `[3, H, W]` normalised, row-major per channel.
    pub pixels: Vec<f32>,
    pub meta: ImageMeta,
    pub gt: GtInstances,
}

impl Split {
    /// Loads image `index`, resized to `scale` (`[short, long]`, keep ratio), flipped if asked,
    /// normalised (`cfg.mean`, `cfg.std`); with its ground truths at that scale (masks only when
    /// `with_masks`).
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
            DataError::invalid(
                &self.json,
                JsonPath::item("images", index),
                format!("image id {} has no file_name or coco_url", im.id),
            )
        })?;
        let path = self.image_root.join(&rel);
        let decoded = read_image(&path)?;
        check_image_size(&decoded, &path, im, index, &self.json)?;
        let (pixels, mut meta) = prepare_image(decoded.rgb, scale, flip, cfg);
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
                b = flip_box(b, w);
            }
            if ann.is_crowd() {
                gt.ignore.push(b);
                continue;
            }
            let Some(&class) = self.class_of.get(&ann.category_id) else {
                continue;
            };
            if with_masks {
                let at = JsonPath::item("annotations", a).field("segmentation");
                let seg = ann.mask().ok_or_else(|| {
                    DataError::invalid(
                        &self.json,
                        at.clone(),
                        format!(
                            "annotation id {} has no mask (the field is absent or an empty \
                             list); masks are trained (model.with_mask)",
                            ann.id
                        ),
                    )
                })?;
                let full = crate::mask::decode(seg, h0, w0).map_err(|e| {
                    DataError::invalid(&self.json, at, format!("annotation id {}: {e}", ann.id))
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

/// Reads an image file ([`read_image`]: EXIF orientation applied, a truncated file refused),
/// resizes it to `scale` (keep ratio), flips it if asked and normalises it: `[3, H, W]` pixels
/// and the meta (image id 0).
pub fn load_image(
    path: &Path,
    scale: [u32; 2],
    flip: bool,
    cfg: &DataConfig,
) -> Result<(Vec<f32>, ImageMeta)> {
    Ok(prepare_image(read_image(path)?.rgb, scale, flip, cfg))
}

/// [`prepare_image`] as torchvision's transform: normalised at the original size, then resized
/// bilinearly in float ([`ResizeKind::Torchvision`]), then flipped.
fn prepare_image_torchvision(
    rgb: &image::RgbImage,
    scale: [u32; 2],
    flip: bool,
    cfg: &DataConfig,
) -> (Vec<f32>, ImageMeta) {
    let (w0, h0) = rgb.dimensions();
    let (nh, nw, sx, sy) = rescale_torchvision(h0, w0, scale);
    let (h0u, w0u) = (h0 as usize, w0 as usize);
    let mut planes = vec![0f32; 3 * h0u * w0u];
    for (x, y, p) in rgb.enumerate_pixels() {
        for c in 0..3 {
            planes[c * h0u * w0u + y as usize * w0u + x as usize] =
                (f32::from(p[c]) - cfg.mean[c]) / cfg.std[c];
        }
    }
    let (h, w) = (nh as usize, nw as usize);
    let mut pixels = if (h, w) == (h0u, w0u) {
        planes
    } else {
        resize_bilinear(&planes, 3, (h0u, w0u), (h, w))
    };
    if flip {
        for row in pixels.chunks_exact_mut(w) {
            row.reverse();
        }
    }
    let meta = ImageMeta {
        image_id: 0,
        ori_shape: (h0, w0),
        img_shape: (h, w),
        scale: (sx, sy),
        flip,
    };
    (pixels, meta)
}

/// Resizes decoded pixels to `scale` (keep ratio), flips them if asked and normalises them.
fn prepare_image(
    rgb: image::RgbImage,
    scale: [u32; 2],
    flip: bool,
    cfg: &DataConfig,
) -> (Vec<f32>, ImageMeta) {
    let (w0, h0) = rgb.dimensions();
    if cfg.resize == ResizeKind::Torchvision {
        return prepare_image_torchvision(&rgb, scale, flip, cfg);
    }
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
    (pixels, meta)
}
