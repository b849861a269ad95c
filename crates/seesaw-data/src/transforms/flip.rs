//! mmdetection's `RandomFlip` (`mmdet/datasets/transforms/transforms.py`), horizontal only:
//! the draw, and the flip of a box. Pixels and masks are flipped in the same pass that resizes
//! them ([`crate::loading::load_image`], [`super::resize`]), since the flip is drawn before the
//! image is read.

use rand::Rng;

use crate::structures::Box2;

/// Whether to flip: true with probability `ratio` (clamped to 0-1).
pub fn draw_flip<R: Rng>(ratio: f64, rng: &mut R) -> bool {
    rng.random_bool(ratio.clamp(0.0, 1.0))
}

/// Box `b` on an image `width` pixels wide, mirrored left to right.
pub fn flip_box(b: Box2, width: usize) -> Box2 {
    [width as f32 - b[2], b[1], width as f32 - b[0], b[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_mirror_and_flip_back() {
        let b = [10.0, 5.0, 30.0, 20.0];
        assert_eq!(flip_box(b, 100), [70.0, 5.0, 90.0, 20.0]);
        assert_eq!(flip_box(flip_box(b, 100), 100), b);
    }
}
