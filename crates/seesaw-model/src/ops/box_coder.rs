//! mmdetection's `DeltaXYWHBBoxCoder`: boxes as centre and size deltas from a reference box,
//! normalised by means and stds, with the size delta clipped on decoding.

use super::Box2;

/// Settings; RCNN heads use stds (0.1, 0.1, 0.2, 0.2), the RPN (1, 1, 1, 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeltaXywhCoder {
    /// Default zeros.
    pub means: [f32; 4],
    /// Default ones.
    pub stds: [f32; 4],
    /// Largest |dw|, |dh| on decoding is `|ln(wh_ratio_clip)|`. Default 16 / 1000.
    pub wh_ratio_clip: f32,
}

impl Default for DeltaXywhCoder {
    fn default() -> Self {
        Self {
            means: [0.0; 4],
            stds: [1.0; 4],
            wh_ratio_clip: 16.0 / 1000.0,
        }
    }
}

impl DeltaXywhCoder {
    /// The deltas that move `reference` onto `target`.
    pub fn encode(&self, reference: &Box2, target: &Box2) -> [f32; 4] {
        let (px, py) = (
            (reference[0] + reference[2]) * 0.5,
            (reference[1] + reference[3]) * 0.5,
        );
        let (pw, ph) = (reference[2] - reference[0], reference[3] - reference[1]);
        let (gx, gy) = ((target[0] + target[2]) * 0.5, (target[1] + target[3]) * 0.5);
        let (gw, gh) = (target[2] - target[0], target[3] - target[1]);
        let d = [
            (gx - px) / pw,
            (gy - py) / ph,
            (gw / pw).ln(),
            (gh / ph).ln(),
        ];
        std::array::from_fn(|k| (d[k] - self.means[k]) / self.stds[k])
    }

    /// Applies `deltas` to `reference`; with `max_shape = Some((height, width))` the result is
    /// clamped to the image.
    pub fn decode(
        &self,
        reference: &Box2,
        deltas: &[f32; 4],
        max_shape: Option<(f32, f32)>,
    ) -> Box2 {
        let d: [f32; 4] = std::array::from_fn(|k| deltas[k] * self.stds[k] + self.means[k]);
        let max_ratio = self.wh_ratio_clip.ln().abs();
        let (dw, dh) = (
            d[2].clamp(-max_ratio, max_ratio),
            d[3].clamp(-max_ratio, max_ratio),
        );
        let (px, py) = (
            (reference[0] + reference[2]) * 0.5,
            (reference[1] + reference[3]) * 0.5,
        );
        let (pw, ph) = (reference[2] - reference[0], reference[3] - reference[1]);
        let (gx, gy) = (px + pw * d[0], py + ph * d[1]);
        let (gw, gh) = (pw * dw.exp(), ph * dh.exp());
        let mut b = [gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5];
        if let Some((h, w)) = max_shape {
            b = [
                b[0].clamp(0.0, w),
                b[1].clamp(0.0, h),
                b[2].clamp(0.0, w),
                b[3].clamp(0.0, h),
            ];
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_by_hand_and_decode_inverts_it() {
        let coder = DeltaXywhCoder {
            stds: [0.1, 0.1, 0.2, 0.2],
            ..Default::default()
        };
        let p = [0.0, 0.0, 10.0, 20.0];
        let g = [5.0, 0.0, 25.0, 20.0];
        let d = coder.encode(&p, &g);
        // Centre moves 10 px on a 10 px wide box: dx = 1 / 0.1; width doubles: ln 2 / 0.2.
        assert!((d[0] - 10.0).abs() < 1e-5 && d[1].abs() < 1e-6);
        assert!((d[2] - 2f32.ln() / 0.2).abs() < 1e-5 && d[3].abs() < 1e-6);
        let back = coder.decode(&p, &d, None);
        for k in 0..4 {
            assert!((back[k] - g[k]).abs() < 1e-4, "{back:?}");
        }
        // Clamped to a 15 x 18 image (height, width).
        assert_eq!(
            coder.decode(&p, &d, Some((15.0, 18.0))),
            [5.0, 0.0, 18.0, 15.0]
        );
        // The size delta is clipped at |ln(16 / 1000)|.
        let wide = coder.decode(&p, &[0.0, 0.0, 100.0, 0.0], None);
        assert!(
            (wide[2] - wide[0] - 10.0 * (1000f32 / 16.0)).abs() < 1e-2,
            "{wide:?}"
        );
    }
}
