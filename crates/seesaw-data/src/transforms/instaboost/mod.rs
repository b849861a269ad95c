//! InstaBoost (Fang et al., "InstaBoost: Boosting Instance Segmentation via Probability Map
//! Guided Copy-Pasting", ICCV 2019) as mmdetection runs it: its `InstaBoost` transform
//! (`mmdet/datasets/transforms/transforms.py`) over the `instaboostfast` 0.1.2 package's
//! `get_new_data`, with the package's appearance-consistency probability map (`hflag`).
//!
//! Per image, with probability `aug_ratio`: every instance is cut out and the holes filled
//! from the background; instances whose boxes overlap form a group that moves rigidly; each
//! group takes an action (`normal`: a random similarity transform, `horizontal` / `vertical`:
//! the same after mirroring it, `skip`: pasted back in place) and is composited back in group
//! order; each instance's own mask is transformed with its group (no occlusion update, as the
//! package) and its box recomputed from it; with probability `color_prob` the whole image gets
//! the package's colour jitter. With `hflag` the group's destination is drawn from the
//! probability map: positions where the background around the new location looks like the
//! object's original surroundings.
//!
//! Where ours differs from the package, on purpose: the holes are filled by harmonic
//! (Laplace) diffusion instead of OpenCV's Navier-Stokes inpainting (both propagate the
//! border smoothly inward; no OpenCV); crops are sampled bilinearly instead of with cubic
//! B-splines; masks stay bitmaps instead of going through polygons (the package's round trip
//! cuts a corner pixel and fills holes); colours stay floating point (no uint8 truncation); a
//! group at the image border whose remaining actions all have probability 0 is skipped
//! (the package fails an assertion). It runs after the resize (on the training scale), where
//! mmdetection runs it before.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::loading::Sample;
use crate::structures::{GtInstances, GtMask};

mod heatmap;
mod inpaint;

use heatmap::{dilate, heat_position};
use inpaint::inpaint;

/// One of the package's actions on a group of overlapping instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A random similarity transform ([`Jitter`]).
    Normal,
    /// Mirrored left-right inside its box, then jittered.
    Horizontal,
    /// Mirrored top-bottom inside its box, then jittered.
    Vertical,
    /// Pasted back where it was.
    Skip,
}

/// mmdetection's `InstaBoost` settings (`configs/instaboost/`), whose defaults are these. In
/// `[data]` InstaBoost is off (`aug_ratio` 0) until set: `data.instaboost = 0.5` sets
/// `aug_ratio`, a table (`{ aug_ratio = 0.5, hflag = true }`) any of the keys, the others
/// keeping mmdetection's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstaBoostConfig {
    /// Probability that an image is augmented at all. Default 0.5 (0 = off).
    pub aug_ratio: f64,
    /// Default `["normal", "horizontal", "skip"]`.
    pub action_candidate: Vec<Action>,
    /// One probability per candidate, summing to 1. Default `[1, 0, 0]`.
    pub action_prob: Vec<f64>,
    /// Scale range, uniform. Default `[0.8, 1.2]`.
    pub scale: [f64; 2],
    /// Shift divisors: a group of box width w moves a whole number of pixels in
    /// `[-floor(w / dx), floor(w / dx)]`. Default 15 (and `dy` 15).
    pub dx: u32,
    pub dy: u32,
    /// Rotation range in whole degrees, uniform over the integers. Default `[-1, 1]`.
    pub theta: [i32; 2],
    /// Probability of the colour jitter of an augmented image. Default 0.5.
    pub color_prob: f64,
    /// Place groups by the probability map. Default false (mmdetection's value).
    pub hflag: bool,
}

impl Default for InstaBoostConfig {
    fn default() -> Self {
        Self {
            aug_ratio: 0.5,
            action_candidate: vec![Action::Normal, Action::Horizontal, Action::Skip],
            action_prob: vec![1.0, 0.0, 0.0],
            scale: [0.8, 1.2],
            dx: 15,
            dy: 15,
            theta: [-1, 1],
            color_prob: 0.5,
            hflag: false,
        }
    }
}

