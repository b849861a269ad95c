//! mmdetection's `RandomCrop` (`mmdet/datasets/transforms/transforms.py`, `crop_type`
//! "absolute", `allow_negative_crop=False`): a fixed-size window at a drawn offset, with the
//! instances clipped to it.

use crate::loading::Sample;
use crate::structures::{GtInstances, GtMask, ImageMeta};

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
