//! GCNet's global context block (Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation
//! Networks and Beyond", ICCVW 2019), as mmcv's `ContextBlock` (mmcv/cnn/bricks/
//! context_block.py) with its defaults `pooling_type='att'`, `fusion_types=('channel_add',)`:
//! a 1x1 conv scores every position, a softmax over the map turns the scores into weights,
//! the weighted sum of the features is one context vector per image, which a bottleneck
//! transform (1x1 conv, LayerNorm over `[planes, 1, 1]`, ReLU, 1x1 conv) maps back and adds to
//! every position. mmdetection places it in ResNet bottlenecks as a backbone plugin
//! (`plugins=[dict(cfg=dict(type='ContextBlock', ratio=1/4), stages=(False, True, True, True),
//! position='after_conv3')]`, configs/gcnet/).

use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Device, Tensor};

/// LayerNorm over a `[C, 1, 1]` context, with PyTorch's `nn.LayerNorm([C, 1, 1])` parameter
/// shapes (`weight`, `bias` `[C, 1, 1]`) so checkpoints load as they are.
#[derive(Module, Debug)]
pub struct ContextLayerNorm {
    /// `[C, 1, 1]`.
    pub weight: Param<Tensor<3>>,
    /// `[C, 1, 1]`.
    pub bias: Param<Tensor<3>>,
    pub eps: f64,
}

impl ContextLayerNorm {
    fn new(channels: usize, device: &Device) -> Self {
        Self {
            weight: Initializer::Ones.init([channels, 1, 1], device),
            bias: Initializer::Zeros.init([channels, 1, 1], device),
            eps: 1e-5,
        }
    }

    /// `[B, C, 1, 1]` -> the same, normalised over C (population variance).
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, _, _] = x.dims();
        let flat = x.reshape([b, c]);
        let mean = flat.clone().mean_dim(1);
        let centred = flat - mean;
        let var = centred.clone().square().mean_dim(1);
        let normed = (centred / var.add_scalar(self.eps).sqrt()).reshape([b, c, 1, 1]);
        normed * self.weight.val().unsqueeze::<4>() + self.bias.val().unsqueeze::<4>()
    }
}

/// The global context block; mmcv's parameter names: `conv_mask`, `channel_add_conv.0`
/// (squeeze), `.1` (LayerNorm), `.3` (expand; `.2` is the ReLU).
#[derive(Module, Debug)]
pub struct ContextBlock {
    /// `[C]` -> `[1]`, with bias.
    pub conv_mask: Conv2d,
    /// `[C]` -> `[planes]`, with bias.
    pub add_squeeze: Conv2d,
    pub add_norm: ContextLayerNorm,
    /// `[planes]` -> `[C]`, with bias, zero-initialised so the block starts as the identity.
    pub add_expand: Conv2d,
}

impl ContextBlock {
    /// A block over `channels` channels with `planes = floor(channels * ratio)` in its
    /// transform (mmcv: `int(in_channels * ratio)`).
    pub fn new(channels: usize, ratio: f64, device: &Device) -> Self {
        let planes = ((channels as f64 * ratio) as usize).max(1);
        let conv = |cin: usize, cout: usize, init: Initializer| {
            Conv2dConfig::new([cin, cout], [1, 1])
                .with_bias(true)
                .with_initializer(init)
                .init(device)
        };
        // mmcv: kaiming (fan in) for conv_mask, PyTorch's default for the squeeze, zeros for
        // the expansion (`last_zero_init`).
        let kaiming_in = Initializer::KaimingNormal {
            gain: 2f64.sqrt(),
            fan_out_only: false,
        };
        let mut conv_mask = conv(channels, 1, kaiming_in);
        conv_mask.bias = Some(Initializer::Zeros.init([1], device));
        ContextBlock {
            conv_mask,
            add_squeeze: Conv2dConfig::new([channels, planes], [1, 1]).init(device),
            add_norm: ContextLayerNorm::new(planes, device),
            add_expand: conv(planes, channels, Initializer::Zeros),
        }
    }

    /// `[B, C, H, W]` -> the same: `x` plus the transformed context at every position.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let weights = softmax(self.conv_mask.forward(x.clone()).reshape([b, 1, h * w]), 2);
        // [B, C, HW] x [B, HW, 1] -> [B, C, 1].
        let context = x
            .clone()
            .reshape([b, c, h * w])
            .matmul(weights.swap_dims(1, 2))
            .reshape([b, c, 1, 1]);
        let t = self.add_squeeze.forward(context);
        let t = self.add_expand.forward(relu(self.add_norm.forward(t)));
        x + t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn starts_as_the_identity_and_adds_one_vector_per_image() {
        let device = Device::flex();
        let mut block = ContextBlock::new(16, 0.25, &device);
        assert_eq!(block.add_squeeze.weight.dims(), [4, 16, 1, 1]);
        let x = Tensor::<4>::random([2, 16, 5, 7], Distribution::Default, &device);
        let same = block.forward(x.clone()) - x.clone();
        assert_eq!(same.abs().max().into_scalar::<f32>(), 0.0);
        // With a non-zero expansion, the same vector is added at every position.
        block.add_expand.weight = Initializer::Ones.init([16, 4, 1, 1], &device);
        let d = block.forward(x.clone()) - x;
        let first = d.clone().narrow(2, 0, 1).narrow(3, 0, 1);
        let spread: f32 = (d - first).abs().max().into_scalar();
        assert!(spread < 1e-5, "{spread}");
    }
}
