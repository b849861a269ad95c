//! Feature Pyramid Grids (Chen et al., "Feature Pyramid Grids", 2020), as mmdetection's `FPG`
//! (mmdet/models/necks/fpg.py) with the transitions of its recipes
//! (configs/fpg/mask-rcnn_r50_fpg_crop640-50e_coco.py and `-chn128`).
//!
//! The grid starts from 1x1 laterals of the backbone levels (plain convs with bias, to
//! `inter_channels`) and max-pooled extra levels (kernel 1, stride 2). Each of `stack_times`
//! pathways (`paths`: bottom-up `bu` or top-down `td`) makes a new map per level as the sum of
//! its transitions, in this order:
//! - `same_up`: 3x3 stride-2 conv of the map just made one level finer in this pathway
//!   (bottom-up pathways, levels above the finest);
//! - `across_lateral`: 1x1 conv of the previous pathway's map at this level;
//! - `across_down`: nearest 2x upsampling, then a 3x3 conv, of the previous pathway's map one
//!   level coarser (all levels but the coarsest);
//! - `across_skip`: 1x1 conv of the grid's first column (the laterals) at this level.
//!
//! Every transition is mmcv's ConvModule in the order ReLU -> conv -> norm (the recipe's BN,
//! `model.neck.norm`); a level listed in `skip_inds` for a stack passes the previous map on
//! unchanged and has no transitions there. The output of each level is a 3x3 conv (ReLU first,
//! no norm, with bias) of the last pathway's map, `inter_channels -> out_channels`.
//!
//! Left as in the recipe, not configurable: `same_down_trans` and `across_up_trans` are None
//! and `add_extra_convs` is False. mmdetection needs every level exactly half the one below
//! (its recipe pads images to 64); here an upsampled map larger than its level (odd sizes) is
//! cropped to it, so any size works. Names are mmdetection's:
//! `neck.lateral_convs.i`, `neck.fpn_transitions.s.i.{same_up,across_lateral,across_skip}.conv`
//! and `.bn`, `neck.fpn_transitions.s.i.across_down.conv.conv`,
//! `neck.output_transition.i.conv_out.conv`.

use burn::module::Module;
use burn::nn::Initializer;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::NeckConfig;
use crate::layers::{Activation, ConvInit, ConvModule, ConvModuleConfig, NormConfig};
use crate::ops::carafe::upsample_nearest;

/// The direction of one FPG pathway (mmdetection's `paths` entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FpgPath {
    /// Bottom-up: levels from the finest, each with a `same_up` from the one below.
    Bu,
    /// Top-down: levels from the coarsest (no same-pathway transition, as the recipe's
    /// `same_down_trans=None`).
    Td,
}

/// mmdetection's `UpInterpolationConv`: nearest 2x upsampling, then a ConvModule.
#[derive(Module, Debug)]
pub struct UpInterpolationConv {
    pub conv: ConvModule,
}

/// mmdetection's `LastConv`: a ConvModule on the last pathway's map.
#[derive(Module, Debug)]
pub struct LastConv {
    pub conv_out: ConvModule,
}

/// The transitions into one (pathway, level) of the grid; all None where the level is skipped.
#[derive(Module, Debug)]
pub struct FpgTransitions {
    pub same_up: Option<ConvModule>,
    pub across_lateral: Option<ConvModule>,
    pub across_down: Option<UpInterpolationConv>,
    pub across_skip: Option<ConvModule>,
}

/// The feature pyramid grid.
#[derive(Module, Debug)]
pub struct Fpg {
    /// 1x1 convs with bias, backbone level -> `inter_channels`.
    pub lateral_convs: Vec<Conv2d>,
    /// `[stack][level]`.
    pub fpn_transitions: Vec<Vec<FpgTransitions>>,
    /// One per level.
    pub output_transition: Vec<LastConv>,
    pub pool: MaxPool2d,
    /// Per stack: a top-down pathway.
    pub top_down: Vec<bool>,
    /// `[level][stack]`: the level passes the previous map on.
    pub skipped: Vec<Vec<bool>>,
    pub num_outs: usize,
    pub start_level: usize,
}

/// The nearest 2x upsampling of `x`, cropped to `[h, w]` when larger.
fn up2_to(x: Tensor<4>, h: usize, w: usize) -> Tensor<4> {
    let up = upsample_nearest(x, 2);
    let [b, c, uh, uw] = up.dims();
    if (uh, uw) == (h, w) {
        up
    } else {
        up.slice([0..b, 0..c, 0..h.min(uh), 0..w.min(uw)])
    }
}

