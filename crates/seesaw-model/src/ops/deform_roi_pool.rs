//! Deformable RoI pooling as TSD runs it (Song et al., "Revisiting the Sibling Head in Object
//! Detector", CVPR 2020; official code Sense-X/TSD, `mmdet/ops/dcn/deform_pool.py`
//! `DeltaCPooling` / `DeltaRPooling` and the CUDA kernel `deform_pool_cuda_kernel.cu`,
//! `DeformablePSROIPoolForwardKernel`, with one group and one offset class): each of the
//! `p x p` bins of a RoI averages `sample_per_part x sample_per_part` bilinear samples placed
//! at the bin's sub-bin corners, the whole bin moved by `trans_std * offset * (roi width,
//! roi height)`.
//!
//! The kernel's arithmetic, kept exactly (it is TSD's operator, not mmcv 2.x's
//! `DeformRoIPool`, which samples sub-bin centres of the unrounded RoI):
//! - the RoI is rounded half away from zero and taken one pixel wider (`x1' = round(x1) s -
//!   0.5`, `x2' = (round(x2) + 1) s - 0.5`), its size floored at 0.1 feature pixels;
//! - a sample outside `[-0.5, W - 0.5] x [-0.5, H - 0.5]` is skipped and not counted; the
//!   others are clamped to the map and read from their floor / ceil neighbours; a bin is the
//!   mean of the kept samples, 0 when none is kept;
//! - no gradient reaches the RoIs; the offsets' gradient is the bilinear slope at the clamped
//!   sample (0 at a clamped or integer coordinate), as the kernel's backward computes it.
//!
//! Built for burn's autodiff as RoIAlign is ([`super::roi_align`]): corners and weights on the
//! host, the features gathered by weighted rows. The offsets' gradient rides on a first-order
//! term `(o - detach(o)) * slope`, whose value is 0 and whose derivative is the slope pooled
//! the same way from the (detached) features.

use burn::tensor::Tensor;

use crate::error::{ModelError, Result};
use crate::losses::common::{host_f32, index_tensor};
use crate::ops::roi_align::{gather_bins, gather_bins_k};

/// Settings of [`deform_roi_pool`]; defaults are TSD's (`DeltaCPooling` / `DeltaRPooling` in
/// its configs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeformRoiPoolConfig {
    /// Output is `output_size x output_size` per RoI. Default 7.
    pub output_size: usize,
    /// Feature-map pixels per image pixel (1 / stride). Default 1.
    pub spatial_scale: f32,
    /// Samples per bin along each axis. Default 4.
    pub sample_per_part: usize,
    /// The offsets are scaled by this before they multiply the RoI's size (the paper's
    /// gamma). Default 0.1.
    pub trans_std: f32,
}

impl Default for DeformRoiPoolConfig {
    fn default() -> Self {
        Self {
            output_size: 7,
            spatial_scale: 1.0,
            sample_per_part: 4,
            trans_std: 0.1,
        }
    }
}

