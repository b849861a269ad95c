//! ResNeSt's split-attention convolution (Zhang et al., "ResNeSt: Split-Attention Networks",
//! 2020), as mmdetection's `SplitAttentionConv2d` (mmdet/models/backbones/resnest.py) and
//! timm's `SplitAttn` (timm/models/layers/split_attn.py) compute it; the rest of a ResNeSt
//! (deep stem, average-pool downsampling, the `avd` pool after the 3x3) lives in
//! [`super::resnet`], as mmdetection's `ResNeSt` is a `ResNetV1d` with this block.
//!
//! The 3x3 convolution gives `radix` splits of the block's width; their sum is pooled to one
//! vector per image, squeezed (`fc1`, its norm, ReLU) and expanded (`fc2`) to `radix` logits per
//! channel, a softmax across the splits (a sigmoid when `radix` is 1) weighs them, and the
//! weighted splits are summed.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::{Device, Tensor};

use crate::layers::{ConvOrDcn, Norm};

/// Channels of the attention's squeeze: `max(in_channels * radix / reduction_factor, 32)`
/// (mmdetection; timm's `make_divisible(in * radix / 4, 8, min 32)` agrees for ResNeSt's widths).
pub fn inter_channels(in_channels: usize, radix: usize, reduction_factor: usize) -> usize {
    (in_channels * radix / reduction_factor.max(1)).max(32)
}

/// Split attention over a (possibly deformable) grouped 3x3 convolution. Names are
/// mmdetection's and timm's: `conv`, `bn0`, `fc1`, `bn1`, `fc2`.
#[derive(Module, Debug)]
pub struct SplitAttentionConv2d {
    /// `[C_in]` -> `[channels * radix]`, `groups * radix` groups.
    pub conv: ConvOrDcn,
    pub bn0: Norm,
    /// `[channels]` -> `[inter_channels]` (1x1, `groups` groups, with bias).
    pub fc1: Conv2d,
    pub bn1: Norm,
    /// `[inter_channels]` -> `[channels * radix]` (1x1, `groups` groups, with bias).
    pub fc2: Conv2d,
    pub radix: usize,
    pub groups: usize,
    /// The split convolution is weight-standardised (mmcv's `ConvWS`; `fc1`/`fc2` never are).
    pub ws: bool,
}

impl SplitAttentionConv2d {
    /// Assembles the block from its convolution (built by the caller, plain or deformable) and
    /// its norms `bn0` (over `channels * radix`) and `bn1` (over `inter`); `channels` is the
    /// output width, `inter` [`inter_channels`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        conv: ConvOrDcn,
        bn0: Norm,
        bn1: Norm,
        channels: usize,
        inter: usize,
        radix: usize,
        groups: usize,
        device: &Device,
    ) -> Self {
        // PyTorch's default Conv2d initialisation (mmdetection leaves fc1/fc2 to it).
        let fc = |cin: usize, cout: usize| {
            Conv2dConfig::new([cin, cout], [1, 1])
                .with_groups(groups)
                .with_bias(true)
                .init(device)
        };
        SplitAttentionConv2d {
            conv,
            bn0,
            fc1: fc(channels, inter),
            bn1,
            fc2: fc(inter, channels * radix),
            radix,
            groups,
            ws: false,
        }
    }

    /// `[B, C_in, H, W]` -> `[B, channels, H_out, W_out]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.bn0.forward(self.conv.forward_ws(x, self.ws)));
        let [b, rc, h, w] = x.dims();
        let r = self.radix.max(1);
        let c = rc / r;
        let splits = x.reshape([b, r, c, h, w]);
        let gap = splits
            .clone()
            .sum_dim(1)
            .reshape([b, c, h * w])
            .mean_dim(2)
            .reshape([b, c, 1, 1]);
        let gap = relu(self.bn1.forward(self.fc1.forward(gap)));
        let logits = self.fc2.forward(gap).reshape([b, rc]);
        let atten = if r > 1 {
            // mmdetection's RSoftmax: logits laid out (group, radix, channel in group), the
            // softmax across radix, the result laid out (radix, group, channel in group).
            let g = self.groups.max(1);
            let probs = softmax(logits.reshape([b, g, r, rc / (g * r)]).swap_dims(1, 2), 1);
            probs.reshape([b, r, c, 1, 1])
        } else {
            sigmoid(logits).reshape([b, 1, c, 1, 1])
        };
        (splits * atten).sum_dim(1).reshape([b, c, h, w])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::NormConfig;
    use burn::tensor::Distribution;

    /// Shapes and widths; the values are checked against timm in tests/backbones.rs.
    #[test]
    fn widths_and_shapes_for_radix_two_and_one() {
        let device = Device::flex();
        let bn = |c: usize| match NormConfig::bn().init(c, false, &device) {
            Some(n) => n,
            None => unreachable!("bn gives a norm"),
        };
        assert_eq!(inter_channels(64, 2, 4), 32);
        assert_eq!(inter_channels(256, 2, 4), 128);
        for (radix, groups) in [(2, 2), (1, 1)] {
            let conv = Conv2dConfig::new([4, 8 * radix], [3, 3])
                .with_groups(groups * radix)
                .with_padding(burn::nn::PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(&device);
            let sa = SplitAttentionConv2d::new(
                ConvOrDcn::Conv(conv),
                bn(8 * radix),
                bn(inter_channels(8, radix, 4)),
                8,
                inter_channels(8, radix, 4),
                radix,
                groups,
                &device,
            );
            assert_eq!(sa.fc1.weight.dims(), [32, 8 / groups, 1, 1]);
            assert_eq!(sa.fc2.weight.dims(), [8 * radix, 32 / groups, 1, 1]);
            let x = Tensor::<4>::random([2, 4, 5, 6], Distribution::Default, &device);
            assert_eq!(sa.forward(x).dims(), [2, 8, 5, 6]);
        }
    }
}
