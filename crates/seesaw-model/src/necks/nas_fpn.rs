//! NAS-FPN (Ghiasi et al., "NAS-FPN: Learning Scalable Feature Pyramid Architecture for Object
//! Detection", CVPR 2019), as mmdetection's `NASFPN` (mmdet/models/necks/nas_fpn.py) with
//! mmcv's merging cells (mmcv/ops/merge_cells.py) and its recipe
//! (configs/nas_fpn/retinanet_r50_nasfpn_crop640-50e_coco.py: `stack_times=7`,
//! `start_level=1`, BN).
//!
//! P3-P5 are 1x1 laterals (ConvModule with the neck's norm, no activation) of the used backbone
//! levels; P6 and P7 a 1x1 ConvModule and a 2x2 max pool (floor) of the level below. Each of the
//! `stack_times` stages then rewires the five levels through the searched cells:
//! `gp(p6, p4) -> p4_1`, `sum(p4_1, p4) -> p4_2`, `sum(p4_2, p3) -> p3`, `sum(p3, p4_2) -> p4`,
//! `sum(p5, gp(p4, p3)) -> p5`, `sum(p7, gp(p5, p4_2)) -> p7`, `gp(p7, p5) -> p6`, where
//! `sum(a, b) = a + b` and `gp(a, b) = b + sigmoid(mean_hw(b)) * a`, both inputs first resized
//! to the output's size (nearest interpolation when lexicographically smaller, else zero-padded
//! max pooling, [`crate::ops::resize`]) and the result passed through the cell's `out_conv`
//! (ReLU -> 3x3 conv with bias -> norm), except for the two inner `gp`s, which have none.
//!
//! The extra levels floor, so the padded image's sides must be multiples of the coarsest
//! stride (128 for the recipe; the engine checks `data.size_divisor`). Names are
//! mmdetection's: `neck.lateral_convs.i.conv` / `.bn`, `neck.extra_downsamples.j.0.conv` (the
//! weight loader adds the `.0`), `neck.fpn_stages.s.gp_64_4.out_conv.conv` / `.bn`.

use burn::module::Module;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

use super::NeckConfig;
use crate::layers::{Activation, ConvInit, ConvModule, ConvModuleConfig};
use crate::ops::resize::{pool_to, resize_nearest};

/// A merging cell with its output conv (mmcv's `SumCell` / `GlobalPoolingCell` with
/// `with_out_conv=True`).
#[derive(Module, Debug)]
pub struct MergingCell {
    pub out_conv: ConvModule,
}

/// One NAS-FPN stage: the cells that have parameters, under mmdetection's keys (`gp_43_5` and
/// `gp_54_7` have none).
#[derive(Module, Debug)]
pub struct NasFpnStage {
    pub gp_64_4: MergingCell,
    pub sum_44_4: MergingCell,
    pub sum_43_3: MergingCell,
    pub sum_34_4: MergingCell,
    pub sum_55_5: MergingCell,
    pub sum_77_7: MergingCell,
    pub gp_75_6: MergingCell,
}

/// The NAS-FPN neck.
#[derive(Module, Debug)]
pub struct NasFpn {
    /// 1x1, one per used backbone level.
    pub lateral_convs: Vec<ConvModule>,
    /// 1x1 before each extra level's 2x2 max pool.
    pub extra_downsamples: Vec<ConvModule>,
    pub fpn_stages: Vec<NasFpnStage>,
    pub pool: MaxPool2d,
    pub start_level: usize,
}

/// mmcv's `BaseMergeCell._resize`.
fn resize(x: Tensor<4>, [h, w]: [usize; 2]) -> Tensor<4> {
    let [_, _, xh, xw] = x.dims();
    if (xh, xw) == (h, w) {
        x
    } else if (xh, xw) < (h, w) {
        resize_nearest(x, h, w)
    } else {
        pool_to(x, h, w)
    }
}

fn hw(x: &Tensor<4>) -> [usize; 2] {
    let [_, _, h, w] = x.dims();
    [h, w]
}