impl Fpg {
    /// Builds the grid over the used inputs of `in_channels`; `cfg` is checked
    /// ([`NeckConfig::check`]). mmdetection's init: Caffe2-Xavier convs with zero biases,
    /// norms weight 1 and bias 0.
    pub(crate) fn build(cfg: &NeckConfig, in_channels: &[usize], device: &Device) -> Self {
        let n = cfg.num_outs;
        let inter = cfg.inter_channels();
        let stacks = cfg.stack_times();
        let skip_inds = cfg.skip_inds();
        let paths = cfg.paths();
        let lateral_convs = in_channels
            .iter()
            .map(|&cin| {
                let mut conv = Conv2dConfig::new([cin, inter], [1, 1])
                    .with_initializer(Initializer::KaimingUniform {
                        gain: 1.0,
                        fan_out_only: false,
                    })
                    .with_bias(false)
                    .init(device);
                conv.bias = Some(Initializer::Zeros.init([inter], device));
                conv
            })
            .collect();
        let trans = |k: usize, norm: &NormConfig, cout: usize| {
            ConvModuleConfig::new(inter, cout, k, norm)
                .with_act(Activation::ReluFirst)
                .with_init(ConvInit::Caffe2Xavier)
        };
        let norm = &cfg.norm;
        let fpn_transitions = (0..stacks)
            .map(|s| {
                (0..n)
                    .map(|i| {
                        if skip_inds[i].contains(&s) {
                            return FpgTransitions {
                                same_up: None,
                                across_lateral: None,
                                across_down: None,
                                across_skip: None,
                            };
                        }
                        // mmdetection's order: same_up, across_lateral, across_down, across_skip.
                        let same_up =
                            (i > 0).then(|| trans(3, norm, inter).with_stride(2).init(device));
                        let across_lateral = Some(trans(1, norm, inter).init(device));
                        let across_down = (i + 1 < n).then(|| UpInterpolationConv {
                            conv: trans(3, norm, inter).init(device),
                        });
                        let across_skip = Some(trans(1, norm, inter).init(device));
                        FpgTransitions {
                            same_up,
                            across_lateral,
                            across_down,
                            across_skip,
                        }
                    })
                    .collect()
            })
            .collect();
        let output_transition = (0..n)
            .map(|_| LastConv {
                conv_out: trans(3, &NormConfig::default(), cfg.out_channels).init(device),
            })
            .collect();
        Self {
            lateral_convs,
            fpn_transitions,
            output_transition,
            pool: MaxPool2dConfig::new([1, 1]).with_strides([2, 2]).init(),
            top_down: paths.iter().map(|p| *p == FpgPath::Td).collect(),
            skipped: (0..n)
                .map(|i| (0..stacks).map(|s| skip_inds[i].contains(&s)).collect())
                .collect(),
            num_outs: n,
            start_level: cfg.start_level,
        }
    }

    /// `inputs`: the backbone maps, finest first (the first `start_level` unused) ->
    /// `num_outs` maps `[B, out_channels, H_l, W_l]`.
    pub fn forward(&self, inputs: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        let n = self.num_outs;
        let mut first: Vec<Tensor<4>> = self
            .lateral_convs
            .iter()
            .zip(inputs.into_iter().skip(self.start_level))
            .map(|(conv, x)| conv.forward(x))
            .collect();
        while first.len() < n {
            let last = first[first.len() - 1].clone();
            first.push(self.pool.forward(last));
        }
        let mut current = first.clone();
        for (s, cells) in self.fpn_transitions.iter().enumerate() {
            let td = self.top_down[s];
            let mut next: Vec<Tensor<4>> = Vec::with_capacity(n);
            for j in 0..n {
                if self.skipped[j][s] {
                    next.push(current[j].clone());
                    continue;
                }
                let lvl = if td { n - 1 - j } else { j };
                let cell = &cells[lvl];
                let [_, _, h, w] = current[lvl].dims();
                let mut parts: Vec<Tensor<4>> = Vec::with_capacity(4);
                if !td && let (Some(t), Some(prev)) = (&cell.same_up, next.last()) {
                    parts.push(t.forward(prev.clone()));
                }
                if let Some(t) = &cell.across_lateral {
                    parts.push(t.forward(current[lvl].clone()));
                }
                if let Some(t) = &cell.across_down
                    && lvl + 1 < n
                {
                    parts.push(t.conv.forward(up2_to(current[lvl + 1].clone(), h, w)));
                }
                if let Some(t) = &cell.across_skip {
                    parts.push(t.forward(first[lvl].clone()));
                }
                let fused = parts
                    .into_iter()
                    .reduce(|a, b| a + b)
                    .unwrap_or_else(|| current[lvl].clone());
                next.push(fused);
            }
            if td {
                next.reverse();
            }
            current = next;
        }
        self.output_transition
            .iter()
            .zip(current)
            .map(|(t, x)| t.conv_out.forward(x))
            .collect()
    }
}
