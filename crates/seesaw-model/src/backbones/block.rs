//! The residual block of the ResNet family and its builder: torchvision's basic and bottleneck
//! blocks (stride on the 3x3, ResNet v1.5), ResNeXt's grouped 3x3, ResNeSt's split attention
//! with its `avd` pool, DCN in place of the 3x3, average-pool shortcuts (`avg_down`), plugins,
//! and the ResNet-v1c/d deep stem. mmdetection's mmdet/models/backbones/resnet.py,
//! resnext.py and resnest.py.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::plugins::{BlockPlugins, PluginConfig};
use super::resnest::{SplitAttentionConv2d, inter_channels};
use super::resnet::{BackboneKind, BlockKind, DcnConfig, DcnKind, ResNetConfig};
use super::resnext::bottleneck_width;
use crate::error::Result;
use crate::layers::{
    ContextBlock, ConvKind, ConvOrDcn, DeformConv2dConfig, GeneralizedAttention, Norm, conv_forward,
};
use crate::ops::deform_conv::DeformConvOptions;

impl ResNetConfig {
    /// One residual block: torchvision's (`downsample` first, then `conv1..3`, the order that
    /// keeps a seeded ResNet's initial weights as they were), ResNeXt's or ResNeSt's.
    pub(crate) fn block(
        &self,
        s: &BlockSpec,
        norm: &impl Fn(usize) -> Result<Norm>,
        device: &Device,
    ) -> Result<Block> {
        let e = expansion(s.kind);
        let cout = s.planes * e;
        let (downsample_pool, downsample_conv, downsample_bn) = if s.stride != 1 || s.cin != cout {
            let pool = (s.avg_down && s.stride > 1).then(|| {
                AvgPool2dConfig::new([s.stride, s.stride])
                    .with_strides([s.stride, s.stride])
                    .with_ceil_mode(true)
                    .with_count_include_pad(false)
                    .init()
            });
            let conv_stride = if s.avg_down { 1 } else { s.stride };
            (
                pool,
                Some(conv(s.cin, cout, 1, conv_stride, device)),
                Some(norm(cout)?),
            )
        } else {
            (None, None, None)
        };
        let conv3x3 = |cin: usize, cout: usize, stride: usize, groups: usize| match s.dcn {
            None => ConvOrDcn::Conv(grouped_conv(cin, cout, 3, stride, groups, device)),
            Some(d) => {
                let mut c = DeformConv2dConfig::new(cin, cout, 3);
                c.modulated = d.kind == DcnKind::Dcnv2;
                c.options = DeformConvOptions {
                    stride: [stride; 2],
                    padding: [1, 1],
                    dilation: [1, 1],
                    groups,
                    deform_groups: d.deform_groups,
                };
                ConvOrDcn::Dcn(c.init(device))
            }
        };
        let (conv1, bn1, conv2, bn2, avd, conv3, bn3) = match (s.kind, self.kind) {
            (BlockKind::Basic, _) => {
                let conv1 = conv(s.cin, s.planes, 3, s.stride, device);
                let bn1 = norm(s.planes)?;
                let conv2 = Conv2Layer::Conv(conv3x3(s.planes, s.planes, 1, 1));
                (conv1, bn1, conv2, Some(norm(s.planes)?), None, None, None)
            }
            (BlockKind::Bottleneck, kind) => {
                let width =
                    bottleneck_width(s.planes, self.groups, self.base_width, self.base_channels);
                // caffe style: the stride on the first 1x1 instead of the 3x3.
                let caffe = self.style == super::resnet::ResNetStyle::Caffe;
                let (stride1, stride3) = if caffe { (s.stride, 1) } else { (1, s.stride) };
                let conv1 = conv(s.cin, width, 1, stride1, device);
                let bn1 = norm(width)?;
                let (conv2, bn2, avd) = if kind == BackboneKind::Resnest {
                    let avd = self.avg_down_stride && s.stride > 1;
                    let r = self.radix;
                    let stride = if avd { 1 } else { s.stride };
                    let inner = conv3x3(width, width * r, stride, self.groups * r);
                    let inter = inter_channels(width, r, self.reduction_factor);
                    let (bn0, bn1) = (norm(width * r)?, norm(inter)?);
                    let mut sa = SplitAttentionConv2d::new(
                        inner,
                        bn0,
                        bn1,
                        width,
                        inter,
                        r,
                        self.groups,
                        device,
                    );
                    sa.ws = self.conv == ConvKind::Ws;
                    let pool = avd.then(|| {
                        AvgPool2dConfig::new([3, 3])
                            .with_strides([s.stride, s.stride])
                            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                            .with_count_include_pad(true)
                            .init()
                    });
                    (Conv2Layer::SplitAttention(sa), None, pool)
                } else {
                    let c = conv3x3(width, width, stride3, self.groups);
                    (Conv2Layer::Conv(c), Some(norm(width)?), None)
                };
                let conv3 = conv(width, cout, 1, 1, device);
                (conv1, bn1, conv2, bn2, avd, Some(conv3), Some(norm(cout)?))
            }
        };
        // mmdetection builds plugins after the convolutions, over the channels where they sit.
        // The widths come from the settings, not from `conv1.weight`: reading a parameter
        // materialises burn's lazy initialisation, which would move its draw from the seeded
        // generator and change every seeded network.
        let conv1_out = match s.kind {
            BlockKind::Basic => s.planes,
            BlockKind::Bottleneck => {
                bottleneck_width(s.planes, self.groups, self.base_width, self.base_channels)
            }
        };
        let plugins = BlockPlugins::build(&s.plugins, conv1_out, cout, device)?;
        Ok(Block {
            conv1,
            bn1,
            conv2,
            bn2,
            avd,
            conv3,
            bn3,
            downsample_pool,
            downsample_conv,
            downsample_bn,
            context_block: plugins.context_block,
            context_block_after: plugins.context_block_after,
            gen_attention_block: plugins.gen_attention_block,
            gen_attention_block_after: plugins.gen_attention_block_after,
            ws: self.conv == ConvKind::Ws,
        })
    }
}

