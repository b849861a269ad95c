//! The ResNet family as mmdetection builds it (mmdet/models/backbones/resnet.py, resnext.py,
//! resnest.py): torchvision's layout (`conv1`/`bn1`, `layer1..4` of basic or bottleneck blocks,
//! stride on the 3x3 conv as in ResNet v1.5), ResNet-v1d's deep stem and average-pool
//! downsampling, ResNeXt's grouped 3x3 ([`super::resnext`]), ResNeSt's split attention
//! ([`super::resnest`]) and DCNv2 in chosen stages, with mmdetection's `frozen_stages` and
//! `norm_eval`, plus a small stem for the CPU demo.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::resnest::{SplitAttentionConv2d, inter_channels};
use super::resnext::bottleneck_width;
use crate::error::{ModelError, Result};
use crate::layers::{
    ContextBlock, ConvKind, ConvOrDcn, DeformConv2dConfig, GeneralizedAttention,
    GeneralizedAttentionConfig, Norm, NormConfig, NormKind, conv_forward,
};
use crate::ops::deform_conv::DeformConvOptions;

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

/// A backbone plugin's kind (mmdetection's `plugins[i].cfg.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// GCNet's global context block ([`ContextBlock`]).
    #[default]
    #[serde(alias = "ContextBlock")]
    ContextBlock,
    /// Zhu et al.'s generalized attention ([`GeneralizedAttention`]).
    #[serde(alias = "GeneralizedAttention")]
    GeneralizedAttention,
}

/// Where in a bottleneck a plugin runs (mmdetection's `position`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginPosition {
    /// After conv1, its norm and ReLU.
    AfterConv1,
    /// After the 3x3, its norm and ReLU (ResNeSt: after the split attention and `avd`).
    AfterConv2,
    /// After conv3 and its norm, before the shortcut is added.
    #[default]
    AfterConv3,
}

/// One of mmdetection's ResNet `plugins`: `[[model.backbone.plugins]]` with `type`, `stages`,
/// `position` and the kind's settings, e.g. GCNet's `type = "context_block"`, `ratio = 0.25`,
/// `stages = [false, true, true, true]`, `position = "after_conv3"`, or the empirical attention
/// study's `type = "generalized_attention"`, `num_heads = 8`, `attention_type = "0010"`,
/// `kv_stride = 2`, `stages = [false, false, true, true]`, `position = "after_conv2"`. A block
/// takes at most one plugin of a kind and one per position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// Default `context_block`.
    #[serde(rename = "type")]
    pub kind: PluginKind,
    /// Context block: its transform width over its input channels. Default 0.25 (GCNet's r4).
    pub ratio: f64,
    /// Generalized attention: heads. Default 9 (mmcv's; mmdetection's configs use 8).
    pub num_heads: usize,
    /// Generalized attention: the four energy terms (query-key, query-position, key only,
    /// position only). Default "1111".
    pub attention_type: String,
    /// Generalized attention: keys and values at every `kv_stride`-th row and column.
    /// Default 2.
    pub kv_stride: usize,
    /// Generalized attention: -1 attends everywhere (mmcv's local window, `>= 0`, is not
    /// built). Default -1.
    pub spatial_range: i64,
    /// Generalized attention: queries at every `q_stride`-th position; only 1 is built.
    /// Default 1.
    pub q_stride: usize,
    /// Generalized attention: sinusoidal embedding width, -1 for the input's channels.
    /// Default -1.
    pub position_embedding_dim: i64,
    /// Generalized attention: scale of the pixel offsets. Default 1.
    pub position_magnitude: f64,
    /// Stages (c2..c5) whose blocks take the plugin. Default all.
    pub stages: [bool; 4],
    /// Default `after_conv3`.
    pub position: PluginPosition,
}

