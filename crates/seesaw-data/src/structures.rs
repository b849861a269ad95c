//! What flows from the data pipeline into a detector: how an image became network input
//! ([`ImageMeta`]) and its ground truths at that scale ([`GtInstances`], [`GtMask`]). Plain
//! data without tensors; `seesaw_model::structures` re-exports them next to its `Detections`.

/// A box `[x1, y1, x2, y2]` in pixels (the type `seesaw_model::ops::Box2` names too).
pub type Box2 = [f32; 4];

/// How an image was turned into network input.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMeta {
    pub image_id: u64,
    /// Original `(height, width)`.
    pub ori_shape: (u32, u32),
    /// `(height, width)` after resizing, before padding.
    pub img_shape: (usize, usize),
    /// Input pixels per original pixel, `(x, y)`.
    pub scale: (f32, f32),
    /// Flipped horizontally after resizing.
    pub flip: bool,
}

impl ImageMeta {
    /// A box at input scale mapped back onto the original image.
    pub fn to_original(&self, b: &Box2) -> Box2 {
        let w = self.img_shape.1 as f32;
        let b = if self.flip {
            [w - b[2], b[1], w - b[0], b[3]]
        } else {
            *b
        };
        [
            b[0] / self.scale.0,
            b[1] / self.scale.1,
            b[2] / self.scale.0,
            b[3] / self.scale.1,
        ]
    }

    /// A box on the original image mapped onto the input (the inverse of `to_original`).
    pub fn to_input(&self, b: &Box2) -> Box2 {
        let b = [
            b[0] * self.scale.0,
            b[1] * self.scale.1,
            b[2] * self.scale.0,
            b[3] * self.scale.1,
        ];
        if self.flip {
            let w = self.img_shape.1 as f32;
            [w - b[2], b[1], w - b[0], b[3]]
        } else {
            b
        }
    }
}

/// A binary mask, row-major, 0 or 1.
#[derive(Debug, Clone, PartialEq)]
pub struct GtMask {
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

impl GtMask {
    /// An `height x width` mask set inside box `b = [x1, y1, x2, y2]` (pixel edges; the
    /// coordinates are truncated to whole pixels and clipped to the mask).
    pub fn filled_box(height: usize, width: usize, b: Box2) -> Self {
        let mut data = vec![0u8; height * width];
        let clip = |v: f32, hi: usize| (v.max(0.0) as usize).min(hi);
        let (x0, x1) = (clip(b[0], width), clip(b[2], width));
        if x1 > x0 {
            for y in clip(b[1], height)..clip(b[3], height) {
                data[y * width + x0..y * width + x1].fill(1);
            }
        }
        GtMask {
            height,
            width,
            data,
        }
    }

    /// The tight box `[x1, y1, x2, y2]` of the set pixels (pixel edges), `None` when empty.
    pub fn bbox(&self) -> Option<Box2> {
        let (mut x0, mut y0, mut x1, mut y1) = (self.width, self.height, 0, 0);
        for (y, row) in self.data.chunks_exact(self.width.max(1)).enumerate() {
            for (x, &v) in row.iter().enumerate() {
                if v != 0 {
                    (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
                }
            }
        }
        (x1 > x0 && y1 > y0).then_some([x0 as f32, y0 as f32, x1 as f32, y1 as f32])
    }
}

/// Ground truths of one image, at input scale.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GtInstances {
    pub boxes: Vec<Box2>,
    /// Class indices `0..C`.
    pub labels: Vec<usize>,
    /// One per box (empty when masks are not trained).
    pub masks: Vec<GtMask>,
    /// Crowd regions: anchors and proposals they cover are ignored.
    pub ignore: Vec<Box2>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_box_is_set_inside_the_box_and_clipped_to_the_mask() {
        let m = GtMask::filled_box(4, 5, [1.0, 1.5, 3.9, 3.0]);
        let rows: Vec<&[u8]> = m.data.chunks(5).collect();
        assert_eq!(
            rows,
            vec![
                &[0, 0, 0, 0, 0][..],
                &[0, 1, 1, 0, 0][..],
                &[0, 1, 1, 0, 0][..],
                &[0, 0, 0, 0, 0][..],
            ]
        );
        assert_eq!(m.bbox(), Some([1.0, 1.0, 3.0, 3.0]));
        let clipped = GtMask::filled_box(3, 3, [-2.0, -1.0, 9.0, 2.0]);
        assert_eq!(clipped.data, vec![1, 1, 1, 1, 1, 1, 0, 0, 0]);
        assert_eq!(GtMask::filled_box(3, 3, [2.0, 0.0, 1.0, 3.0]).bbox(), None);
    }
}