/// What one block is built from.
pub(crate) struct BlockSpec<'a> {
    pub kind: BlockKind,
    pub cin: usize,
    pub planes: usize,
    pub stride: usize,
    pub avg_down: bool,
    pub dcn: Option<&'a DcnConfig>,
    pub plugins: Vec<&'a PluginConfig>,
}

pub(crate) fn expansion(block: BlockKind) -> usize {
    if block == BlockKind::Bottleneck { 4 } else { 1 }
}

pub(crate) fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    grouped_conv(cin, cout, k, stride, 1, device)
}

fn grouped_conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .with_groups(groups)
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: 2f64.sqrt(),
            fan_out_only: true,
        })
        .init(device)
}

/// The 3x3 convolution of a block: plain or deformable (ResNet, ResNeXt) or split attention
/// (ResNeSt). Parameter names stay mmdetection's (`conv2.weight`, `conv2.conv_offset.*`,
/// `conv2.conv.*`, `conv2.fc1.*`, ...).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Conv2Layer {
    Conv(ConvOrDcn),
    SplitAttention(SplitAttentionConv2d),
}

/// A basic, bottleneck or split-attention residual block (torchvision names: `conv1..3`,
/// `bn1..3`, `downsample` = [average pool,] 1x1 conv + BN).
#[derive(Module, Debug)]
pub struct Block {
    pub conv1: Conv2d,
    pub bn1: Norm,
    pub conv2: Conv2Layer,
    /// None for split attention, which norms inside.
    pub bn2: Option<Norm>,
    /// ResNeSt's `avd_layer`: 3x3 average pool with the block's stride after the 3x3.
    pub avd: Option<AvgPool2d>,
    pub conv3: Option<Conv2d>,
    pub bn3: Option<Norm>,
    /// `AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)` (`avg_down`).
    pub downsample_pool: Option<AvgPool2d>,
    pub downsample_conv: Option<Conv2d>,
    pub downsample_bn: Option<Norm>,
    /// GCNet's plugin (mmdetection's name `context_block`).
    pub context_block: Option<ContextBlock>,
    /// After which conv (1, 2, 3) the context block runs; 0 without one.
    pub context_block_after: usize,
    /// The empirical attention study's plugin (mmdetection's name `gen_attention_block`).
    pub gen_attention_block: Option<GeneralizedAttention>,
    /// After which conv (1, 2, 3) the attention runs; 0 without one.
    pub gen_attention_block_after: usize,
    /// Weight-standardised convolutions (mmcv's `ConvWS`).
    pub ws: bool,
}

impl Block {
    /// The plugin at position `after` (one per position), if any.
    fn plugin(&self, after: usize, y: Tensor<4>) -> Tensor<4> {
        match (&self.context_block, &self.gen_attention_block) {
            (Some(cb), _) if self.context_block_after == after => cb.forward(y),
            (_, Some(ga)) if self.gen_attention_block_after == after => ga.forward(y),
            _ => y,
        }
    }

    /// `[B, C_in, H, W]` -> `[B, C_out, H / stride, W / stride]` (rounded up).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let ws = self.ws;
        let y = relu(self.bn1.forward(conv_forward(&self.conv1, x.clone(), ws)));
        let y = self.plugin(1, y);
        let mut y = match &self.conv2 {
            Conv2Layer::Conv(c) => c.forward_ws(y, ws),
            Conv2Layer::SplitAttention(sa) => sa.forward(y),
        };
        if let Some(bn2) = &self.bn2 {
            y = bn2.forward(y);
        }
        if let Some(avd) = &self.avd {
            y = avd.forward(y);
        }
        if let (Some(c3), Some(b3)) = (&self.conv3, &self.bn3) {
            // After a plain 3x3 the ReLU is the block's; split attention ends in its own.
            if self.bn2.is_some() {
                y = relu(y);
            }
            y = self.plugin(2, y);
            y = self.plugin(3, b3.forward(conv_forward(c3, y, ws)));
        }
        let identity = match (&self.downsample_conv, &self.downsample_bn) {
            (Some(c), Some(b)) => {
                let x = match &self.downsample_pool {
                    Some(p) => p.forward(x),
                    None => x,
                };
                b.forward(conv_forward(c, x, ws))
            }
            _ => x,
        };
        relu(y + identity)
    }
}

/// ResNet-v1c/d's deep stem: `convs[i]` then `norms[i]` and ReLU, three times (mmdetection's
/// `stem.0/1, 3/4, 6/7`; timm's `conv1.0/1, 3/4, 6` and `bn1`).
#[derive(Module, Debug)]
pub struct DeepStem {
    pub convs: Vec<Conv2d>,
    pub norms: Vec<Norm>,
    /// Weight-standardised convolutions.
    pub ws: bool,
}
