//! ResNet in torchvision's layout (`conv1`/`bn1`, `layer1..4` of basic or bottleneck blocks,
//! stride on the 3x3 conv as in ResNet v1.5), with mmdetection's `frozen_stages` and
//! `norm_eval`, plus a small stem for the CPU demo.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Residual block kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// Two 3x3 convs (ResNet-18/34), expansion 1.
    Basic,
    /// 1x1, 3x3, 1x1 convs (ResNet-50/101), expansion 4.
    Bottleneck,
}

/// Stem kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StemKind {
    /// 7x7 stride-2 conv and 3x3 stride-2 max pool (torchvision); stage 1 keeps the stride.
    Torchvision,
    /// One 3x3 stride-2 conv; stage 1 halves again (the demo's small network).
    Small,
}

/// Settings of [`ResNet`]. Defaults are ResNet-50 as mmdetection's detectors use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResNetConfig {
    /// 18, 34, 50 or 101 picks `block` and `layers`; 0 uses them as given. Default 50.
    pub depth: usize,
    pub block: BlockKind,
    /// Blocks per stage. Default `[3, 4, 6, 3]`.
    pub layers: [usize; 4],
    /// Channels of the stem and of stage 1's 3x3 convs. Default 64.
    pub base_width: usize,
    pub stem: StemKind,
    /// Stages whose parameters are frozen: 0 none, 1 the stem and stage 1 (mmdetection's
    /// default), up to 4. Default 1.
    pub frozen_stages: usize,
    /// Batch-norm layers use their running statistics in training too. Default true.
    pub norm_eval: bool,
    /// Pretrained weights loaded into the backbone when training starts afresh: a torchvision
    /// ResNet checkpoint (`.pth` or `.safetensors`) or an mmdetection one (its `backbone.*`).
    /// Default "" (random initialisation).
    pub init: String,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self {
            depth: 50,
            block: BlockKind::Bottleneck,
            layers: [3, 4, 6, 3],
            base_width: 64,
            stem: StemKind::Torchvision,
            frozen_stages: 1,
            norm_eval: true,
            init: String::new(),
        }
    }
}

impl ResNetConfig {
    /// Block and layers after `depth` is applied.
    pub fn resolved(&self) -> Result<(BlockKind, [usize; 4])> {
        Ok(match self.depth {
            0 => (self.block, self.layers),
            18 => (BlockKind::Basic, [2, 2, 2, 2]),
            34 => (BlockKind::Basic, [3, 4, 6, 3]),
            50 => (BlockKind::Bottleneck, [3, 4, 6, 3]),
            101 => (BlockKind::Bottleneck, [3, 4, 23, 3]),
            d => {
                return Err(ModelError::Input(format!(
                    "backbone.depth must be 0, 18, 34, 50 or 101 (got {d})"
                )));
            }
        })
    }

    /// Output channels of the four stages.
    pub fn out_channels(&self) -> Result<[usize; 4]> {
        let (block, _) = self.resolved()?;
        let e = if block == BlockKind::Bottleneck { 4 } else { 1 };
        Ok(std::array::from_fn(|i| (self.base_width * e) << i))
    }

    /// Builds the network (He-normal convs, BN weight 1 and bias 0).
    pub fn init(&self, device: &Device) -> Result<ResNet> {
        let (block, layers) = self.resolved()?;
        if self.base_width == 0 || layers.contains(&0) || self.frozen_stages > 4 {
            return Err(ModelError::Input(
                "backbone: base_width and layers must be positive, frozen_stages at most 4".into(),
            ));
        }
        let w = self.base_width;
        let (conv1, pool) = match self.stem {
            StemKind::Torchvision => (
                conv(3, w, 7, 2, device),
                Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            ),
            StemKind::Small => (conv(3, w, 3, 2, device), None),
        };
        let bn1 = BatchNormConfig::new(w).init(device);
        let e = if block == BlockKind::Bottleneck { 4 } else { 1 };
        let mut cin = w;
        let mut stages = Vec::new();
        for (i, &n) in layers.iter().enumerate() {
            let width = w << i;
            let first_stride = if i == 0 && self.stem == StemKind::Torchvision {
                1
            } else {
                2
            };
            let blocks = (0..n)
                .map(|b| {
                    let stride = if b == 0 { first_stride } else { 1 };
                    let blk = Block::new(block, cin, width, e, stride, device);
                    cin = width * e;
                    blk
                })
                .collect();
            stages.push(blocks);
        }
        let [layer1, layer2, layer3, layer4]: [Vec<Block>; 4] = stages
            .try_into()
            .map_err(|_| ModelError::Input("four stages".into()))?;
        let mut net = ResNet {
            conv1,
            bn1,
            maxpool: pool,
            layer1,
            layer2,
            layer3,
            layer4,
            frozen_stages: self.frozen_stages,
        };
        if self.norm_eval {
            net = net.map_norms(|bn| {
                let mut bn = bn;
                bn.training = Param::from_bool(false);
                bn
            });
        }
        Ok(net.freeze_stages())
    }
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: 2f64.sqrt(),
            fan_out_only: true,
        })
        .init(device)
}

/// A basic or bottleneck residual block (torchvision names: `conv1..3`, `bn1..3`,
/// `downsample` = 1x1 conv + BN).
#[derive(Module, Debug)]
pub struct Block {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub conv3: Option<Conv2d>,
    pub bn3: Option<BatchNorm>,
    pub downsample_conv: Option<Conv2d>,
    pub downsample_bn: Option<BatchNorm>,
}

