//! The ResNet family as mmdetection builds it (mmdet/models/backbones/resnet.py, resnext.py,
//! resnest.py): torchvision's layout (`conv1`/`bn1`, `layer1..4` of basic or bottleneck blocks,
//! stride on the 3x3 conv as in ResNet v1.5), ResNet-v1d's deep stem and average-pool
//! downsampling, ResNeXt's grouped 3x3 ([`super::resnext`]), ResNeSt's split attention
//! ([`super::resnest`]) and DCNv2 in chosen stages, with mmdetection's `frozen_stages` and
//! `norm_eval`, plus a small stem for the CPU demo. The block and its builder are in
//! [`super::block`], the plugins in [`super::plugins`].

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::block::{Block, BlockSpec, DeepStem, conv, expansion};
use super::plugins::PluginConfig;
use crate::error::{ModelError, Result};
use crate::layers::{ConvKind, Norm, NormConfig, NormKind, conv_forward};

/// Where a strided bottleneck puts its stride (mmdetection's `ResNet(style=...)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResNetStyle {
    /// On the 3x3 conv (ResNet v1.5).
    #[default]
    Pytorch,
    /// On the first 1x1 conv (detectron2's `STRIDE_IN_1X1`).
    Caffe,
}

/// Residual block kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// Two 3x3 convs (ResNet-18/34), expansion 1.
    Basic,
    /// 1x1, 3x3, 1x1 convs (ResNet-50 and deeper), expansion 4.
    Bottleneck,
}

/// Stem kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StemKind {
    /// 7x7 stride-2 conv and 3x3 stride-2 max pool (torchvision); stage 1 keeps the stride.
    Torchvision,
    /// ResNet-v1c/d's deep stem (mmdetection's `deep_stem=True`): three 3x3 convs (stride 2,
    /// 1, 1; `stem_channels / 2`, `/ 2`, `stem_channels`), each with norm and ReLU, then the
    /// max pool.
    Deep,
    /// One 3x3 stride-2 conv; stage 1 halves again (the demo's small network).
    Small,
}

/// Which member of the family (mmdetection's backbone `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackboneKind {
    /// `ResNet`.
    #[default]
    #[serde(alias = "ResNet")]
    Resnet,
    /// `ResNetV1d`: deep stem and average-pool downsampling.
    #[serde(alias = "ResNetV1d")]
    Resnetv1d,
    /// `ResNeXt`: grouped 3x3 convolutions (`groups`, `base_width`).
    #[serde(alias = "ResNeXt")]
    Resnext,
    /// `ResNeSt`: a ResNetV1d with split-attention blocks (`radix`, `reduction_factor`,
    /// `avg_down_stride`, and `groups` / `base_width` as ResNeXt's).
    #[serde(alias = "ResNeSt")]
    Resnest,
}

impl BackboneKind {
    /// mmdetection's spelling: `ResNet`, `ResNetV1d`, `ResNeXt`, `ResNeSt`.
    pub fn name(self) -> &'static str {
        match self {
            BackboneKind::Resnet => "ResNet",
            BackboneKind::Resnetv1d => "ResNetV1d",
            BackboneKind::Resnext => "ResNeXt",
            BackboneKind::Resnest => "ResNeSt",
        }
    }
}

/// Deformable convolution kind (mmdetection's `dcn.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DcnKind {
    /// Plain convolutions (mmdetection's `dcn=None`).
    #[default]
    None,
    /// DCNv1 (`DCN`): offsets only.
    #[serde(alias = "DCN")]
    Dcn,
    /// DCNv2 (`DCNv2`): offsets and a modulation mask.
    #[serde(alias = "DCNv2")]
    Dcnv2,
}

/// mmdetection's `dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False)`: the 3x3
/// convolution of every block of the stages `stage_with_dcn` picks becomes deformable
/// (`dcn = { type = "dcnv2" }` in a config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DcnConfig {
    /// Default `none`.
    #[serde(rename = "type")]
    pub kind: DcnKind,
    /// Offset groups. Default 1.
    pub deform_groups: usize,
    /// mmdetection's flag: when true the blocks keep plain convolutions. Default false.
    pub fallback_on_stride: bool,
}

impl Default for DcnConfig {
    fn default() -> Self {
        Self {
            kind: DcnKind::None,
            deform_groups: 1,
            fallback_on_stride: false,
        }
    }
}

