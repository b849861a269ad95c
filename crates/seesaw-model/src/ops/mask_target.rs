//! Mask targets of mmdetection's mask head: the ground-truth mask of each positive RoI cropped
//! to the RoI and resized to `out x out`, binary. Polygons are cropped and scaled as polygons
//! and then rasterised (`PolygonMasks.crop_and_resize`); RLE masks are pooled with RoIAlign
//! (aligned, adaptive sampling) and thresholded at 0.5 (`BitmapMasks.crop_and_resize`).

use burn::tensor::{Device, Tensor, TensorData};
use seesaw_data::Segmentation;

use super::Box2;
use super::roi_align::{RoiAlignConfig, roi_align};
use crate::error::{ModelError, Result};

/// The `out x out` binary target (row-major) of ground truth `seg` (on an `img_h x img_w`
/// image) for the RoI `bbox`.
pub fn mask_target(
    seg: &Segmentation,
    img_h: u32,
    img_w: u32,
    bbox: &Box2,
    out: usize,
) -> Result<Vec<u8>> {
    let [x1, y1, x2, y2] = *bbox;
    if !bbox.iter().all(|v| v.is_finite()) {
        return Err(ModelError::Input(format!(
            "mask target of a box that is not finite: {bbox:?}"
        )));
    }
    match seg {
        Segmentation::Polygons(polys) => {
            let w = f64::from((x2 - x1).max(1.0));
            let h = f64::from((y2 - y1).max(1.0));
            let (sx, sy) = (out as f64 / w.max(0.1), out as f64 / h.max(0.1));
            let moved: Vec<Vec<f64>> = polys
                .iter()
                .map(|p| {
                    p.chunks_exact(2)
                        .flat_map(|xy| [(xy[0] - f64::from(x1)) * sx, (xy[1] - f64::from(y1)) * sy])
                        .collect()
                })
                .collect();
            rasterise(&moved, out)
        }
        Segmentation::Rle(_) => {
            let full = seesaw_data::mask::decode(seg, img_h, img_w)
                .map_err(|e| ModelError::Input(format!("mask target: {e}")))?;
            let device = Device::flex();
            let data: Vec<f32> = full.data.iter().map(|&v| f32::from(v)).collect();
            let x = Tensor::<4>::from_data(
                TensorData::new(data, [1, 1, img_h as usize, img_w as usize]),
                &device,
            );
            let cfg = RoiAlignConfig {
                output_size: out,
                spatial_scale: 1.0,
                sampling_ratio: 0,
                aligned: true,
            };
            let pooled = roi_align(x, &[[0.0, x1, y1, x2, y2]], &cfg)?;
            let v = pooled
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
            Ok(v.iter().map(|&p| u8::from(p >= 0.5)).collect())
        }
    }
}

/// Polygons already in target coordinates, rasterised by pycocotools' rule (through the data
/// layer's mask codec) on an `out x out` canvas, row-major.
fn rasterise(polys: &[Vec<f64>], out: usize) -> Result<Vec<u8>> {
    let seg = Segmentation::Polygons(polys.to_vec());
    let n = out as u32;
    let m = seesaw_data::mask::decode(&seg, n, n)
        .map_err(|e| ModelError::Input(format!("mask target: {e}")))?;
    Ok(m.data)
}

