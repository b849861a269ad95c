//! The region proposal network (mmdetection's `RPNHead`): a shared 3x3 conv, then per anchor
//! one objectness logit and four box deltas; its loss over sampled anchors, and its proposals.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::losses::common::{bce_with_logits, float_tensor, host_f32, index_tensor};
use crate::ops::Box2;
use crate::ops::anchors::AnchorGenerator;
use crate::ops::assigner::MaxIouAssigner;
use crate::ops::box_coder::DeltaXywhCoder;
use crate::ops::nms::batched_nms;
use crate::ops::sampler::RandomSampler;
use crate::structures::{GtInstances, ImageMeta};

/// How proposals are made from the RPN's outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalConfig {
    /// Best-scoring anchors kept per level before NMS.
    pub nms_pre: usize,
    /// Proposals kept per image after NMS.
    pub max_per_img: usize,
    pub nms_iou: f32,
    /// Proposals with a side not above this are dropped. Default 0.
    pub min_size: f32,
}

/// Settings of the RPN; defaults are mmdetection's Mask R-CNN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpnConfig {
    /// Anchor strides, one per pyramid level. Default 4, 8, 16, 32, 64.
    pub anchor_strides: Vec<f32>,
    /// Anchor sizes are stride x scale. Default 8.
    pub anchor_scales: Vec<f32>,
    /// Height / width. Default 0.5, 1, 2.
    pub anchor_ratios: Vec<f32>,
    /// Base anchors rounded to whole pixels, half to even, as torchvision's
    /// `AnchorGenerator`. Default false.
    pub anchor_round: bool,
    /// Each level's anchor strides are the input's size divided (integer division, per axis)
    /// by the level's, as torchvision's `AnchorGenerator` computes them. Default false.
    pub anchor_strides_from_sizes: bool,
    /// Channels of the shared conv; 0 = the neck's. Default 0.
    pub feat_channels: usize,
    /// 3x3 convs (each with ReLU) before the classifier and regressor: 1 (mmdetection's and
    /// torchvision's v1 head) or more (`RPNHead(conv_depth=2)` of torchvision's
    /// `maskrcnn_resnet50_fpn_v2`). Default 1.
    pub num_convs: usize,
    /// Anchors sampled per image for the loss. Default 256.
    pub sampler_num: usize,
    /// Default 0.5.
    pub sampler_pos_fraction: f32,
    /// Assigner thresholds (positive, negative, min positive). Default 0.7, 0.3, 0.3.
    pub pos_iou: f32,
    pub neg_iou: f32,
    pub min_pos_iou: f32,
    /// Proposals in training. Default 2000 / 1000, NMS 0.7.
    pub train: ProposalConfig,
    /// Proposals at test time. Default 1000 / 1000, NMS 0.7.
    pub test: ProposalConfig,
}

impl Default for RpnConfig {
    fn default() -> Self {
        Self {
            anchor_strides: vec![4.0, 8.0, 16.0, 32.0, 64.0],
            anchor_scales: vec![8.0],
            anchor_ratios: vec![0.5, 1.0, 2.0],
            anchor_round: false,
            anchor_strides_from_sizes: false,
            feat_channels: 0,
            num_convs: 1,
            sampler_num: 256,
            sampler_pos_fraction: 0.5,
            pos_iou: 0.7,
            neg_iou: 0.3,
            min_pos_iou: 0.3,
            train: ProposalConfig {
                nms_pre: 2000,
                max_per_img: 1000,
                nms_iou: 0.7,
                min_size: 0.0,
            },
            test: ProposalConfig {
                nms_pre: 1000,
                max_per_img: 1000,
                nms_iou: 0.7,
                min_size: 0.0,
            },
        }
    }
}

impl RpnConfig {
    pub fn anchor_generator(&self) -> AnchorGenerator {
        AnchorGenerator {
            strides: self.anchor_strides.clone(),
            ratios: self.anchor_ratios.clone(),
            scales: self.anchor_scales.clone(),
            round_base: self.anchor_round,
            strides_from_sizes: self.anchor_strides_from_sizes,
        }
    }

    /// Builds the head over `in_channels`-channel maps (convs drawn from N(0, 0.01²), bias 0).
    pub fn init(&self, in_channels: usize, device: &Device) -> Result<RpnHead> {
        let a = self.anchor_ratios.len() * self.anchor_scales.len();
        if a == 0 || self.anchor_strides.is_empty() {
            return Err(ModelError::Input(
                "rpn: anchor_strides, anchor_scales and anchor_ratios must not be empty".into(),
            ));
        }
        if self.num_convs == 0 {
            return Err(ModelError::Input(
                "model.rpn.num_convs: the RPN head needs at least one conv".into(),
            ));
        }
        let f = if self.feat_channels == 0 {
            in_channels
        } else {
            self.feat_channels
        };
        let mk = |cin: usize, cout: usize, k: usize| {
            Conv2dConfig::new([cin, cout], [k, k])
                .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.01,
                })
                .init(device)
        };
        Ok(RpnHead {
            conv: zero_bias(mk(in_channels, f, 3)),
            extra_convs: (1..self.num_convs)
                .map(|_| zero_bias(mk(f, f, 3)))
                .collect(),
            cls: zero_bias(mk(f, a, 1)),
            reg: zero_bias(mk(f, 4 * a, 1)),
        })
    }
}