/// Settings of [`ResNet`]. Defaults are ResNet-50 as mmdetection's detectors use it; the other
/// members take mmdetection's names (`type = "resnext"`, `groups = 32`, `base_width = 4`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResNetConfig {
    /// Family member. Default `resnet`.
    #[serde(rename = "type")]
    pub kind: BackboneKind,
    /// 18, 34, 50, 101 or 152 (and 200, 269 for ResNeSt) picks `block` and `layers`; 0 uses
    /// them as given. Default 50.
    pub depth: usize,
    pub block: BlockKind,
    /// Blocks per stage. Default `[3, 4, 6, 3]`.
    pub layers: [usize; 4],
    /// Planes of stage 1 (doubling per stage; output channels are 4x for bottlenecks).
    /// Default 64.
    pub base_channels: usize,
    /// Output channels of the stem; 0 is `base_channels` (ResNeSt-101 and deeper use 128).
    /// Default 0.
    pub stem_channels: usize,
    /// Default `torchvision`; `resnetv1d` and `resnest` always use `deep` (mmdetection's
    /// `ResNetV1d` fixes `deep_stem=True`).
    pub stem: StemKind,
    /// Average-pool downsampling in the shortcut (`AvgPool2d(stride, ceil_mode)` then a
    /// stride-1 1x1 conv). Default false; `resnetv1d` and `resnest` always use it.
    pub avg_down: bool,
    /// Groups of the 3x3 convs (ResNeXt's cardinality). Default 1.
    pub groups: usize,
    /// ResNeXt's width per group at stage 1 (see [`bottleneck_width`]). Default 4.
    pub base_width: usize,
    /// ResNeSt's splits per group. Default 2.
    pub radix: usize,
    /// ResNeSt's attention squeeze. Default 4.
    pub reduction_factor: usize,
    /// ResNeSt: a strided block's 3x3 runs at stride 1 followed by a 3x3 average pool with the
    /// stride. Default true.
    pub avg_down_stride: bool,
    /// Deformable 3x3 convolutions. Default plain (`type = "none"`).
    pub dcn: DcnConfig,
    /// Stages (c2..c5) whose blocks take `dcn`. Default `[false, true, true, true]`.
    pub stage_with_dcn: [bool; 4],
    /// Plugins in the bottlenecks (GCNet's context block). Default none.
    pub plugins: Vec<PluginConfig>,
    /// Stages whose parameters are frozen: 0 none, 1 the stem and stage 1 (mmdetection's
    /// default), up to 4. Default 1.
    pub frozen_stages: usize,
    /// Batch-norm layers use their running statistics in training too. Default true.
    pub norm_eval: bool,
    /// Norm layers: `{ type = "bn" }` (default) or `{ type = "gn", num_groups = 32 }`
    /// (mmdetection's `norm_cfg`; group norm is named `gn1`, `gn2`, ... in its checkpoints).
    pub norm: NormConfig,
    /// Convolutions: `conv` (default) or `ws`, weight-standardised (mmdetection's
    /// `conv_cfg=dict(type='ConvWS')`; not with DCN).
    pub conv: ConvKind,
    /// Where a strided bottleneck puts its stride (mmdetection's `style`): `pytorch` on the
    /// 3x3 (ResNet v1.5, torchvision's and mmdetection's default) or `caffe` on the first 1x1
    /// (the original ResNet; detectron2's `STRIDE_IN_1X1 = True` of its MSRA-initialised
    /// models). Default `pytorch`.
    pub style: ResNetStyle,
    /// Pretrained weights loaded into the backbone when training starts afresh: a torchvision
    /// or timm ImageNet checkpoint (`.pth` or `.safetensors`) or an mmdetection one (its
    /// `backbone.*`). Default "" (random initialisation).
    pub init: String,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self {
            kind: BackboneKind::Resnet,
            depth: 50,
            block: BlockKind::Bottleneck,
            layers: [3, 4, 6, 3],
            base_channels: 64,
            stem_channels: 0,
            stem: StemKind::Torchvision,
            avg_down: false,
            groups: 1,
            base_width: 4,
            radix: 2,
            reduction_factor: 4,
            avg_down_stride: true,
            dcn: DcnConfig::default(),
            stage_with_dcn: [false, true, true, true],
            plugins: Vec::new(),
            frozen_stages: 1,
            norm_eval: true,
            norm: NormConfig::bn(),
            conv: ConvKind::Conv,
            style: ResNetStyle::Pytorch,
            init: String::new(),
        }
    }
}