impl Default for PluginConfig {
    fn default() -> Self {
        Self {
            kind: PluginKind::ContextBlock,
            ratio: 0.25,
            num_heads: 9,
            attention_type: "1111".into(),
            kv_stride: 2,
            spatial_range: -1,
            q_stride: 1,
            position_embedding_dim: -1,
            position_magnitude: 1.0,
            stages: [true; 4],
            position: PluginPosition::AfterConv3,
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
        for (i, p) in self.plugins.iter().enumerate() {
            if block == BlockKind::Basic {
                return bad(format!("plugins[{i}]: plugins need bottleneck blocks"));
            }
            match p.kind {
                PluginKind::ContextBlock if !(p.ratio > 0.0 && p.ratio <= 1.0) => {
                    return bad(format!("plugins[{i}].ratio: {} is not in (0, 1]", p.ratio));
                }
                PluginKind::GeneralizedAttention if p.spatial_range != -1 || p.q_stride != 1 => {
                    return bad(format!(
                        "plugins[{i}]: generalized attention is built for spatial_range -1 and \
                         q_stride 1 (mmdetection's configs), got {} and {}",
                        p.spatial_range, p.q_stride
                    ));
                }
                PluginKind::GeneralizedAttention => {
                    if let Err(e) = ga_config(p, 0).terms() {
                        return bad(format!("plugins[{i}].{e}"));
                    }
                }
                PluginKind::ContextBlock => {}
            }
            if let Some(j) = (0..i).find(|&j| {
                let q = &self.plugins[j];
                (q.kind == p.kind || q.position == p.position)
                    && (0..4).any(|s| q.stages[s] && p.stages[s])
            }) {
                return bad(format!(
                    "plugins[{i}]: plugins[{j}] has its kind or position in one of its stages \
                     (one plugin of a kind, and one per position, in a block)"
                ));
            }
        }
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

    /// One residual block: torchvision's (`downsample` first, then `conv1..3`, the order that
    /// keeps a seeded ResNet's initial weights as they were), ResNeXt's or ResNeSt's.
    fn block(
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
                let conv1 = conv(s.cin, width, 1, 1, device);
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
                    let c = conv3x3(width, width, s.stride, self.groups);
                    (Conv2Layer::Conv(c), Some(norm(width)?), None)
                };
                let conv3 = conv(width, cout, 1, 1, device);
                (conv1, bn1, conv2, bn2, avd, Some(conv3), Some(norm(cout)?))
            }
        };
        // mmdetection builds plugins after the convolutions, over the channels where they sit.
        let (mut context_block, mut context_block_after) = (None, 0);
        let (mut gen_attention_block, mut gen_attention_block_after) = (None, 0);
        for p in &s.plugins {
            let (after, channels) = match p.position {
                PluginPosition::AfterConv1 => (1, conv1.weight.dims()[0]),
                PluginPosition::AfterConv2 => (2, conv1.weight.dims()[0]),
                PluginPosition::AfterConv3 => (3, cout),
            };
            match p.kind {
                PluginKind::ContextBlock => {
                    context_block = Some(ContextBlock::new(channels, p.ratio, device));
                    context_block_after = after;
                }
                PluginKind::GeneralizedAttention => {
                    gen_attention_block = Some(ga_config(p, channels).init(device)?);
                    gen_attention_block_after = after;
                }
            }
        }
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
            context_block,
            context_block_after,
            gen_attention_block,
            gen_attention_block_after,
            ws: self.conv == ConvKind::Ws,
        })
    }
}

/// What one block is built from.
struct BlockSpec<'a> {
    kind: BlockKind,
    cin: usize,
    planes: usize,
    stride: usize,
    avg_down: bool,
    dcn: Option<&'a DcnConfig>,
    plugins: Vec<&'a PluginConfig>,
}

/// mmcv's `GeneralizedAttention` settings of a plugin over `channels` channels.
fn ga_config(p: &PluginConfig, channels: usize) -> GeneralizedAttentionConfig {
    GeneralizedAttentionConfig {
        in_channels: channels,
        num_heads: p.num_heads,
        position_embedding_dim: usize::try_from(p.position_embedding_dim).unwrap_or(0),
        position_magnitude: p.position_magnitude,
        kv_stride: p.kv_stride,
        attention_type: p.attention_type.clone(),
    }
}

fn expansion(block: BlockKind) -> usize {
    if block == BlockKind::Bottleneck { 4 } else { 1 }
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
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