impl InstaBoostConfig {
    /// InstaBoost off (`aug_ratio` 0): the data config's default.
    pub fn off() -> Self {
        Self {
            aug_ratio: 0.0,
            ..Self::default()
        }
    }

    /// Whether any image can be augmented.
    pub fn is_on(&self) -> bool {
        self.aug_ratio > 0.0
    }

    /// Checks the settings; the message names `field`'s key.
    ///
    /// # Errors
    /// A probability outside 0-1, `action_prob` not one per candidate or not summing to 1, an
    /// empty or reversed range, a zero divisor.
    pub fn check(&self, field: &str) -> std::result::Result<(), String> {
        let prob = |k: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{field}.{k}: {v} is not a probability in 0-1"))
            }
        };
        prob("aug_ratio", self.aug_ratio)?;
        prob("color_prob", self.color_prob)?;
        if self.action_prob.len() != self.action_candidate.len() {
            return Err(format!(
                "{field}.action_prob: {} probabilities for {} action_candidate",
                self.action_prob.len(),
                self.action_candidate.len()
            ));
        }
        for (i, &p) in self.action_prob.iter().enumerate() {
            prob(&format!("action_prob[{i}]"), p)?;
        }
        let sum: f64 = self.action_prob.iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(format!("{field}.action_prob: sums to {sum}, not 1"));
        }
        if !(self.scale[0] > 0.0 && self.scale[0] <= self.scale[1]) {
            return Err(format!(
                "{field}.scale: [{}, {}] is not a range of positive scales",
                self.scale[0], self.scale[1]
            ));
        }
        if self.dx == 0 || self.dy == 0 {
            return Err(format!("{field}.dx / dy: divisors must be at least 1"));
        }
        if self.theta[0] > self.theta[1] {
            return Err(format!(
                "{field}.theta: [{}, {}] is reversed",
                self.theta[0], self.theta[1]
            ));
        }
        Ok(())
    }
}

/// `data.instaboost` as a config gives it: a number (the `aug_ratio`, everything else
/// mmdetection's) or a table of [`InstaBoostConfig`]'s keys.
pub fn deserialize_setting<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<InstaBoostConfig, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Setting {
        Ratio(f64),
        Table(serde_json::Value),
    }
    match Setting::deserialize(d)? {
        Setting::Ratio(r) => Ok(InstaBoostConfig {
            aug_ratio: r,
            ..InstaBoostConfig::default()
        }),
        Setting::Table(v) => serde_json::from_value(v).map_err(serde::de::Error::custom),
    }
}

/// One group's draw (the package's `get_transform`): scale about the group box's centre,
/// rotation in whole degrees (positive turns clockwise on screen), shift in whole pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    pub scale: f64,
    pub theta_deg: i32,
    pub dx: i64,
    pub dy: i64,
}

/// Which image borders a group box is within 10 px of (the package's `restricts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Border {
    left: bool,
    right: bool,
    up: bool,
    down: bool,
}

impl Border {
    const MARGIN: i64 = 10;

    fn of(b: [i64; 4], w: usize, h: usize) -> Self {
        Border {
            left: b[0] < Self::MARGIN,
            right: b[2] > w as i64 - Self::MARGIN,
            up: b[1] < Self::MARGIN,
            down: b[3] > h as i64 - Self::MARGIN,
        }
    }

    fn any(&self) -> bool {
        self.left || self.right || self.up || self.down
    }
}

impl Jitter {
    /// The identity (`skip`).
    pub const IDENTITY: Jitter = Jitter {
        scale: 1.0,
        theta_deg: 0,
        dx: 0,
        dy: 0,
    };