/// A [`ResNetConfig`] with its defaults that depend on `type` and `depth` settled.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub block: BlockKind,
    pub layers: [usize; 4],
    pub stem: StemKind,
    pub stem_channels: usize,
    pub avg_down: bool,
}

impl ResNetConfig {
    /// Settles `depth`, `stem`, `stem_channels` and `avg_down`, and checks that the settings
    /// belong to the family member.
    ///
    /// # Errors
    /// [`ModelError::Input`] naming the `model.backbone` field at fault.
    pub fn resolved(&self) -> Result<Resolved> {
        let bad = |m: String| Err(ModelError::Input(format!("model.backbone.{m}")));
        let kind = self.kind;
        let resnest = kind == BackboneKind::Resnest;
        let (block, layers) = match (self.depth, resnest) {
            (0, _) => (self.block, self.layers),
            (18, false) => (BlockKind::Basic, [2, 2, 2, 2]),
            (34, false) => (BlockKind::Basic, [3, 4, 6, 3]),
            (50, _) => (BlockKind::Bottleneck, [3, 4, 6, 3]),
            (101, _) => (BlockKind::Bottleneck, [3, 4, 23, 3]),
            (152, _) => (BlockKind::Bottleneck, [3, 8, 36, 3]),
            (200, true) => (BlockKind::Bottleneck, [3, 24, 36, 3]),
            (269, true) => (BlockKind::Bottleneck, [3, 30, 48, 8]),
            (d, _) => {
                return bad(format!(
                    "depth: {d} is not a depth of type {} (ResNet: 0, 18, 34, 50, 101, 152; \
                     ResNeSt: 0, 50, 101, 152, 200, 269)",
                    kind.name()
                ));
            }
        };
        if self.base_channels == 0 || layers.contains(&0) || self.frozen_stages > 4 {
            return bad(
                "base_channels and layers must be positive, frozen_stages at most 4".to_string(),
            );
        }
        let grouped = matches!(kind, BackboneKind::Resnext | BackboneKind::Resnest);
        if !grouped && (self.groups != 1 || self.base_width != 4) {
            return bad(format!(
                "groups / base_width are ResNeXt's and ResNeSt's (type = \"resnext\" or \
                 \"resnest\"); type {} takes neither (the stage-1 width is base_channels)",
                kind.name()
            ));
        }
        if self.groups == 0 || self.base_width == 0 {
            return bad("groups and base_width must be positive".to_string());
        }
        if grouped && self.groups > 1 && block == BlockKind::Basic {
            return bad("groups: grouped 3x3 convolutions need bottleneck blocks".to_string());
        }
        if !resnest && (self.radix != 2 || self.reduction_factor != 4 || !self.avg_down_stride) {
            return bad(format!(
                "radix / reduction_factor / avg_down_stride are ResNeSt's; type {} takes \
                 none of them",
                kind.name()
            ));
        }
        if resnest && (block == BlockKind::Basic || self.radix == 0 || self.reduction_factor == 0) {
            return bad(
                "type resnest needs bottleneck blocks and positive radix and reduction_factor"
                    .to_string(),
            );
        }
        if self.style == ResNetStyle::Caffe && (block == BlockKind::Basic || resnest) {
            return bad(
                "style: caffe moves a bottleneck's stride to its first 1x1; it needs bottleneck \
                 blocks and no ResNeSt"
                    .to_string(),
            );
        }
        let v1d = matches!(kind, BackboneKind::Resnetv1d | BackboneKind::Resnest);
        if v1d && self.stem == StemKind::Small {
            return bad(format!("stem: type {} has the deep stem", kind.name()));
        }
        let stem = if v1d { StemKind::Deep } else { self.stem };
        let stem_channels = if self.stem_channels == 0 {
            self.base_channels
        } else {
            self.stem_channels
        };
        if stem_channels == 0 || (stem == StemKind::Deep && stem_channels % 2 != 0) {
            return bad(format!(
                "stem_channels: {stem_channels} (a deep stem needs an even, positive number)"
            ));
        }
        super::plugins::check(&self.plugins, block)
            .map_err(|m| ModelError::Input(format!("model.backbone.{m}")))?;
        if self.norm.kind == NormKind::None {
            return bad("norm.type: a ResNet needs a norm (bn or gn)".to_string());
        }
        if self.conv == ConvKind::Ws && self.dcn.kind != DcnKind::None {
            return bad(
                "conv: weight standardisation does not combine with dcn (as in mmcv)".into(),
            );
        }
        if self.dcn.kind != DcnKind::None && self.dcn.deform_groups == 0 {
            return bad("dcn.deform_groups must be positive".to_string());
        }
        Ok(Resolved {
            block,
            layers,
            stem,
            stem_channels,
            avg_down: self.avg_down || v1d,
        })
    }

