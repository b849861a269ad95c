//! RoIAlign (torchvision `roi_align`, `aligned=True`, or the legacy `aligned=False` that
//! torchvision's detection models and mmdetection 1.x pool with), built for burn's autodiff: the bilinear
//! corner indices and weights of every sample point are computed on the host, the corners are
//! gathered from a channels-last copy of the features with `select`, weighted and summed. The
//! backward pass is then burn's own (a scatter-add), which is several times faster than a
//! `grid_sample` composition under autodiff.

use burn::tensor::Tensor;

use crate::error::{ModelError, Result};
use crate::losses::common::{float_tensor, index_tensor};

/// Settings of [`roi_align`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiAlignConfig {
    /// Output is `output_size x output_size` per RoI (7 for boxes, 14 for masks).
    pub output_size: usize,
    /// Feature-map pixels per image pixel (1 / stride).
    pub spatial_scale: f32,
    /// Samples per bin along each axis; 0 = adaptive, `ceil(roi size / output size)` per RoI
    /// (mmdetection's default).
    pub sampling_ratio: usize,
    /// torchvision's `aligned`: true (mmdetection 2.x / 3.x) shifts the RoI by half a pixel;
    /// false (torchvision's detection models) does not, and floors its size at one feature
    /// pixel.
    pub aligned: bool,
}

/// One corner contribution: a row of the `[B * H * W, C]` feature matrix and its weight.
pub(crate) type Corner = (usize, f32);

/// The two neighbouring pixels of coordinate `v` on an axis of `n` pixels and the weight of
/// the upper one, clamped to the axis as torchvision does.
pub(crate) fn axis(v: f32, n: usize) -> (usize, usize, f32) {
    let v = v.max(0.0);
    let low = v as usize;
    if low >= n - 1 {
        (n - 1, n - 1, 0.0)
    } else {
        (low, low + 1, v - low as f32)
    }
}

/// The four bilinear corners of (y, x) on an `h` x `w` map, torchvision's rules: points more
/// than one pixel outside contribute nothing; coordinates are clamped to the map.
fn corners(h: usize, w: usize, y: f32, x: f32, base: usize, out: &mut Vec<Corner>, scale: f32) {
    if y < -1.0 || y > h as f32 || x < -1.0 || x > w as f32 {
        return;
    }
    let (y_low, y_high, ly) = axis(y, h);
    let (x_low, x_high, lx) = axis(x, w);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    out.push((base + y_low * w + x_low, hy * hx * scale));
    out.push((base + y_low * w + x_high, hy * lx * scale));
    out.push((base + y_high * w + x_low, ly * hx * scale));
    out.push((base + y_high * w + x_high, ly * lx * scale));
}

/// RoIAlign of `features` `[B, C, H, W]` over `rois` (`[batch index, x1, y1, x2, y2]` in image
/// pixels) -> `[R, C, output_size, output_size]`, differentiable with respect to `features`.
pub fn roi_align(
    features: Tensor<4>,
    rois: &[[f32; 5]],
    cfg: &RoiAlignConfig,
) -> Result<Tensor<4>> {
    let [b, c, h, w] = features.dims();
    let p = cfg.output_size;
    let device = features.device();
    if rois.is_empty() {
        return Ok(Tensor::zeros([0, c, p, p], &device));
    }
    if h == 0 || w == 0 || p == 0 {
        return Err(ModelError::Input(format!(
            "RoIAlign needs a non-empty map and output ([{b}, {c}, {h}, {w}], output {p})"
        )));
    }
    // Per output bin, its corners; padded to the longest list with zero weights.
    let mut bins: Vec<Vec<Corner>> = Vec::with_capacity(rois.len() * p * p);
    for (r, roi) in rois.iter().enumerate() {
        let bi = roi[0];
        if !(bi >= 0.0 && (bi as usize) < b) || roi[1..].iter().any(|v| !v.is_finite()) {
            return Err(ModelError::Input(format!(
                "rois[{r}]: batch index {bi} outside 0..{b} or a coordinate not finite"
            )));
        }
        let base = bi as usize * h * w;
        let s = cfg.spatial_scale;
        let offset = if cfg.aligned { 0.5 } else { 0.0 };
        let (x0, y0) = (roi[1] * s - offset, roi[2] * s - offset);
        let (mut rw, mut rh) = (roi[3] * s - offset - x0, roi[4] * s - offset - y0);
        if !cfg.aligned {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bw, bh) = (rw / p as f32, rh / p as f32);
        let (gh, gw) = if cfg.sampling_ratio > 0 {
            (cfg.sampling_ratio, cfg.sampling_ratio)
        } else {
            (
                (rh / p as f32).ceil().max(0.0) as usize,
                (rw / p as f32).ceil().max(0.0) as usize,
            )
        };
        let count = (gh * gw).max(1) as f32;
        for ph in 0..p {
            for pw in 0..p {
                let mut list = Vec::with_capacity(gh * gw * 4);
                for iy in 0..gh {
                    let y = y0 + ph as f32 * bh + (iy as f32 + 0.5) * bh / gh as f32;
                    for ix in 0..gw {
                        let x = x0 + pw as f32 * bw + (ix as f32 + 0.5) * bw / gw as f32;
                        corners(h, w, y, x, base, &mut list, 1.0 / count);
                    }
                }
                bins.push(list);
            }
        }
    }
    Ok(gather_bins(features, bins, rois.len(), p))
}