    /// Draws a group's jitter for its box `[w, h]` (integer pixels): scale uniform in
    /// `cfg.scale`, shift uniform over the integers within `floor(w / dx)` (`floor(h / dy)`),
    /// rotation uniform over the integer degrees of `cfg.theta`; at an image border (10 px) it
    /// never shrinks or turns, and shifts only towards that border.
    fn draw<R: Rng>(cfg: &InstaBoostConfig, size: [i64; 2], border: Border, rng: &mut R) -> Self {
        let mut scale = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * rng.random::<f64>();
        let mx = size[0] / i64::from(cfg.dx);
        let mut dx = rng.random_range(-mx..=mx);
        let my = size[1] / i64::from(cfg.dy);
        let mut dy = rng.random_range(-my..=my);
        let mut theta_deg = rng.random_range(cfg.theta[0]..=cfg.theta[1]);
        if border.any() {
            scale = scale.max(1.0);
            theta_deg = 0;
        }
        if border.left {
            dx = dx.min(0);
        }
        if border.right {
            dx = dx.max(0);
        }
        if border.up {
            dy = dy.min(0);
        }
        if border.down {
            dy = dy.max(0);
        }
        Jitter {
            scale,
            theta_deg,
            dx,
            dy,
        }
    }
}

/// Draws a group's action; mirrors are removed at an image border and the rest renormalised
/// (a border group left with no probability is skipped).
fn draw_action<R: Rng>(cfg: &InstaBoostConfig, border: Border, rng: &mut R) -> Action {
    let allowed: Vec<(Action, f64)> = cfg
        .action_candidate
        .iter()
        .copied()
        .zip(cfg.action_prob.iter().copied())
        .filter(|(a, _)| !border.any() || !matches!(a, Action::Horizontal | Action::Vertical))
        .collect();
    let total: f64 = allowed.iter().map(|(_, p)| p).sum();
    let u = rng.random::<f64>() * total;
    let mut acc = 0.0;
    for &(a, p) in &allowed {
        acc += p;
        if p > 0.0 && u < acc {
            return a;
        }
    }
    allowed
        .iter()
        .rev()
        .find(|(_, p)| *p > 0.0)
        .map_or(Action::Skip, |(a, _)| *a)
}

/// Groups of instances whose boxes overlap (strictly: touching is not overlapping), as the
/// connected components of the overlap graph in the package's order: by lowest member index,
/// members depth-first from it in ascending index.
fn overlap_groups(boxes: &[[f32; 4]]) -> Vec<Vec<usize>> {
    let overlap =
        |a: &[f32; 4], b: &[f32; 4]| a[0] < b[2] && a[1] < b[3] && b[0] < a[2] && b[1] < a[3];
    let mut seen = vec![false; boxes.len()];
    let mut groups = Vec::new();
    for i in 0..boxes.len() {
        if seen[i] {
            continue;
        }
        seen[i] = true;
        let mut group = vec![i];
        let mut stack = vec![(i, 0usize)];
        // Depth-first, neighbours in ascending index (the package's recursion, unrolled).
        while let Some((node, next)) = stack.pop() {
            if let Some(j) =
                (next..boxes.len()).find(|&j| !seen[j] && overlap(&boxes[node], &boxes[j]))
            {
                stack.push((node, j + 1));
                seen[j] = true;
                group.push(j);
                stack.push((j, 0));
            }
        }
        groups.push(group);
    }
    groups
}

/// Where a group lands and how: the destination of its box centre `(tx, ty)` (pixels), scale,
/// rotation and mirror.
#[derive(Debug, Clone, Copy)]
struct Placement {
    tx: f64,
    ty: f64,
    scale: f64,
    theta: f64,
    flip: Option<Action>,
}

impl Placement {
    /// The crop coordinates `(u, v)` (column, row; the crop's top-left pixel at 0) that output
    /// pixel `(x, y)` samples, for a crop of `[cw, ch]`: the inverse of
    /// `p = t + s R(theta) (q - c)` with c the crop's centre `(cw / 2, ch / 2)`.
    fn source(&self, x: f64, y: f64, cw: f64, ch: f64) -> (f64, f64) {
        let (sin, cos) = self.theta.sin_cos();
        let (ax, ay) = (x - self.tx, y - self.ty);
        (
            (cos * ax + sin * ay) / self.scale + cw / 2.0,
            (-sin * ax + cos * ay) / self.scale + ch / 2.0,
        )
    }