    /// The config with the settings its `type` fixes written out (`resnetv1d` and `resnest`:
    /// the deep stem and `avg_down`; the stem width), so that a resolved config file says
    /// what is built. Unchanged when it does not resolve (the error comes at build time).
    pub fn normalized(&self) -> Self {
        let Ok(r) = self.resolved() else {
            return self.clone();
        };
        Self {
            stem: r.stem,
            avg_down: r.avg_down,
            stem_channels: r.stem_channels,
            ..self.clone()
        }
    }

    /// Output channels of the four stages.
    ///
    /// # Errors
    /// As [`Self::resolved`].
    pub fn out_channels(&self) -> Result<[usize; 4]> {
        let r = self.resolved()?;
        let e = expansion(r.block);
        Ok(std::array::from_fn(|i| (self.base_channels * e) << i))
    }

    /// Builds the network (He-normal convs, BN weight 1 and bias 0, zero DCN offsets).
    ///
    /// # Errors
    /// As [`Self::resolved`].
    pub fn init(&self, device: &Device) -> Result<ResNet> {
        let r = self.resolved()?;
        // Every norm of the network; a group norm's groups must divide its channels.
        let norm = |c: usize| -> Result<Norm> {
            self.norm.check("model.backbone.norm", &[c])?;
            self.norm
                .init(c, self.norm_eval, device)
                .ok_or_else(|| ModelError::Input("model.backbone.norm.type: none".into()))
        };
        let ws = self.conv == ConvKind::Ws;
        let sc = r.stem_channels;
        let (mut conv1, mut bn1, mut stem) = (None, None, None);
        let mut maxpool = Some(
            MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
        );
        match r.stem {
            StemKind::Torchvision => {
                conv1 = Some(conv(3, sc, 7, 2, device));
                bn1 = Some(norm(sc)?);
            }
            StemKind::Small => {
                conv1 = Some(conv(3, sc, 3, 2, device));
                bn1 = Some(norm(sc)?);
                maxpool = None;
            }
            StemKind::Deep => {
                let half = sc / 2;
                stem = Some(DeepStem {
                    convs: vec![
                        conv(3, half, 3, 2, device),
                        conv(half, half, 3, 1, device),
                        conv(half, sc, 3, 1, device),
                    ],
                    norms: vec![norm(half)?, norm(half)?, norm(sc)?],
                    ws,
                });
            }
        }
        let e = expansion(r.block);
        let mut cin = sc;
        let mut stages = Vec::new();
        for (i, &n) in r.layers.iter().enumerate() {
            let planes = self.base_channels << i;
            let first_stride = if i == 0 && r.stem != StemKind::Small {
                1
            } else {
                2
            };
            let dcn = Some(&self.dcn).filter(|d| {
                d.kind != DcnKind::None && self.stage_with_dcn[i] && !d.fallback_on_stride
            });
            let blocks = (0..n)
                .map(|b| {
                    let spec = BlockSpec {
                        kind: r.block,
                        cin,
                        planes,
                        stride: if b == 0 { first_stride } else { 1 },
                        avg_down: r.avg_down,
                        dcn,
                        plugins: self.plugins.iter().filter(|p| p.stages[i]).collect(),
                    };
                    let blk = self.block(&spec, &norm, device);
                    cin = planes * e;
                    blk
                })
                .collect::<Result<Vec<Block>>>()?;
            stages.push(blocks);
        }
        let [layer1, layer2, layer3, layer4]: [Vec<Block>; 4] = stages
            .try_into()
            .map_err(|_| ModelError::Input("four stages".into()))?;
        let net = ResNet {
            conv1,
            bn1,
            stem,
            maxpool,
            layer1,
            layer2,
            layer3,
            layer4,
            frozen_stages: self.frozen_stages,
            avg_down: r.avg_down,
            ws: self.conv == ConvKind::Ws,
            group_norm: self.norm.kind == NormKind::Gn,
        };
        Ok(net.freeze_stages())
    }
}

