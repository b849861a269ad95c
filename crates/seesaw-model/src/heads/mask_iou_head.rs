//! Mask Scoring R-CNN's MaskIoU head (Huang et al., "Mask Scoring R-CNN", CVPR 2019), as
//! mmdetection's `MaskIoUHead` (mmdet/models/roi_heads/mask_heads/maskiou_head.py) and
//! `MaskScoringRoIHead` (mmdet/models/roi_heads/mask_scoring_roi_head.py) use it: it predicts,
//! per RoI and class, the IoU of the predicted mask with the ground truth, and at test time a
//! detection's score becomes its classification score times the predicted IoU of its class.
//!
//! Input: the mask head's RoI features `[R, C, 14, 14]` (before its convs) with, as one more
//! channel, the sigmoid of the mask logits of the RoI's class max-pooled 2x2 to 14x14. Then
//! `num_convs` 3x3 convs (the last with stride 2, to 7x7) and `num_fcs` fully connected layers,
//! each with ReLU, and `fc_mask_iou` (one IoU per class, no activation). Nothing is detached: the
//! IoU loss also trains the mask head and the features.
//!
//! Target of a positive RoI ([`mask_iou_targets`]): the mask predicted for its ground-truth
//! class thresholded as mmdetection does (`logits > mask_thr_binary`, 0.5: on the logits, a
//! probability above 0.62, as in the official code), its overlap with the 28x28 target, and the
//! ground truth's area extrapolated from the part inside the RoI by the share of the whole mask
//! the RoI covers: `IoU = overlap / (pred + target / ratio - overlap)`. Loss: `loss_weight`
//! (0.5) times the mean squared error over the positives whose target is above 0.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::heads::rpn_head::zeros_param;
use crate::losses::common::float_tensor;
use crate::ops::Box2;
use crate::structures::GtMask;

/// Settings of [`MaskIouHead`] (`[model.mask_iou_head]`); defaults are mmdetection's
/// configs/ms_rcnn/.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskIouHeadConfig {
    /// Mask Scoring on (mmdetection's `MaskScoringRoIHead`). Default false.
    pub enabled: bool,
    /// Default 4 (the last with stride 2).
    pub num_convs: usize,
    /// Default 2.
    pub num_fcs: usize,
    /// Default 256.
    pub conv_out_channels: usize,
    /// Default 1024.
    pub fc_out_channels: usize,
    /// `loss_iou.loss_weight` of the mean squared error. Default 0.5.
    pub loss_weight: f64,
    /// The training target's threshold on the mask logits (`train_cfg.rcnn.mask_thr_binary`).
    /// Default 0.5.
    pub mask_thr_binary: f32,
}

impl Default for MaskIouHeadConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            num_convs: 4,
            num_fcs: 2,
            conv_out_channels: 256,
            fc_out_channels: 1024,
            loss_weight: 0.5,
            mask_thr_binary: 0.5,
        }
    }
}