    /// The output pixels `[x0, y0, x1, y1)` a crop of `[cw, ch]` can reach, within `[w, h]`.
    fn reach(&self, cw: f64, ch: f64, w: usize, h: usize) -> [usize; 4] {
        let (sin, cos) = self.theta.sin_cos();
        let corners = [(0.0, 0.0), (cw, 0.0), (0.0, ch), (cw, ch)].map(|(u, v)| {
            let (qx, qy) = (u - cw / 2.0, v - ch / 2.0);
            (
                self.tx + self.scale * (cos * qx - sin * qy),
                self.ty + self.scale * (sin * qx + cos * qy),
            )
        });
        let lo = |f: fn(&(f64, f64)) -> f64| corners.iter().map(f).fold(f64::INFINITY, f64::min);
        let hi =
            |f: fn(&(f64, f64)) -> f64| corners.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
        let clamp = |v: f64, n: usize| v.clamp(0.0, n as f64) as usize;
        [
            clamp(lo(|p| p.0).floor() - 2.0, w),
            clamp(lo(|p| p.1).floor() - 2.0, h),
            clamp(hi(|p| p.0).ceil() + 3.0, w),
            clamp(hi(|p| p.1).ceil() + 3.0, h),
        ]
    }
}

/// A crop `[channels, ch, cw]` mirrored as `flip` asks.
fn mirror(data: &mut [f32], channels: usize, cw: usize, ch: usize, flip: Option<Action>) {
    for c in 0..channels {
        let plane = &mut data[c * cw * ch..(c + 1) * cw * ch];
        match flip {
            Some(Action::Horizontal) => plane.chunks_exact_mut(cw).for_each(<[f32]>::reverse),
            Some(Action::Vertical) => {
                for y in 0..ch / 2 {
                    for x in 0..cw {
                        plane.swap(y * cw + x, (ch - 1 - y) * cw + x);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Bilinear sample of a `[cw, ch]` plane at `(u, v)`; 0 outside `[0, cw - 1] x [0, ch - 1]`.
fn bilinear(plane: &[f32], cw: usize, ch: usize, u: f64, v: f64) -> f32 {
    if u < 0.0 || v < 0.0 || u > (cw - 1) as f64 || v > (ch - 1) as f64 {
        return 0.0;
    }
    let (x0, y0) = (u.floor() as usize, v.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(cw - 1), (y0 + 1).min(ch - 1));
    let (fx, fy) = ((u - x0 as f64) as f32, (v - y0 as f64) as f32);
    let at = |x: usize, y: usize| plane[y * cw + x];
    (at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx) * (1.0 - fy)
        + (at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx) * fy
}

/// The package's colour jitter on a planar RGB image in 0-255 (PIL's enhancers in order:
/// saturation k/10 for k in 0-30, brightness and contrast k/10 for k in 10-20, sharpness k/10
/// for k in 0-30; each `degenerate + f (image - degenerate)`, clipped to 0-255).
fn colour_jitter<R: Rng>(img: &mut [f32], h: usize, w: usize, rng: &mut R) {
    let plane = h * w;
    let luma = |img: &[f32], i: usize| {
        0.299 * img[i] + 0.587 * img[plane + i] + 0.114 * img[2 * plane + i]
    };
    let blend = |img: &mut [f32], degenerate: &dyn Fn(&[f32], usize, usize) -> f32, f: f32| {
        let base = img.to_vec();
        for c in 0..3 {
            for i in 0..plane {
                let d = degenerate(&base, c, i);
                img[c * plane + i] = (d + f * (base[c * plane + i] - d)).clamp(0.0, 255.0);
            }
        }
    };
    let f1 = rng.random_range(0..=30) as f32 / 10.0;
    blend(img, &|b, _, i| luma(b, i), f1);
    let f2 = rng.random_range(10..=20) as f32 / 10.0;
    blend(img, &|_, _, _| 0.0, f2);
    let f3 = rng.random_range(10..=20) as f32 / 10.0;
    let mean = ((0..plane).map(|i| f64::from(luma(img, i))).sum::<f64>() / plane.max(1) as f64)
        .round() as f32;
    blend(img, &|_, _, _| mean, f3);
    let f4 = rng.random_range(0..=30) as f32 / 10.0;
    blend(
        img,
        &|b, c, i| {
            let (y, x) = (i / w, i % w);
            if y == 0 || x == 0 || y + 1 == h || x + 1 == w {
                return b[c * plane + i];
            }
            let mut s = 0.0;
            for dy in [-1i64, 0, 1] {
                for dx in [-1i64, 0, 1] {
                    let j = ((y as i64 + dy) as usize) * w + (x as i64 + dx) as usize;
                    s += b[c * plane + j] * if dy == 0 && dx == 0 { 5.0 } else { 1.0 };
                }
            }
            s / 13.0
        },
        f4,
    );
}

/// InstaBoost on one training sample (see the module's documentation): `s.pixels` are the
/// normalised `[3, H, W]` planes (`mean`, `std` in 0-255 undo and redo it), `s.gt` needs one
/// mask per box; `seed` drives every draw. Instances come back in group order (the package's);
/// those whose mask leaves the image are dropped; crowd regions are left as they are.
pub fn instaboost(
    mut s: Sample,
    cfg: &InstaBoostConfig,
    mean: [f32; 3],
    std: [f32; 3],
    seed: u64,
) -> Sample {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = s.gt.boxes.len();
    let (h, w) = s.meta.img_shape;
    let plane = h * w;
    if n == 0
        || s.gt.masks.len() != n
        || s.gt.masks.iter().any(|m| m.data.len() != plane)
        || s.pixels.len() != 3 * plane
        || !rng.random_bool(cfg.aug_ratio.clamp(0.0, 1.0))
    {
        return s;
    }
    let img: Vec<f32> = s
        .pixels
        .iter()
        .enumerate()
        .map(|(i, &v)| v * std[i / plane] + mean[i / plane])
        .collect();
    // The label map: later instances win.
    let mut label = vec![0usize; plane];
    for (k, m) in s.gt.masks.iter().enumerate() {
        for (l, &v) in label.iter_mut().zip(&m.data) {
            if v != 0 {
                *l = k + 1;
            }
        }
    }
    let hole: Vec<bool> = label.iter().map(|&l| l != 0).collect();
    let background = inpaint(&img, h, w, &hole);
    let heat_bg = cfg
        .hflag
        .then(|| inpaint(&img, h, w, &dilate(&hole, h, w, 4)));
    let mut out = background;
    let mut placed: Vec<(usize, GtMask)> = Vec::with_capacity(n);
    for group in overlap_groups(&s.gt.boxes) {
        let union = group.iter().fold(
            [
                f32::INFINITY,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
            ],
            |u, &k| {
                let b = s.gt.boxes[k];
                [
                    u[0].min(b[0]),
                    u[1].min(b[1]),
                    u[2].max(b[2]),
                    u[3].max(b[3]),
                ]
            },
        );
        let b = union.map(|v| (v.round_ties_even() as i64).max(0));
        let b = [b[0], b[1], b[2].min(w as i64), b[3].min(h as i64)];
        let (cw, ch) = ((b[2] - b[0]).max(0) as usize, (b[3] - b[1]).max(0) as usize);
        if cw == 0 || ch == 0 {
            placed.extend(group.iter().map(|&k| (k, s.gt.masks[k].clone())));
            continue;
        }
        let border = Border::of(b, w, h);
        let action = draw_action(cfg, border, &mut rng);
        let jitter = if action == Action::Skip {
            Jitter::IDENTITY
        } else {
            Jitter::draw(cfg, [cw as i64, ch as i64], border, &mut rng)
        };
        let centre = ((b[0] + b[2]) as f64 / 2.0, (b[1] + b[3]) as f64 / 2.0);
        let mut p = Placement {
            tx: centre.0 + jitter.dx as f64,
            ty: centre.1 + jitter.dy as f64,
            scale: jitter.scale,
            theta: f64::from(jitter.theta_deg).to_radians(),
            flip: matches!(action, Action::Horizontal | Action::Vertical).then_some(action),
        };
        if let Some(bg) = &heat_bg {
            let members: Vec<bool> = label
                .iter()
                .map(|&l| l > 0 && group.contains(&(l - 1)))
                .collect();
            if let Some((x, y)) = heat_position(&img, bg, &members, centre, h, w, &mut rng) {
                p.tx = x;
                p.ty = y;
            }
        }
        // The crop: the original image's pixels and the group's alpha, from its box.
        let (x0, y0) = (b[0] as usize, b[1] as usize);
        let mut crop = vec![0f32; 4 * cw * ch];
        for y in 0..ch {
            for x in 0..cw {
                let i = (y0 + y) * w + x0 + x;
                for c in 0..3 {
                    crop[c * cw * ch + y * cw + x] = img[c * plane + i];
                }
                let l = label[i];
                crop[3 * cw * ch + y * cw + x] =
                    f32::from(u8::from(l > 0 && group.contains(&(l - 1))));
            }
        }
        mirror(&mut crop, 4, cw, ch, p.flip);
        let reach = p.reach(cw as f64, ch as f64, w, h);
        for y in reach[1]..reach[3] {
            for x in reach[0]..reach[2] {
                let (u, v) = p.source(x as f64, y as f64, cw as f64, ch as f64);
                let a = bilinear(&crop[3 * cw * ch..], cw, ch, u, v);
                if a <= 0.0 {
                    continue;
                }
                for c in 0..3 {
                    let rgb = bilinear(&crop[c * cw * ch..(c + 1) * cw * ch], cw, ch, u, v);
                    let o = &mut out[c * plane + y * w + x];
                    *o = *o * (1.0 - a) + rgb * a;
                }
            }
        }
        // Each member's own mask, nearest neighbour.
        for &k in &group {
            let src = &s.gt.masks[k].data;
            let mut m = vec![0f32; cw * ch];
            for y in 0..ch {
                for x in 0..cw {
                    m[y * cw + x] = f32::from(src[(y0 + y) * w + x0 + x]);
                }
            }
            mirror(&mut m, 1, cw, ch, p.flip);
            let mut data = vec![0u8; plane];
            for y in reach[1]..reach[3] {
                for x in reach[0]..reach[2] {
                    let (u, v) = p.source(x as f64, y as f64, cw as f64, ch as f64);
                    let (iu, iv) = ((u + 0.5).floor(), (v + 0.5).floor());
                    if iu >= 0.0
                        && iv >= 0.0
                        && iu < cw as f64
                        && iv < ch as f64
                        && m[iv as usize * cw + iu as usize] != 0.0
                    {
                        data[y * w + x] = 1;
                    }
                }
            }
            placed.push((
                k,
                GtMask {
                    height: h,
                    width: w,
                    data,
                },
            ));
        }
    }
    if rng.random_bool(cfg.color_prob.clamp(0.0, 1.0)) {
        colour_jitter(&mut out, h, w, &mut rng);
    }
    for (i, v) in s.pixels.iter_mut().enumerate() {
        *v = (out[i] - mean[i / plane]) / std[i / plane];
    }
    let old = std::mem::take(&mut s.gt);
    let mut gt = GtInstances {
        ignore: old.ignore,
        ..Default::default()
    };
    for (k, m) in placed {
        if let Some(bx) = m.bbox() {
            gt.boxes.push(bx);
            gt.labels.push(old.labels[k]);
            gt.masks.push(m);
        }
    }
    s.gt = gt;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structures::ImageMeta;

    /// A `[h, w]` sample: background value `bg` (all channels), then each `(box, value)` a
    /// filled rectangle instance of that value; mean 0, std 1 (pixels are raw values).
    fn sample(h: usize, w: usize, bg: f32, rects: &[([usize; 4], f32)]) -> Sample {
        let mut pixels = vec![bg; 3 * h * w];
        let mut gt = GtInstances::default();
        for (k, &(r, v)) in rects.iter().enumerate() {
            let mut data = vec![0u8; h * w];
            for y in r[1]..r[3] {
                for x in r[0]..r[2] {
                    data[y * w + x] = 1;
                    for c in 0..3 {
                        pixels[c * h * w + y * w + x] = v;
                    }
                }
            }
            gt.boxes.push(r.map(|v| v as f32));
            gt.labels.push(k);
            gt.masks.push(GtMask {
                height: h,
                width: w,
                data,
            });
        }
        Sample {
            pixels,
            meta: ImageMeta {
                image_id: 1,
                ori_shape: (h as u32, w as u32),
                img_shape: (h, w),
                scale: (1.0, 1.0),
                flip: false,
            },
            gt,
        }
    }

    const ID: [f32; 3] = [0.0; 3];
    const ONE: [f32; 3] = [1.0; 3];

    fn centroid(m: &GtMask) -> (f64, f64) {
        let (mut sx, mut sy, mut n) = (0f64, 0f64, 0f64);
        for (i, &v) in m.data.iter().enumerate() {
            if v != 0 {
                sx += (i % m.width) as f64;
                sy += (i / m.width) as f64;
                n += 1.0;
            }
        }
        (sx / n, sy / n)
    }

    #[test]
    fn skip_pastes_everything_back_exactly() {
        let s = sample(
            64,
            64,
            10.0,
            &[([12, 14, 30, 30], 200.0), ([34, 20, 50, 44], 90.0)],
        );
        let cfg = InstaBoostConfig {
            aug_ratio: 1.0,
            action_prob: vec![0.0, 0.0, 1.0],
            color_prob: 0.0,
            ..Default::default()
        };
        for seed in 0..5 {
            let out = instaboost(s.clone(), &cfg, ID, ONE, seed);
            assert_eq!(out.gt.masks, s.gt.masks);
            assert_eq!(out.gt.boxes, s.gt.boxes);
            for (a, b) in out.pixels.iter().zip(&s.pixels) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
        // aug_ratio 0: nothing happens.
        let off = InstaBoostConfig::off();
        let out = instaboost(s.clone(), &off, ID, ONE, 3);
        assert_eq!(out.pixels, s.pixels);
    }

    #[test]
    fn groups_move_rigidly_by_whole_pixels_within_a_fifteenth_of_their_box() {
        // Two overlapping squares (one group, 36 px wide: shifts within +/-2 px) and one apart.
        let s = sample(
            96,
            96,
            0.0,
            &[
                ([20, 20, 40, 40], 100.0),
                ([36, 30, 56, 50], 150.0),
                ([66, 60, 82, 76], 220.0),
            ],
        );
        assert_eq!(overlap_groups(&s.gt.boxes), vec![vec![0, 1], vec![2]]);
        let cfg = InstaBoostConfig {
            aug_ratio: 1.0,
            scale: [1.0, 1.0],
            theta: [0, 0],
            color_prob: 0.0,
            ..Default::default()
        };
        let mut moved = 0;
        for seed in 0..40 {
            let out = instaboost(s.clone(), &cfg, ID, ONE, seed);
            assert_eq!(out.gt.labels, vec![0, 1, 2]);
            let d: Vec<(f64, f64)> = (0..3)
                .map(|k| {
                    let (a, b) = (centroid(&out.gt.masks[k]), centroid(&s.gt.masks[k]));
                    (a.0 - b.0, a.1 - b.1)
                })
                .collect();
            assert_eq!(d[0], d[1], "one group, one move");
            for (k, (dx, dy)) in d.iter().enumerate() {
                let bound = if k < 2 { 36 / 15 } else { 16 / 15 } as f64;
                assert!(dx.abs() <= bound && dy.abs() <= bound, "{k}: {dx}, {dy}");
                assert_eq!(dx.fract(), 0.0);
            }
            moved += usize::from(d[0] != (0.0, 0.0));
            for (m, b) in out.gt.masks.iter().zip(&out.gt.boxes) {
                assert_eq!(m.bbox(), Some(*b), "boxes are the masks' tight boxes");
            }
            // The moved squares' pixels carry their value; the first square's old place,
            // uncovered, is filled from the 0 background.
            let at = |x: usize, y: usize| out.pixels[y * 96 + x];
            let (cx, cy) = centroid(&out.gt.masks[2]);
            assert!((at(cx as usize, cy as usize) - 220.0).abs() < 1e-3);
        }
        assert!(moved > 20, "{moved} of 40 moved");
    }

    #[test]
    fn at_the_border_a_group_never_shrinks_or_moves_away_from_the_edge() {
        // A square touching the left edge.
        let s = sample(64, 64, 0.0, &[([0, 20, 30, 50], 100.0)]);
        let cfg = InstaBoostConfig {
            aug_ratio: 1.0,
            color_prob: 0.0,
            ..Default::default()
        };
        for seed in 0..40 {
            let out = instaboost(s.clone(), &cfg, ID, ONE, seed);
            let b = out.gt.boxes[0];
            assert_eq!(b[0], 0.0, "still at the left edge: {b:?}");
            // Never shrunk: as tall as before at least (its width may go through the edge).
            assert!(b[3] - b[1] >= 30.0, "not shrunk: {b:?}");
            assert!(b[2] <= 37.0, "shifted only towards the edge: {b:?}");
        }
    }

    #[test]
    fn mirrors_flip_the_group_inside_its_box() {
        // An L-shaped instance: a 20x20 square with its top-right quarter missing.
        let mut s = sample(64, 64, 0.0, &[([20, 20, 40, 40], 100.0)]);
        for y in 20..30 {
            for x in 30..40 {
                s.gt.masks[0].data[y * 64 + x] = 0;
            }
        }
        let cfg = InstaBoostConfig {
            aug_ratio: 1.0,
            action_prob: vec![0.0, 1.0, 0.0],
            scale: [1.0, 1.0],
            theta: [0, 0],
            dx: 1000,
            dy: 1000,
            color_prob: 0.0,
            ..Default::default()
        };
        let out = instaboost(s, &cfg, ID, ONE, 0);
        let m = &out.gt.masks[0].data;
        // Now the top-left quarter is missing.
        assert_eq!(m[25 * 64 + 25], 0);
        assert_eq!(m[25 * 64 + 35], 1);
        assert_eq!(m[35 * 64 + 25], 1);
    }

    #[test]
    fn colour_jitter_keeps_pixels_in_range_and_changes_the_image() {
        let s = sample(40, 40, 60.0, &[([10, 10, 20, 20], 240.0)]);
        let cfg = InstaBoostConfig {
            aug_ratio: 1.0,
            action_prob: vec![0.0, 0.0, 1.0],
            color_prob: 1.0,
            ..Default::default()
        };
        let mut changed = 0;
        for seed in 0..10 {
            let out = instaboost(s.clone(), &cfg, ID, ONE, seed);
            assert!(out.pixels.iter().all(|v| (0.0..=255.0).contains(v)));
            changed += usize::from(out.pixels != s.pixels);
        }
        assert!(changed >= 8, "{changed}");
    }

    #[test]
    fn settings_read_as_a_number_or_a_table_and_are_checked() {
        #[derive(Deserialize)]
        struct D {
            #[serde(deserialize_with = "deserialize_setting")]
            i: InstaBoostConfig,
        }
        let n: D = serde_json::from_str(r#"{"i": 0.3}"#).expect("number");
        assert_eq!(n.i.aug_ratio, 0.3);
        assert_eq!(n.i.dx, 15);
        let t: D = serde_json::from_str(r#"{"i": {"dx": 10, "hflag": true}}"#).expect("table");
        assert_eq!((t.i.aug_ratio, t.i.dx, t.i.hflag), (0.5, 10, true));
        let e = serde_json::from_str::<D>(r#"{"i": {"dxx": 10}}"#)
            .err()
            .expect("typo");
        assert!(e.to_string().contains("dxx"), "{e}");
        let bad = InstaBoostConfig {
            action_prob: vec![0.5, 0.2, 0.2],
            ..Default::default()
        };
        assert!(
            bad.check("data.instaboost")
                .expect_err("sum")
                .contains("sums to")
        );
    }
}