pub(crate) fn zero_bias(mut c: Conv2d) -> Conv2d {
    c.bias = c.bias.take().map(zeros_param);
    c
}

/// A trainable zero parameter of `p`'s shape and device (mmdetection's bias init). Mapping the
/// value instead would drop its gradient flag.
pub(crate) fn zeros_param(p: Param<Tensor<1>>) -> Param<Tensor<1>> {
    let [n] = p.shape().dims();
    Param::from_tensor(Tensor::zeros([n], &p.lazy_device()))
}

/// The RPN head.
#[derive(Module, Debug)]
pub struct RpnHead {
    pub conv: Conv2d,
    /// The convs after the first (`num_convs` > 1), each with ReLU; empty by default.
    pub extra_convs: Vec<Conv2d>,
    pub cls: Conv2d,
    pub reg: Conv2d,
}

/// The RPN's outputs over all levels, flattened in anchor order.
#[derive(Debug, Clone)]
pub struct RpnOutput {
    /// Objectness logits `[B, N]`.
    pub cls: Tensor<2>,
    /// Deltas `[B, N, 4]`.
    pub reg: Tensor<3>,
    /// Anchors per level `(height, width)` of its map.
    pub sizes: Vec<(usize, usize)>,
}

impl RpnHead {
    /// `feats`: pyramid maps `[B, C, H_l, W_l]` -> logits and deltas of every anchor.
    pub fn forward(&self, feats: &[Tensor<4>]) -> RpnOutput {
        let mut cls = Vec::new();
        let mut reg = Vec::new();
        let mut sizes = Vec::new();
        for f in feats {
            let [b, _, h, w] = f.dims();
            let mut x = relu(self.conv.forward(f.clone()));
            for conv in &self.extra_convs {
                x = relu(conv.forward(x));
            }
            let c = self.cls.forward(x.clone());
            let a = c.dims()[1];
            cls.push(c.permute([0, 2, 3, 1]).reshape([b, h * w * a]));
            reg.push(
                self.reg
                    .forward(x)
                    .permute([0, 2, 3, 1])
                    .reshape([b, h * w * a, 4]),
            );
            sizes.push((h, w));
        }
        RpnOutput {
            cls: Tensor::cat(cls, 1),
            reg: Tensor::cat(reg, 1),
            sizes,
        }
    }
}

/// All anchors of the levels in `sizes`, in the RPN's output order, and where each level starts.
pub fn level_anchors(
    generator: &AnchorGenerator,
    sizes: &[(usize, usize)],
) -> (Vec<Box2>, Vec<usize>) {
    let mut all = Vec::new();
    let mut starts = Vec::new();
    // The input's size, from the finest level (a multiple of its stride: inputs are padded).
    let input = sizes.first().map(|&(h, w)| {
        let s = generator.strides.first().copied().unwrap_or(1.0) as usize;
        (h * s, w * s)
    });
    for (l, &(h, w)) in sizes.iter().enumerate() {
        starts.push(all.len());
        let strides = match input {
            Some((ih, iw)) if generator.strides_from_sizes && h > 0 && w > 0 => {
                ((ih / h) as f32, (iw / w) as f32)
            }
            _ => (generator.strides[l], generator.strides[l]),
        };
        all.extend(generator.grid_anchors_strided(l, h, w, strides));
    }
    starts.push(all.len());
    (all, starts)
}