impl Block {
    fn new(
        kind: BlockKind,
        cin: usize,
        width: usize,
        expansion: usize,
        stride: usize,
        device: &Device,
    ) -> Self {
        let cout = width * expansion;
        let (downsample_conv, downsample_bn) = if stride != 1 || cin != cout {
            (
                Some(conv(cin, cout, 1, stride, device)),
                Some(BatchNormConfig::new(cout).init(device)),
            )
        } else {
            (None, None)
        };
        match kind {
            BlockKind::Basic => Block {
                conv1: conv(cin, width, 3, stride, device),
                bn1: BatchNormConfig::new(width).init(device),
                conv2: conv(width, width, 3, 1, device),
                bn2: BatchNormConfig::new(width).init(device),
                conv3: None,
                bn3: None,
                downsample_conv,
                downsample_bn,
            },
            BlockKind::Bottleneck => Block {
                conv1: conv(cin, width, 1, 1, device),
                bn1: BatchNormConfig::new(width).init(device),
                conv2: conv(width, width, 3, stride, device),
                bn2: BatchNormConfig::new(width).init(device),
                conv3: Some(conv(width, cout, 1, 1, device)),
                bn3: Some(BatchNormConfig::new(cout).init(device)),
                downsample_conv,
                downsample_bn,
            },
        }
    }

    /// `[B, C_in, H, W]` -> `[B, C_out, H / stride, W / stride]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let mut y = self.bn2.forward(self.conv2.forward(y));
        if let (Some(c3), Some(b3)) = (&self.conv3, &self.bn3) {
            y = b3.forward(c3.forward(relu(y)));
        }
        let identity = match (&self.downsample_conv, &self.downsample_bn) {
            (Some(c), Some(b)) => b.forward(c.forward(x)),
            _ => x,
        };
        relu(y + identity)
    }

    fn map_norms(self, f: &impl Fn(BatchNorm) -> BatchNorm) -> Self {
        Block {
            bn1: f(self.bn1),
            bn2: f(self.bn2),
            bn3: self.bn3.map(f),
            downsample_bn: self.downsample_bn.map(f),
            ..self
        }
    }
}

/// ResNet body returning the outputs of its four stages.
#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub maxpool: Option<MaxPool2d>,
    pub layer1: Vec<Block>,
    pub layer2: Vec<Block>,
    pub layer3: Vec<Block>,
    pub layer4: Vec<Block>,
    pub frozen_stages: usize,
}

impl ResNet {
    /// `images` `[B, 3, H, W]` -> four maps `[B, C_i, H / s_i, W / s_i]`, `s_i` = 4, 8, 16, 32.
    pub fn forward(&self, images: Tensor<4>) -> Vec<Tensor<4>> {
        let mut x = relu(self.bn1.forward(self.conv1.forward(images)));
        if let Some(p) = &self.maxpool {
            x = p.forward(x);
        }
        let mut outs = Vec::with_capacity(4);
        for (i, stage) in [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .enumerate()
        {
            for b in stage {
                x = b.forward(x);
            }
            // Frozen stages need no gradient: cut the graph where they end.
            if i + 1 == self.frozen_stages {
                x = x.detach();
            }
            outs.push(x.clone());
        }
        outs
    }

    fn map_norms(self, f: impl Fn(BatchNorm) -> BatchNorm) -> Self {
        let stage = |s: Vec<Block>| s.into_iter().map(|b| b.map_norms(&f)).collect();
        ResNet {
            bn1: f(self.bn1),
            layer1: stage(self.layer1),
            layer2: stage(self.layer2),
            layer3: stage(self.layer3),
            layer4: stage(self.layer4),
            ..self
        }
    }

    fn freeze_stages(self) -> Self {
        let n = self.frozen_stages;
        if n == 0 {
            return self;
        }
        let freeze = |s: Vec<Block>, i: usize| -> Vec<Block> {
            if i <= n {
                s.into_iter().map(|b| b.freeze()).collect()
            } else {
                s
            }
        };
        ResNet {
            conv1: self.conv1.freeze(),
            bn1: self.bn1.freeze(),
            layer1: freeze(self.layer1, 1),
            layer2: freeze(self.layer2, 2),
            layer3: freeze(self.layer3, 3),
            layer4: freeze(self.layer4, 4),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_shapes_of_r50_r18_and_small() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([1, 3, 64, 96], &device);
        for (cfg, chans) in [
            (ResNetConfig::default(), [256, 512, 1024, 2048]),
            (
                ResNetConfig {
                    depth: 18,
                    ..Default::default()
                },
                [64, 128, 256, 512],
            ),
            (
                ResNetConfig {
                    depth: 0,
                    block: BlockKind::Basic,
                    layers: [1, 1, 1, 1],
                    base_width: 8,
                    stem: StemKind::Small,
                    frozen_stages: 0,
                    norm_eval: false,
                    init: String::new(),
                },
                [8, 16, 32, 64],
            ),
        ] {
            let net = cfg.init(&device).expect("config");
            let outs = net.forward(x.clone());
            for (i, o) in outs.iter().enumerate() {
                assert_eq!(o.dims(), [1, chans[i], 16 >> i, 24 >> i], "stage {i}");
            }
        }
        assert!(
            ResNetConfig {
                depth: 42,
                ..Default::default()
            }
            .init(&device)
            .is_err()
        );
    }
}