/// Deformable RoI pooling of `features` `[B, C, H, W]` over `rois` (`[batch index, x1, y1, x2,
/// y2]` in image pixels) with `offset` `[R, 2, p, p]` (x then y, one per bin: TSD's ΔC) or
/// `[R, 2, 1, 1]` (one for every bin: TSD's ΔR) -> `[R, C, p, p]`, differentiable with respect
/// to `features` and `offset`.
///
/// # Errors
/// An offset of another shape; RoIs naming missing images or with coordinates that are not
/// finite; an empty map.
pub fn deform_roi_pool(
    features: Tensor<4>,
    rois: &[[f32; 5]],
    offset: Tensor<4>,
    cfg: &DeformRoiPoolConfig,
) -> Result<Tensor<4>> {
    let [b, c, h, w] = features.dims();
    let p = cfg.output_size;
    let device = features.device();
    let [r, two, oh, ow] = offset.dims();
    let per_bin = (oh, ow) == (p, p);
    if r != rois.len() || two != 2 || !(per_bin || (oh, ow) == (1, 1)) {
        return Err(ModelError::Input(format!(
            "deformable RoI pooling: offset [{r}, {two}, {oh}, {ow}] for {} RoIs, expected \
             [{}, 2, {p}, {p}] or [{}, 2, 1, 1]",
            rois.len(),
            rois.len(),
            rois.len()
        )));
    }
    if rois.is_empty() {
        return Ok(Tensor::zeros([0, c, p, p], &device));
    }
    if h == 0 || w == 0 || p == 0 || cfg.sample_per_part == 0 {
        return Err(ModelError::Input(format!(
            "deformable RoI pooling needs a non-empty map, output and samples ([{b}, {c}, {h}, \
             {w}], output {p}, sample_per_part {})",
            cfg.sample_per_part
        )));
    }
    let off = host_f32(offset.clone().detach())?;
    let grad = offset.is_tracked();
    let n_bins = rois.len() * p * p;
    // Per bin, its corners with the weights of the value and of the two slopes.
    let mut bins: Vec<Vec<(usize, [f32; 3])>> = Vec::with_capacity(n_bins);
    let s = cfg.spatial_scale;
    let spp = cfg.sample_per_part;
    let (hf, wf) = (h as f32, w as f32);
    for (n, roi) in rois.iter().enumerate() {
        let bi = roi[0];
        if !(bi >= 0.0 && (bi as usize) < b) || roi[1..].iter().any(|v| !v.is_finite()) {
            return Err(ModelError::Input(format!(
                "rois[{n}]: batch index {bi} outside 0..{b} or a coordinate not finite"
            )));
        }
        let base = bi as usize * h * w;
        // C's round(): half away from zero, as Rust's.
        let x1 = roi[1].round() * s - 0.5;
        let y1 = roi[2].round() * s - 0.5;
        let x2 = (roi[3].round() + 1.0) * s - 0.5;
        let y2 = (roi[4].round() + 1.0) * s - 0.5;
        let rw = (x2 - x1).max(0.1);
        let rh = (y2 - y1).max(0.1);
        let (bw, bh) = (rw / p as f32, rh / p as f32);
        let (sw, sh) = (bw / spp as f32, bh / spp as f32);
        for ph in 0..p {
            for pw in 0..p {
                let k = if per_bin { ph * p + pw } else { 0 };
                let per_roi = if per_bin { 2 * p * p } else { 2 };
                let ox = off[n * per_roi + k];
                let oy = off[n * per_roi + per_roi / 2 + k];
                let wstart = pw as f32 * bw + x1 + ox * cfg.trans_std * rw;
                let hstart = ph as f32 * bh + y1 + oy * cfg.trans_std * rh;
                // (pixel row, weight of the value, of its x slope, of its y slope) per corner.
                let mut taps: Vec<(usize, f32, f32, f32)> = Vec::with_capacity(spp * spp * 4);
                let mut count = 0usize;
                for ih in 0..spp {
                    for iw in 0..spp {
                        let sx = wstart + iw as f32 * sw;
                        let sy = hstart + ih as f32 * sh;
                        if sx < -0.5 || sx > wf - 0.5 || sy < -0.5 || sy > hf - 0.5 {
                            continue;
                        }
                        count += 1;
                        let sx = sx.clamp(0.0, wf - 1.0);
                        let sy = sy.clamp(0.0, hf - 1.0);
                        let (x0, xc) = (sx.floor(), sx.ceil());
                        let (y0, yc) = (sy.floor(), sy.ceil());
                        let (dx, dy) = (sx - x0, sy - y0);
                        let at = |y: f32, x: f32| base + y as usize * w + x as usize;
                        taps.push((
                            at(y0, x0),
                            (1.0 - dx) * (1.0 - dy),
                            -(1.0 - dy),
                            -(1.0 - dx),
                        ));
                        taps.push((at(yc, x0), (1.0 - dx) * dy, -dy, 1.0 - dx));
                        taps.push((at(y0, xc), dx * (1.0 - dy), 1.0 - dy, -dx));
                        taps.push((at(yc, xc), dx * dy, dy, dx));
                    }
                }
                let inv = if count > 0 { 1.0 / count as f32 } else { 0.0 };
                let kx = cfg.trans_std * rw * inv;
                let ky = cfg.trans_std * rh * inv;
                bins.push(
                    taps.iter()
                        .map(|t| (t.0, [t.1 * inv, t.2 * kx, t.3 * ky]))
                        .collect(),
                );
            }
        }
    }
    if !grad {
        let value = bins
            .into_iter()
            .map(|list| list.into_iter().map(|(i, w)| (i, w[0])).collect())
            .collect();
        return Ok(gather_bins(features, value, rois.len(), p));
    }
    // The rows are gathered once for the value and both slopes (the slopes read them
    // detached).
    let [pooled, gx, gy] = gather_bins_k(features, bins, rois.len(), p);
    let live = offset.clone() - offset.detach();
    let dx = live.clone().narrow(1, 0, 1).expand([r, c, p, p]);
    let dy = live.narrow(1, 1, 1).expand([r, c, p, p]);
    Ok(pooled + dx * gx + dy * gy)
}

