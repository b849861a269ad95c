//! mmdetection's `SingleRoIExtractor`: each RoI is pooled from one FPN level, chosen by its
//! scale (`floor(log2(sqrt(w h) / finest_scale + 1e-6))`, clamped to the levels).

use burn::tensor::Tensor;

use super::roi_align::{RoiAlignConfig, roi_align};
use crate::error::{ModelError, Result};
use crate::losses::common::index_tensor;

/// Settings; mmdetection's defaults for Mask R-CNN boxes: strides 4-32, finest scale 56, 7x7,
/// adaptive sampling.
#[derive(Debug, Clone, PartialEq)]
pub struct RoiExtractorConfig {
    pub strides: Vec<f32>,
    /// RoIs of about this size go to the finest level. Default 56.
    pub finest_scale: f32,
    /// 7 for boxes, 14 for masks.
    pub output_size: usize,
    /// 0 = adaptive (default).
    pub sampling_ratio: usize,
    /// RoIAlign's `aligned` (see [`RoiAlignConfig::aligned`]). Default true.
    pub aligned: bool,
}

impl Default for RoiExtractorConfig {
    fn default() -> Self {
        Self {
            strides: vec![4.0, 8.0, 16.0, 32.0],
            finest_scale: 56.0,
            output_size: 7,
            sampling_ratio: 0,
            aligned: true,
        }
    }
}

impl RoiExtractorConfig {
    /// The level of each RoI (`[batch, x1, y1, x2, y2]`).
    pub fn map_roi_levels(&self, rois: &[[f32; 5]]) -> Vec<usize> {
        let top = self.strides.len().saturating_sub(1) as f32;
        rois.iter()
            .map(|r| {
                let scale = ((r[3] - r[1]) * (r[4] - r[2])).sqrt();
                let lvl = (scale / self.finest_scale + 1e-6).log2().floor();
                // NaN (an inverted box) goes to level 0, as torch's clamp of NaN to long does.
                if lvl.is_nan() {
                    0
                } else {
                    lvl.clamp(0.0, top) as usize
                }
            })
            .collect()
    }

    /// Pools every RoI from its level of `feats` (one `[B, C, H_l, W_l]` per stride) ->
    /// `[R, C, output_size, output_size]`, in the order of `rois`.
    ///
    /// # Errors
    /// Feature levels that do not match the strides; RoIs naming missing images.
    pub fn extract(&self, feats: &[Tensor<4>], rois: &[[f32; 5]]) -> Result<Tensor<4>> {
        self.extract_scaled(feats, rois, None)
    }

    /// [`Self::extract`] with each RoI enlarged `scale` times about its centre
    /// ([`roi_rescale`]) after its level is chosen from its own size, as mmdetection's
    /// extractor does with `roi_scale_factor` (Double Head's regression RoIs); `None` pools
    /// the RoIs as given.
    ///
    /// # Errors
    /// As [`Self::extract`].
    pub fn extract_scaled(
        &self,
        feats: &[Tensor<4>],
        rois: &[[f32; 5]],
        scale: Option<f32>,
    ) -> Result<Tensor<4>> {
        if feats.len() != self.strides.len() || feats.is_empty() {
            return Err(ModelError::Input(format!(
                "{} feature levels for {} strides",
                feats.len(),
                self.strides.len()
            )));
        }
        let levels = self.map_roi_levels(rois);
        let mut parts = Vec::new();
        let mut order = Vec::with_capacity(rois.len());
        for (l, feat) in feats.iter().enumerate() {
            let members: Vec<usize> = (0..rois.len()).filter(|&i| levels[i] == l).collect();
            if members.is_empty() {
                continue;
            }
            let level_rois: Vec<[f32; 5]> = members
                .iter()
                .map(|&i| match scale {
                    Some(f) => roi_rescale(&rois[i], f),
                    None => rois[i],
                })
                .collect();
            let cfg = RoiAlignConfig {
                output_size: self.output_size,
                spatial_scale: 1.0 / self.strides[l],
                sampling_ratio: self.sampling_ratio,
                aligned: self.aligned,
            };
            parts.push(roi_align(feat.clone(), &level_rois, &cfg)?);
            order.extend(members);
        }
        if parts.is_empty() {
            let [_, c, _, _] = feats[0].dims();
            let p = self.output_size;
            // No RoI: an empty tensor, still downstream of every level, so that a head run on
            // it sits after the features in the autodiff graph as on a replica with RoIs
            // (SyncBN's backward all-reduces then come in the same order on every replica).
            let after = feats
                .iter()
                .map(|f| f.clone().sum().mul_scalar(0.0))
                .reduce(|a, b| a + b)
                .map(|s| s.reshape([1, 1, 1, 1]));
            let empty = Tensor::zeros([0, c, p, p], &feats[0].device());
            return Ok(match after {
                Some(s) => empty + s,
                None => empty,
            });
        }
        // Back to the order of `rois`: row k of the result is RoI order[k].
        let mut inverse = vec![0usize; order.len()];
        for (k, &i) in order.iter().enumerate() {
            inverse[i] = k;
        }
        let device = feats[0].device();
        Ok(Tensor::cat(parts, 0).select(0, index_tensor(&inverse, &device)))
    }
}

/// `roi` (`[image, x1, y1, x2, y2]`) enlarged `scale` times about its centre, not clipped
/// (mmdetection's `BaseRoIExtractor.roi_rescale`, in its order of operations).
pub fn roi_rescale(roi: &[f32; 5], scale: f32) -> [f32; 5] {
    let cx = (roi[1] + roi[3]) * 0.5;
    let cy = (roi[2] + roi[4]) * 0.5;
    let w = (roi[3] - roi[1]) * scale;
    let h = (roi[4] - roi[2]) * scale;
    [
        roi[0],
        cx - w * 0.5,
        cy - h * 0.5,
        cx + w * 0.5,
        cy + h * 0.5,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn levels_by_scale() {
        let cfg = RoiExtractorConfig::default();
        let roi = |s: f32| [0.0, 0.0, 0.0, s, s];
        // < 112 -> 0, [112, 224) -> 1, [224, 448) -> 2, >= 448 -> 3.
        let lv = cfg.map_roi_levels(&[
            roi(50.0),
            roi(111.0),
            roi(112.0),
            roi(300.0),
            roi(1000.0),
            roi(0.0),
        ]);
        assert_eq!(lv, vec![0, 0, 1, 2, 3, 0]);
    }

    #[test]
    fn each_roi_is_pooled_from_its_level_in_input_order() {
        let dev = Device::flex();
        let cfg = RoiExtractorConfig {
            strides: vec![4.0, 8.0],
            output_size: 2,
            sampling_ratio: 1,
            ..Default::default()
        };
        // Level 0 is all 1s, level 1 all 2s.
        let f0 =
            Tensor::<4>::from_data(TensorData::new(vec![1.0f32; 64 * 64], [1, 1, 64, 64]), &dev);
        let f1 =
            Tensor::<4>::from_data(TensorData::new(vec![2.0f32; 32 * 32], [1, 1, 32, 32]), &dev);
        let rois = [[0.0, 0.0, 0.0, 200.0, 200.0], [0.0, 2.0, 2.0, 20.0, 20.0]];
        let out = cfg.extract(&[f0, f1], &rois).unwrap();
        let v = out
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(v, vec![2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0]);
    }
}