/// The `out x out` binary target of a full-image binary mask (`gt`, at the scale of `bbox`) for
/// the RoI `bbox`: the box clipped to the mask (mmdetection's `mask_target_single`), then
/// RoIAlign (aligned, adaptive sampling) of the mask, thresholded at 0.5, as mmdetection's
/// `BitmapMasks.crop_and_resize`; computed on the host, one channel.
pub fn mask_target_bitmap(gt: &crate::structures::GtMask, bbox: &Box2, out: usize) -> Vec<f32> {
    let (h, w) = (gt.height, gt.width);
    let mut t = vec![0f32; out * out];
    if h == 0 || w == 0 || out == 0 || !bbox.iter().all(|v| v.is_finite()) {
        return t;
    }
    let (fw, fh) = (w as f32, h as f32);
    let bbox = &[
        bbox[0].clamp(0.0, fw),
        bbox[1].clamp(0.0, fh),
        bbox[2].clamp(0.0, fw),
        bbox[3].clamp(0.0, fh),
    ];
    let at = |y: f32, x: f32| -> f32 {
        if y < -1.0 || y > h as f32 || x < -1.0 || x > w as f32 {
            return 0.0;
        }
        let (y0, y1, ly) = super::roi_align::axis(y, h);
        let (x0, x1, lx) = super::roi_align::axis(x, w);
        let v = |yy: usize, xx: usize| f32::from(gt.data[yy * w + xx]);
        (1.0 - ly) * (1.0 - lx) * v(y0, x0)
            + (1.0 - ly) * lx * v(y0, x1)
            + ly * (1.0 - lx) * v(y1, x0)
            + ly * lx * v(y1, x1)
    };
    let (x1, y1) = (bbox[0] - 0.5, bbox[1] - 0.5);
    let (rw, rh) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    let (bw, bh) = (rw / out as f32, rh / out as f32);
    let gy = (rh / out as f32).ceil().max(1.0) as usize;
    let gx = (rw / out as f32).ceil().max(1.0) as usize;
    let count = (gy * gx) as f32;
    for ph in 0..out {
        for pw in 0..out {
            let mut s = 0.0;
            for iy in 0..gy {
                let y = y1 + ph as f32 * bh + (iy as f32 + 0.5) * bh / gy as f32;
                for ix in 0..gx {
                    let x = x1 + pw as f32 * bw + (ix as f32 + 0.5) * bw / gx as f32;
                    s += at(y, x);
                }
            }
            t[ph * out + pw] = if s / count >= 0.5 { 1.0 } else { 0.0 };
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_and_rle_targets_by_hand() {
        // A 20 x 20 square whose left half is inside the RoI's left half.
        let square =
            Segmentation::Polygons(vec![vec![10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]]);
        let t = mask_target(&square, 40, 40, &[10.0, 10.0, 30.0, 30.0], 28).unwrap();
        assert!(
            t.iter().filter(|&&v| v == 1).count() >= 27 * 27,
            "the RoI is the square"
        );
        let t = mask_target(&square, 40, 40, &[0.0, 10.0, 40.0, 30.0], 28).unwrap();
        // Columns of the RoI 0..40 map to 0..28: the square is columns 7..21.
        assert_eq!(t[14 * 28 + 3], 0);
        assert_eq!(t[14 * 28 + 14], 1);
        assert_eq!(t[14 * 28 + 25], 0);
        // The same square as RLE gives the same picture.
        let mut bits = seesaw_data::mask::Bitmap::zeros(40, 40);
        for y in 10..30 {
            for x in 10..30 {
                bits.data[y * 40 + x] = 1;
            }
        }
        let rle = Segmentation::Rle(bits.to_rle().unwrap());
        let r = mask_target(&rle, 40, 40, &[0.0, 10.0, 40.0, 30.0], 28).unwrap();
        assert_eq!(r[14 * 28 + 3], 0);
        assert_eq!(r[14 * 28 + 14], 1);
        assert_eq!(r[14 * 28 + 25], 0);
        assert!(mask_target(&square, 40, 40, &[f32::NAN, 0.0, 1.0, 1.0], 28).is_err());
    }

    #[test]
    fn bitmap_targets_crop_and_resize_the_mask() {
        // Left half of a 20x20 image set.
        let gt = crate::structures::GtMask::filled_box(20, 20, [0.0, 0.0, 10.0, 20.0]);
        let t = mask_target_bitmap(&gt, &[0.0, 0.0, 20.0, 20.0], 4);
        assert_eq!(t, [1., 1., 0., 0.].repeat(4));
        assert_eq!(
            mask_target_bitmap(&gt, &[0.0, 5.0, 8.0, 15.0], 2),
            vec![1.0; 4]
        );
        assert_eq!(
            mask_target_bitmap(&gt, &[12.0, 0.0, 20.0, 8.0], 2),
            vec![0.0; 4]
        );
        assert_eq!(
            mask_target_bitmap(&gt, &[f32::NAN, 0.0, 1.0, 1.0], 2),
            vec![0.0; 4]
        );
    }
}
