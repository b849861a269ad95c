//! mmdetection's `AnchorGenerator`: per level, base anchors of every (ratio, scale) centred on
//! the cell's top-left corner (centre offset 0), repeated over the feature map; with
//! torchvision's `AnchorGenerator` (torchvision/models/detection/anchor_utils.py) as options:
//! base anchors rounded (`torch.round`, half to even) and each level's strides the input's
//! size divided by the level's (integer division, per axis).

use super::Box2;

/// Anchor settings; mmdetection's RPN defaults: strides 4-64, ratios 0.5/1/2, scale 8.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorGenerator {
    pub strides: Vec<f32>,
    /// Height / width.
    pub ratios: Vec<f32>,
    pub scales: Vec<f32>,
    /// Base anchors rounded to whole pixels, half to even (torchvision). Default false.
    pub round_base: bool,
    /// A level's strides are `input size // level size` per axis (torchvision) instead of
    /// `strides`; with an input not a multiple of the coarsest stride they differ (a 800-pixel
    /// side has a 13-cell P6 of stride 61). Default false.
    pub strides_from_sizes: bool,
}

impl Default for AnchorGenerator {
    fn default() -> Self {
        Self {
            strides: vec![4.0, 8.0, 16.0, 32.0, 64.0],
            ratios: vec![0.5, 1.0, 2.0],
            scales: vec![8.0],
            round_base: false,
            strides_from_sizes: false,
        }
    }
}

impl AnchorGenerator {
    /// Anchors per location.
    pub fn num_base_anchors(&self) -> usize {
        self.ratios.len() * self.scales.len()
    }

    /// The base anchors of level `level`, ratio-major then scale, centred at (0, 0).
    pub fn base_anchors(&self, level: usize) -> Vec<Box2> {
        let base = self.strides[level];
        let mut out = Vec::with_capacity(self.num_base_anchors());
        for &r in &self.ratios {
            let h_ratio = r.sqrt();
            let w_ratio = 1.0 / h_ratio;
            for &s in &self.scales {
                let (w, h) = (base * w_ratio * s, base * h_ratio * s);
                let b = [-0.5 * w, -0.5 * h, 0.5 * w, 0.5 * h];
                out.push(if self.round_base {
                    b.map(f32::round_ties_even)
                } else {
                    b
                });
            }
        }
        out
    }

    /// All anchors of level `level` on a `height` x `width` feature map: row-major cells, each
    /// with its base anchors in order (`[H * W * A]`).
    pub fn grid_anchors(&self, level: usize, height: usize, width: usize) -> Vec<Box2> {
        let s = self.strides[level];
        self.grid_anchors_strided(level, height, width, (s, s))
    }

    /// [`Self::grid_anchors`] with the strides `(y, x)` given.
    pub fn grid_anchors_strided(
        &self,
        level: usize,
        height: usize,
        width: usize,
        (stride_y, stride_x): (f32, f32),
    ) -> Vec<Box2> {
        let base = self.base_anchors(level);
        let mut out = Vec::with_capacity(height * width * base.len());
        for y in 0..height {
            for x in 0..width {
                let (sx, sy) = (x as f32 * stride_x, y as f32 * stride_y);
                out.extend(
                    base.iter()
                        .map(|b| [b[0] + sx, b[1] + sy, b[2] + sx, b[3] + sy]),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_and_grid_anchors_by_hand() {
        let g = AnchorGenerator::default();
        let base = g.base_anchors(0);
        // Stride 4, scale 8: a 32 x 32 square at ratio 1; ratio 0.5 is wider than tall.
        assert_eq!(base.len(), 3);
        assert_eq!(base[1], [-16.0, -16.0, 16.0, 16.0]);
        let w = 32.0 / 0.5f32.sqrt();
        let h = 32.0 * 0.5f32.sqrt();
        assert!((base[0][2] - w / 2.0).abs() < 1e-4 && (base[0][3] - h / 2.0).abs() < 1e-4);
        let grid = g.grid_anchors(0, 2, 3);
        assert_eq!(grid.len(), 2 * 3 * 3);
        // Cell (y = 1, x = 2), ratio 1: shifted by (8, 4).
        assert_eq!(grid[(3 + 2) * 3 + 1], [-8.0, -12.0, 24.0, 20.0]);
    }

    #[test]
    fn torchvision_rounds_base_anchors_half_to_even() {
        let g = AnchorGenerator {
            round_base: true,
            ..Default::default()
        };
        // Ratio 0.5 at size 32: 45.25 x 22.63 -> half sides 22.63, 11.31 -> 23, 11.
        assert_eq!(g.base_anchors(0)[0], [-23.0, -11.0, 23.0, 11.0]);
        // Size 64, ratio 2: half sides 22.63 x 45.25 -> 23 x 45.
        assert_eq!(g.base_anchors(1)[2], [-23.0, -45.0, 23.0, 45.0]);
        assert_eq!(2.5f32.round_ties_even(), 2.0);
    }
}