/// Per output bin (`r * p * p` of them, RoI-major then row-major), the weighted sum of the
/// feature rows its corner list names, from `features` `[B, C, H, W]` (rows of the
/// channels-last `[B * H * W, C]` matrix) -> `[r, C, p, p]`, differentiable with respect to
/// `features`. A bin with an empty list is 0.
pub(crate) fn gather_bins(
    features: Tensor<4>,
    bins: Vec<Vec<Corner>>,
    r: usize,
    p: usize,
) -> Tensor<4> {
    let bins = bins
        .into_iter()
        .map(|list| list.into_iter().map(|(i, w)| (i, [w])).collect())
        .collect();
    let [pooled] = gather_bins_k(features, bins, r, p);
    pooled
}

/// [`gather_bins`] with `K` weight sets over the same corners, the rows gathered once: output
/// `k` is the sum weighted by each corner's `k`-th weight. Only the first is differentiable
/// with respect to `features`; the others read them detached (the deformable pooling's
/// slopes).
pub(crate) fn gather_bins_k<const K: usize>(
    features: Tensor<4>,
    mut bins: Vec<Vec<(usize, [f32; K])>>,
    r: usize,
    p: usize,
) -> [Tensor<4>; K] {
    let [b, c, h, w] = features.dims();
    let device = features.device();
    if r == 0 {
        return std::array::from_fn(|_| Tensor::zeros([0, c, p, p], &device));
    }
    // Samples of one bin share pixels: merge them, so each bin gathers each pixel once.
    for list in &mut bins {
        list.sort_unstable_by_key(|&(i, _)| i);
        list.dedup_by(|b, a| {
            if a.0 == b.0 {
                for k in 0..K {
                    a.1[k] += b.1[k];
                }
                true
            } else {
                false
            }
        });
    }
    // Bins are gathered in groups of equal length, so that no bin is padded to the longest.
    let mut by_len: std::collections::BTreeMap<usize, Vec<usize>> =
        std::collections::BTreeMap::new();
    for (k, list) in bins.iter().enumerate() {
        by_len.entry(list.len().max(1)).or_default().push(k);
    }
    let table = features.permute([0, 2, 3, 1]).reshape([b * h * w, c]);
    let mut parts: [Vec<Tensor<2>>; K] = std::array::from_fn(|_| Vec::new());
    let mut order = Vec::with_capacity(bins.len());
    for (len, members) in &by_len {
        let mut idx = vec![0usize; members.len() * len];
        let mut wts: [Vec<f64>; K] = std::array::from_fn(|_| vec![0f64; members.len() * len]);
        for (m, &k) in members.iter().enumerate() {
            for (j, &(i, wt)) in bins[k].iter().enumerate() {
                idx[m * len + j] = i;
                for (set, &v) in wts.iter_mut().zip(&wt) {
                    set[m * len + j] = f64::from(v);
                }
            }
        }
        let gathered = table
            .clone()
            .select(0, index_tensor(&idx, &device))
            .reshape([members.len(), *len, c]);
        for (k, set) in wts.into_iter().enumerate() {
            let rows = if k == 0 {
                gathered.clone()
            } else {
                gathered.clone().detach()
            };
            let weights = float_tensor(set, [members.len(), *len, 1], &device);
            parts[k].push((rows * weights).sum_dim(1).reshape([members.len(), c]));
        }
        order.extend_from_slice(members);
    }
    let mut inverse = vec![0usize; order.len()];
    for (row, &k) in order.iter().enumerate() {
        inverse[k] = row;
    }
    let inverse = index_tensor(&inverse, &device);
    parts.map(|ps| {
        Tensor::cat(ps, 0)
            .select(0, inverse.clone())
            .reshape([r, p, p, c])
            .permute([0, 3, 1, 2])
    })
}
