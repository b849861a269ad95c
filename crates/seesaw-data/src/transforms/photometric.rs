//! mmdetection's `PhotoMetricDistortion` (`mmdet/datasets/transforms/transforms.py`):
//! brightness, contrast, saturation and hue, each applied with probability 0.5, always in that
//! order (mmdetection applies contrast second or last at random, and may also permute the
//! channels; neither is done here).

use rand::Rng;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