/// `x2 + sigmoid(global average of x2) * x1`.
fn global_pooling(x1: Tensor<4>, x2: Tensor<4>) -> Tensor<4> {
    let att = sigmoid(x2.clone().mean_dim(2).mean_dim(3));
    x2 + att * x1
}

impl MergingCell {
    fn sum(&self, x1: Tensor<4>, x2: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
        self.out_conv.forward(resize(x1, size) + resize(x2, size))
    }

    fn gp(&self, x1: Tensor<4>, x2: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
        self.out_conv
            .forward(global_pooling(resize(x1, size), resize(x2, size)))
    }
}

impl NasFpn {
    /// Builds the neck over the used inputs of `in_channels`; `cfg` is checked (five output
    /// levels). mmdetection's init: Caffe2-Xavier convs with zero biases, norms 1 and 0.
    pub(crate) fn build(cfg: &NeckConfig, in_channels: &[usize], device: &Device) -> Self {
        let c = cfg.out_channels;
        let plain = |cin: usize| {
            ConvModuleConfig::new(cin, c, 1, &cfg.norm)
                .with_init(ConvInit::Caffe2Xavier)
                .init(device)
        };
        let lateral_convs = in_channels.iter().map(|&cin| plain(cin)).collect();
        let extra_downsamples = (in_channels.len()..cfg.num_outs)
            .map(|_| plain(c))
            .collect();
        // mmcv's merge cells keep the out conv's bias with a norm (`bias=True`).
        let cell = || MergingCell {
            out_conv: ConvModuleConfig::new(c, c, 3, &cfg.norm)
                .with_bias(true)
                .with_act(Activation::ReluFirst)
                .with_init(ConvInit::Caffe2Xavier)
                .init(device),
        };
        let fpn_stages = (0..cfg.stack_times())
            .map(|_| NasFpnStage {
                gp_64_4: cell(),
                sum_44_4: cell(),
                sum_43_3: cell(),
                sum_34_4: cell(),
                sum_55_5: cell(),
                sum_77_7: cell(),
                gp_75_6: cell(),
            })
            .collect();
        Self {
            lateral_convs,
            extra_downsamples,
            fpn_stages,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            start_level: cfg.start_level,
        }
    }

    /// `inputs`: the backbone maps, finest first (the first `start_level` unused) -> P3-P7
    /// `[B, C, H_l, W_l]` (for the recipe's `start_level = 1`).
    pub fn forward(&self, inputs: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        let mut feats: Vec<Tensor<4>> = self
            .lateral_convs
            .iter()
            .zip(inputs.into_iter().skip(self.start_level))
            .map(|(conv, x)| conv.forward(x))
            .collect();
        for conv in &self.extra_downsamples {
            let last = feats[feats.len() - 1].clone();
            feats.push(self.pool.forward(conv.forward(last)));
        }
        // NeckConfig::check allows NAS-FPN exactly five levels.
        let [mut p3, mut p4, mut p5, mut p6, mut p7] = match <[Tensor<4>; 5]>::try_from(feats) {
            Ok(levels) => levels,
            Err(feats) => return feats,
        };
        for st in &self.fpn_stages {
            let p4_1 = st.gp_64_4.gp(p6.clone(), p4.clone(), hw(&p4));
            let p4_2 = st.sum_44_4.sum(p4_1, p4.clone(), hw(&p4));
            let s3 = hw(&p3);
            p3 = st.sum_43_3.sum(p4_2.clone(), p3, s3);
            p4 = st.sum_34_4.sum(p3.clone(), p4_2.clone(), hw(&p4));
            let s5 = hw(&p5);
            let p5_tmp = global_pooling(resize(p4.clone(), s5), resize(p3.clone(), s5));
            p5 = st.sum_55_5.sum(p5, p5_tmp, s5);
            let s7 = hw(&p7);
            let p7_tmp = global_pooling(resize(p5.clone(), s7), resize(p4_2, s7));
            p7 = st.sum_77_7.sum(p7, p7_tmp, s7);
            p6 = st.gp_75_6.gp(p7.clone(), p5.clone(), hw(&p6));
        }
        vec![p3, p4, p5, p6, p7]
    }
}