impl MaskIouHeadConfig {
    /// Builds the head over `in_channels` RoI features (14x14) for `num_classes` classes, with
    /// mmdetection's init: Kaiming-normal (fan out) convs, Caffe2-Xavier fully connected
    /// layers, `fc_mask_iou` normal with std 0.01, zero biases.
    ///
    /// # Errors
    /// [`ModelError::Input`] for zero sizes.
    pub fn init(
        &self,
        in_channels: usize,
        num_classes: usize,
        device: &Device,
    ) -> Result<MaskIouHead> {
        if self.num_convs == 0
            || self.num_fcs == 0
            || self.conv_out_channels == 0
            || self.fc_out_channels == 0
            || num_classes == 0
        {
            return Err(ModelError::Input(
                "model.mask_iou_head: num_convs, num_fcs, conv_out_channels and \
                 fc_out_channels must be positive"
                    .into(),
            ));
        }
        let co = self.conv_out_channels;
        let convs = (0..self.num_convs)
            .map(|i| {
                let cin = if i == 0 { in_channels + 1 } else { co };
                let stride = if i + 1 == self.num_convs { 2 } else { 1 };
                let mut conv = Conv2dConfig::new([cin, co], [3, 3])
                    .with_stride([stride; 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .with_initializer(Initializer::KaimingNormal {
                        gain: 2f64.sqrt(),
                        fan_out_only: true,
                    })
                    .with_bias(false)
                    .init(device);
                conv.bias = Some(Initializer::Zeros.init([co], device));
                conv
            })
            .collect();
        let linear = |i: usize, o: usize, init: Initializer| {
            let mut l = LinearConfig::new(i, o).with_initializer(init).init(device);
            l.bias = l.bias.take().map(zeros_param);
            l
        };
        let caffe2 = Initializer::KaimingUniform {
            gain: 1.0,
            fan_out_only: false,
        };
        let fo = self.fc_out_channels;
        let fcs = (0..self.num_fcs)
            .map(|i| {
                let fin = if i == 0 { co * POOLED * POOLED } else { fo };
                linear(fin, fo, caffe2.clone())
            })
            .collect();
        let fc_mask_iou = linear(
            fo,
            num_classes,
            Initializer::Normal {
                mean: 0.0,
                std: 0.01,
            },
        );
        Ok(MaskIouHead {
            convs,
            fcs,
            fc_mask_iou,
            loss_weight: self.loss_weight,
            mask_thr_binary: self.mask_thr_binary,
        })
    }
}

/// Side after the stride-2 conv of 14x14 RoI features.
const POOLED: usize = 7;

/// The MaskIoU head; mmdetection's names (`convs.i`, `fcs.i`, `fc_mask_iou`).
#[derive(Module, Debug)]
pub struct MaskIouHead {
    pub convs: Vec<Conv2d>,
    pub fcs: Vec<Linear>,
    pub fc_mask_iou: Linear,
    pub loss_weight: f64,
    pub mask_thr_binary: f32,
}

impl MaskIouHead {
    /// `mask_feats` `[R, C, 14, 14]` and `mask_logits` `[R, 28, 28]` (of each RoI's class) ->
    /// predicted IoUs `[R, num_classes]`.
    pub fn forward(&self, mask_feats: Tensor<4>, mask_logits: Tensor<3>) -> Tensor<2> {
        let [r, m, _] = mask_logits.dims();
        let pooled = max_pool2d(
            sigmoid(mask_logits).reshape([r, 1, m, m]),
            MaxPoolOptions::new([2, 2]),
        );
        let mut x = Tensor::cat(vec![mask_feats, pooled], 1);
        for conv in &self.convs {
            x = relu(conv.forward(x));
        }
        let [_, c, h, w] = x.dims();
        let mut x = x.reshape([r, c * h * w]);
        for fc in &self.fcs {
            x = relu(fc.forward(x));
        }
        self.fc_mask_iou.forward(x)
    }

    /// mmdetection's `MaskIoUHead.loss`: `loss_weight` times the mean squared error of `pred`
    /// `[P]` against `targets` over the positives whose target is above 0 (NaN targets are
    /// not); with none, a zero that still reaches the head.
    pub fn loss(&self, pred: Tensor<1>, targets: &[f32]) -> Tensor<1> {
        let device = pred.device();
        let keep: Vec<usize> = targets
            .iter()
            .enumerate()
            .filter(|(_, t)| **t > 0.0)
            .map(|(i, _)| i)
            .collect();
        // Over the whole global batch under data parallelism (a replica without positives
        // adds its zero in `mask_loss`).
        let kept = crate::distributed::global_sum(keep.len() as f64);
        if keep.is_empty() {
            return pred.sum().mul_scalar(0.0);
        }
        let chosen = pred.select(0, crate::losses::common::index_tensor(&keep, &device));
        let want = float_tensor(
            keep.iter().map(|&i| f64::from(targets[i])).collect(),
            [keep.len()],
            &device,
        );
        (chosen - want)
            .square()
            .sum()
            .div_scalar(kept.max(1.0))
            .mul_scalar(self.loss_weight)
    }
}

/// The share of ground-truth mask `gt`'s pixels inside `proposal` (mmdetection's
/// `MaskIoUHead._get_area_ratio`): the box truncated to integers and clipped to the mask,
/// at least one pixel wide and high, over the whole mask's area (plus 1e-7).
pub fn area_ratio(gt: &GtMask, proposal: &Box2) -> f32 {
    let (w, h) = (gt.width as i64, gt.height as i64);
    // numpy's astype(int32) truncates toward zero; the crop clips to the mask.
    let t = proposal.map(|v| v as i64);
    let x1 = t[0].clamp(0, w);
    let y1 = t[1].clamp(0, h);
    let x2 = t[2].clamp(0, w);
    let y2 = t[3].clamp(0, h);
    let cw = (x2 - x1).max(1);
    let ch = (y2 - y1).max(1);
    let total: u64 = gt.data.iter().map(|&v| u64::from(v != 0)).sum();
    let mut inside = 0u64;
    for y in y1..(y1 + ch).min(h) {
        let row = &gt.data[(y * w) as usize..((y + 1) * w) as usize];
        inside += row[x1 as usize..((x1 + cw).min(w)) as usize]
            .iter()
            .map(|&v| u64::from(v != 0))
            .sum::<u64>();
    }
    (inside as f64 / (total as f64 + 1e-7)) as f32
}

/// The IoU targets of the positives (mmdetection's `MaskIoUHead.get_targets`): per positive,
/// `mask_logits` (`m x m`, of its ground-truth class) thresholded at `thr`, `mask_targets` its
/// binary `m x m` target and `ratio` its [`area_ratio`]:
/// `overlap / (pred_area + target_area / (ratio + 1e-7) - overlap)` in float32 (0/0 is NaN, as
/// mmdetection's, and is left out of the loss).
pub fn mask_iou_targets(
    mask_logits: &[f32],
    mask_targets: &[f32],
    ratios: &[f32],
    thr: f32,
) -> Vec<f32> {
    let p = ratios.len();
    if p == 0 {
        return vec![];
    }
    let mm = mask_logits.len() / p;
    (0..p)
        .map(|i| {
            let pred = &mask_logits[i * mm..(i + 1) * mm];
            let target = &mask_targets[i * mm..(i + 1) * mm];
            let (mut area, mut overlap, mut t) = (0f32, 0f32, 0f32);
            for (&l, &g) in pred.iter().zip(target) {
                let b = if l > thr { 1.0 } else { 0.0 };
                area += b;
                overlap += b * g;
                t += g;
            }
            let full = t / (ratios[i] + 1e-7);
            overlap / (area + full - overlap)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_ratio_and_targets_by_hand() {
        // A 4x4 mask with a 2x2 block at rows 1-2, columns 1-2.
        let gt = GtMask::filled_box(4, 4, [1.0, 1.0, 3.0, 3.0]);
        // Truncated to [0, 0, 2, 3]: columns 0-1, rows 0-2 hold (1, 1) and (2, 1): 2 of 4.
        assert!((area_ratio(&gt, &[0.9, 0.2, 2.7, 3.9]) - 0.5).abs() < 1e-6);
        // Outside the mask: clipped to one pixel at (0, 0), which is not set.
        assert_eq!(area_ratio(&gt, &[-5.0, -5.0, 0.5, 0.5]), 0.0);
        // 2x2 masks. RoI 0: logits above 0.5 at cells 0 and 1 (0.5 itself is not), target
        // cells 0 and 2, ratio 0.5: overlap 1, predicted 2, whole ground truth 2 / 0.5 = 4,
        // IoU 1 / (2 + 4 - 1) = 0.2. RoI 1: nothing predicted, IoU 0.
        let logits = [1.0, 0.6, 0.5, -1.0, 0.5, 0.5, 0.5, 0.5];
        let targets = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        let t = mask_iou_targets(&logits, &targets, &[0.5, 1.0], 0.5);
        assert!((t[0] - 0.2).abs() < 1e-6 && t[1] == 0.0, "{t:?}");
    }
}