/// ResNet body returning the outputs of its four stages.
#[derive(Module, Debug)]
pub struct ResNet {
    /// The single-conv stem (torchvision's and the small one); None with a deep stem.
    pub conv1: Option<Conv2d>,
    pub bn1: Option<Norm>,
    pub stem: Option<DeepStem>,
    pub maxpool: Option<MaxPool2d>,
    pub layer1: Vec<Block>,
    pub layer2: Vec<Block>,
    pub layer3: Vec<Block>,
    pub layer4: Vec<Block>,
    pub frozen_stages: usize,
    /// Shortcuts start with an average pool (their conv is then `downsample.1`).
    pub avg_down: bool,
    /// The stem conv is weight-standardised (mmcv's `ConvWS`).
    pub ws: bool,
    /// The norms are group norms (mmdetection names them `gn1`, `gn2`, ...).
    pub group_norm: bool,
}

impl ResNet {
    /// `images` `[B, 3, H, W]` -> four maps `[B, C_i, H / s_i, W / s_i]`, `s_i` = 4, 8, 16, 32
    /// (rounded up).
    pub fn forward(&self, images: Tensor<4>) -> Vec<Tensor<4>> {
        let mut x = images;
        if let (Some(c), Some(b)) = (&self.conv1, &self.bn1) {
            x = relu(b.forward(conv_forward(c, x, self.ws)));
        }
        if let Some(stem) = &self.stem {
            for (c, n) in stem.convs.iter().zip(&stem.norms) {
                x = relu(n.forward(conv_forward(c, x, stem.ws)));
            }
        }
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

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        match (&self.conv1, &self.stem) {
            (Some(c), _) => c.weight.device(),
            (None, Some(s)) if !s.convs.is_empty() => s.convs[0].weight.device(),
            _ => self.layer1[0].conv1.weight.device(),
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
            conv1: self.conv1.map(|c| c.freeze()),
            bn1: self.bn1.map(|b| b.freeze()),
            stem: self.stem.map(|s| s.freeze()),
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
                    base_channels: 8,
                    stem: StemKind::Small,
                    frozen_stages: 0,
                    norm_eval: false,
                    ..Default::default()
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

    #[test]
    fn v1d_pieces_work_on_a_plain_resnet_and_odd_sizes_round_up() {
        let device = Device::flex();
        // ResNet-v1d: deep stem and average-pool shortcuts; a plain ResNet can take either.
        let v1d = ResNetConfig {
            kind: BackboneKind::Resnetv1d,
            depth: 0,
            layers: [1, 1, 1, 1],
            base_channels: 8,
            ..Default::default()
        };
        let r = v1d.resolved().expect("resolves");
        assert_eq!(
            (r.stem, r.avg_down, r.stem_channels),
            (StemKind::Deep, true, 8)
        );
        let deep = ResNetConfig {
            kind: BackboneKind::Resnet,
            stem: StemKind::Deep,
            avg_down: true,
            ..v1d.clone()
        };
        let x = Tensor::<4>::zeros([1, 3, 65, 97], &device);
        for cfg in [v1d, deep] {
            let net = cfg.init(&device).expect("config");
            assert!(net.stem.is_some() && net.conv1.is_none() && net.avg_down);
            let dims: Vec<[usize; 4]> = net.forward(x.clone()).iter().map(|o| o.dims()).collect();
            assert_eq!(
                dims,
                [
                    [1, 32, 17, 25],
                    [1, 64, 9, 13],
                    [1, 128, 5, 7],
                    [1, 256, 3, 4]
                ]
            );
        }
        // The small stem is the demo's; v1d members refuse it.
        let small = ResNetConfig {
            kind: BackboneKind::Resnest,
            stem: StemKind::Small,
            ..Default::default()
        };
        assert!(small.resolved().is_err());
    }
}
