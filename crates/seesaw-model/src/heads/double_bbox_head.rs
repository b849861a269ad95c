//! Double-Head R-CNN's box head (Wu et al., "Rethinking Classification and Localization for
//! Object Detection", CVPR 2020), as mmdetection's `DoubleConvFCBBoxHead`
//! (mmdet/models/roi_heads/bbox_heads/double_bbox_head.py) and `DoubleHeadRoIHead`
//! (mmdet/models/roi_heads/double_roi_head.py) build it: classification from fully connected
//! layers on the RoI's 7x7 features, box regression from a convolution branch on the features of
//! the RoI enlarged 1.3x about its centre (`reg_roi_scale_factor`).
//!
//! The conv branch: mmdetection's `BasicResBlock` (`res_block`: a 3x3 ConvModule with BN and
//! ReLU, then a 1x1 ConvModule with BN to `conv_out_channels`, plus a 1x1 ConvModule with BN on
//! the identity; ReLU after the sum), `num_convs` ResNet bottlenecks at that width
//! (`conv_branch.k.conv1..3` / `bn1..3`, planes a quarter of the width, identity shortcut), a
//! 7x7 average pool and `fc_reg`. The fully connected branch is the box head's own `fc1`/`fc2`
//! (mmdetection's `fc_branch.0`/`.1`, ReLU after each) feeding `fc_cls`. This file holds the
//! conv branch; [`super::BBoxHead`] carries it and picks the branches.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::layers::{Activation, ConvInit, ConvModule, ConvModuleConfig, Norm, NormConfig};

/// mmdetection's `BasicResBlock`.
#[derive(Module, Debug)]
pub struct BasicResBlock {
    /// 3x3, `C_in -> C_in`, BN, ReLU.
    pub conv1: ConvModule,
    /// 1x1, `C_in -> C_out`, BN.
    pub conv2: ConvModule,
    /// 1x1, `C_in -> C_out`, BN.
    pub conv_identity: ConvModule,
}

impl BasicResBlock {
    /// `[R, C_in, 7, 7]` -> `[R, C_out, 7, 7]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = self.conv_identity.forward(x.clone());
        relu(self.conv2.forward(self.conv1.forward(x)) + identity)
    }
}

/// A ResNet bottleneck with an identity shortcut (mmdetection's `Bottleneck` with stride 1 and
/// no downsample), as the Double Head's conv branch uses it.
#[derive(Module, Debug)]
pub struct Bottleneck {
    pub conv1: Conv2d,
    pub bn1: Norm,
    pub conv2: Conv2d,
    pub bn2: Norm,
    pub conv3: Conv2d,
    pub bn3: Norm,
}

impl Bottleneck {
    /// `[R, C, H, W]` -> the same.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = relu(self.bn2.forward(self.conv2.forward(out)));
        relu(self.bn3.forward(self.conv3.forward(out)) + x)
    }
}

/// The regression branch of the Double Head.
#[derive(Module, Debug)]
pub struct DoubleConvBranch {
    pub res_block: BasicResBlock,
    pub conv_branch: Vec<Bottleneck>,
}

impl DoubleConvBranch {
    /// Builds the branch from `in_channels` to `conv_out_channels` (a multiple of 4) with
    /// `num_convs` bottlenecks; `norm` is the bottlenecks' norm (mmdetection's `norm_cfg`, BN by
    /// default), while `res_block` always has BN, as mmdetection builds it. Init as
    /// mmdetection leaves it: Kaiming-normal (fan out) in `res_block`, PyTorch's default in the
    /// bottlenecks, norms 1 and 0.
    pub fn new(
        in_channels: usize,
        conv_out_channels: usize,
        num_convs: usize,
        norm: &NormConfig,
        device: &Device,
    ) -> Self {
        let bn = NormConfig::bn();
        let module = |cin: usize, cout: usize, k: usize, act: Activation| {
            ConvModuleConfig::new(cin, cout, k, &bn)
                .with_act(act)
                .with_init(ConvInit::KaimingNormalFanOut)
                .init(device)
        };
        let res_block = BasicResBlock {
            conv1: module(in_channels, in_channels, 3, Activation::ReluLast),
            conv2: module(in_channels, conv_out_channels, 1, Activation::None),
            conv_identity: module(in_channels, conv_out_channels, 1, Activation::None),
        };
        let (c, planes) = (conv_out_channels, conv_out_channels / 4);
        // The bottlenecks' norm: the head's, BN unless it names another (no norm is not an
        // option mmdetection offers here).
        let norm = if norm.kind == crate::layers::NormKind::None {
            bn.clone()
        } else {
            norm.clone()
        };
        let conv = |cin: usize, cout: usize, k: usize| {
            Conv2dConfig::new([cin, cout], [k, k])
                .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                .with_bias(false)
                .init(device)
        };
        let norm_of = |ch: usize| norm.init(ch, false, device);
        let conv_branch = (0..num_convs)
            .filter_map(|_| {
                Some(Bottleneck {
                    conv1: conv(c, planes, 1),
                    bn1: norm_of(planes)?,
                    conv2: conv(planes, planes, 3),
                    bn2: norm_of(planes)?,
                    conv3: conv(planes, c, 1),
                    bn3: norm_of(c)?,
                })
            })
            .collect();
        Self {
            res_block,
            conv_branch,
        }
    }

    /// `[R, C_in, 7, 7]` (the enlarged RoIs' features) -> `[R, conv_out_channels]`, averaged
    /// over the 7x7 positions.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = self.res_block.forward(x);
        for b in &self.conv_branch {
            x = b.forward(x);
        }
        let [r, c, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([r, c])
    }
}