impl RpnConfig {
    /// The RPN loss: (objectness BCE, L1 on deltas of positives), both averaged over the
    /// sampled anchors of the batch, as mmdetection's `avg_factor`; image i's anchors are
    /// sampled with `rngs[i]`.
    pub fn loss<R: Rng>(
        &self,
        out: &RpnOutput,
        anchors: &[Box2],
        gts: &[GtInstances],
        rngs: &mut [R],
    ) -> Result<(Tensor<1>, Tensor<1>)> {
        let device = out.cls.device();
        let [b, n] = out.cls.dims();
        if anchors.len() != n || gts.len() != b || rngs.len() < b {
            return Err(ModelError::Input(format!(
                "rpn loss: {} anchors for {n} outputs, {} ground-truth sets and {} generators \
                 for {b} images",
                anchors.len(),
                gts.len(),
                rngs.len()
            )));
        }
        let assigner = MaxIouAssigner {
            pos_iou_thr: self.pos_iou,
            neg_iou_thr: (0.0, self.neg_iou),
            min_pos_iou: self.min_pos_iou,
            ..MaxIouAssigner::rpn()
        };
        let sampler = RandomSampler {
            num: self.sampler_num,
            pos_fraction: self.sampler_pos_fraction,
            neg_pos_ub: -1.0,
            add_gt_as_proposals: false,
        };
        let coder = DeltaXywhCoder::default();
        let (mut sel, mut sel_t, mut pos, mut pos_t) = (vec![], vec![], vec![], vec![]);
        for (i, gt) in gts.iter().enumerate() {
            let labels = vec![0usize; gt.boxes.len()];
            let assign = assigner.assign(anchors, &gt.boxes, &labels, &gt.ignore);
            let s = sampler.sample(&assign, &labels, &mut rngs[i]);
            for &p in &s.pos {
                sel.push(i * n + p);
                sel_t.push(1.0);
                pos.push(i * n + p);
                let g = (assign.gt_inds[p] - 1) as usize;
                pos_t.extend(coder.encode(&anchors[p], &gt.boxes[g]).map(f64::from));
            }
            for &q in &s.neg {
                sel.push(i * n + q);
                sel_t.push(0.0);
            }
        }
        // Over the whole global batch under data parallelism.
        let avg = crate::distributed::global_sum(sel.len() as f64).max(1.0);
        let cls = out.cls.clone().reshape([b * n, 1]);
        let loss_cls = if sel.is_empty() {
            cls.sum().mul_scalar(0.0)
        } else {
            let k = sel.len();
            let logits = cls.select(0, index_tensor(&sel, &device));
            bce_with_logits(logits, float_tensor(sel_t, [k, 1], &device))
                .sum()
                .div_scalar(avg)
        };
        let reg = out.reg.clone().reshape([b * n, 4]);
        let loss_reg = if pos.is_empty() {
            reg.sum().mul_scalar(0.0)
        } else {
            let k = pos.len();
            let pred = reg.select(0, index_tensor(&pos, &device));
            (pred - float_tensor(pos_t, [k, 4], &device))
                .abs()
                .sum()
                .div_scalar(avg)
        };
        Ok((loss_cls, loss_reg))
    }

    /// Proposals per image (boxes at input scale with their objectness), best first.
    pub fn proposals(
        &self,
        out: &RpnOutput,
        anchors: &[Box2],
        starts: &[usize],
        metas: &[ImageMeta],
        cfg: &ProposalConfig,
    ) -> Result<Vec<Vec<(Box2, f32)>>> {
        let [b, n] = out.cls.dims();
        // Objectness and deltas side by side, `[B, N, 5]`: one read back, not two (each read
        // waits for a GPU's queue).
        let both = host_f32(Tensor::cat(
            vec![
                out.cls.clone().detach().unsqueeze_dim::<3>(2),
                out.reg.clone().detach(),
            ],
            2,
        ))?;
        let coder = DeltaXywhCoder::default();
        let mut result = Vec::with_capacity(b);
        for (i, meta) in metas.iter().enumerate().take(b) {
            let max_shape = Some((meta.img_shape.0 as f32, meta.img_shape.1 as f32));
            let (mut boxes, mut scores, mut levels) = (vec![], vec![], vec![]);
            for l in 0..starts.len().saturating_sub(1) {
                let mut idx: Vec<usize> = (starts[l]..starts[l + 1]).collect();
                let score = |a: usize| both[(i * n + a) * 5];
                if idx.len() > cfg.nms_pre {
                    idx.select_nth_unstable_by(cfg.nms_pre, |&x, &y| score(y).total_cmp(&score(x)));
                    idx.truncate(cfg.nms_pre);
                }
                for a in idx {
                    let d: [f32; 4] = std::array::from_fn(|k| both[(i * n + a) * 5 + 1 + k]);
                    let bx = coder.decode(&anchors[a], &d, max_shape);
                    let s = 1.0 / (1.0 + (-score(a)).exp());
                    if bx[2] - bx[0] > cfg.min_size && bx[3] - bx[1] > cfg.min_size && s.is_finite()
                    {
                        boxes.push(bx);
                        scores.push(s);
                        levels.push(l);
                    }
                }
            }
            let keep = batched_nms(&boxes, &scores, &levels, cfg.nms_iou);
            result.push(
                keep.into_iter()
                    .take(cfg.max_per_img)
                    .map(|k| (boxes[k], scores[k]))
                    .collect(),
            );
        }
        Ok(result)
    }
}