/// [`deform_roi_pool`] of every RoI from its pyramid level (`levels[i]` indexes `feats`, one
/// `[B, C, H_l, W_l]` per stride in `strides`), in the order of `rois`.
///
/// # Errors
/// Levels outside the pyramid, or as [`deform_roi_pool`].
pub fn deform_roi_pool_levels(
    feats: &[Tensor<4>],
    strides: &[f32],
    levels: &[usize],
    rois: &[[f32; 5]],
    offset: Tensor<4>,
    cfg: &DeformRoiPoolConfig,
) -> Result<Tensor<4>> {
    let Some(first) = feats.first() else {
        return Err(ModelError::Input(
            "deformable RoI pooling: no feature levels".into(),
        ));
    };
    let device = first.device();
    if feats.len() != strides.len() || levels.len() != rois.len() {
        return Err(ModelError::Input(format!(
            "deformable RoI pooling: {} levels for {} strides, {} level indices for {} RoIs",
            feats.len(),
            strides.len(),
            levels.len(),
            rois.len()
        )));
    }
    if let Some((i, l)) = levels.iter().enumerate().find(|(_, l)| **l >= feats.len()) {
        return Err(ModelError::Input(format!(
            "deformable RoI pooling: RoI {i} at level {l} of {}",
            feats.len()
        )));
    }
    let mut parts = Vec::new();
    let mut order = Vec::with_capacity(rois.len());
    for (l, feat) in feats.iter().enumerate() {
        let members: Vec<usize> = (0..rois.len()).filter(|&i| levels[i] == l).collect();
        if members.is_empty() {
            continue;
        }
        let level_rois: Vec<[f32; 5]> = members.iter().map(|&i| rois[i]).collect();
        let level_offset = offset.clone().select(0, index_tensor(&members, &device));
        let level_cfg = DeformRoiPoolConfig {
            spatial_scale: 1.0 / strides[l],
            ..*cfg
        };
        parts.push(deform_roi_pool(
            feat.clone(),
            &level_rois,
            level_offset,
            &level_cfg,
        )?);
        order.extend(members);
    }
    if parts.is_empty() {
        let [_, c, _, _] = first.dims();
        let p = cfg.output_size;
        return Ok(Tensor::zeros([0, c, p, p], &device));
    }
    let mut inverse = vec![0usize; order.len()];
    for (k, &i) in order.iter().enumerate() {
        inverse[i] = k;
    }
    Ok(Tensor::cat(parts, 0).select(0, index_tensor(&inverse, &device)))
}
