//! mmdetection's ResNet `plugins` (mmdet/models/backbones/resnet.py, `make_block_plugins`):
//! extra layers placed after a bottleneck's conv1, conv2 or conv3 in chosen stages. Built:
//! GCNet's context block ([`ContextBlock`]) and the empirical attention study's generalized
//! attention ([`GeneralizedAttention`]); the block runs them in [`super::block::Block`].

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::resnet::BlockKind;
use crate::error::Result;
use crate::layers::{ContextBlock, GeneralizedAttention, GeneralizedAttentionConfig};

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

/// Checks `plugins` for a backbone of `block`s; the message names the field under
/// `model.backbone.`.
pub(crate) fn check(plugins: &[PluginConfig], block: BlockKind) -> std::result::Result<(), String> {
    for (i, p) in plugins.iter().enumerate() {
        if block == BlockKind::Basic {
            return Err(format!("plugins[{i}]: plugins need bottleneck blocks"));
        }
        match p.kind {
            PluginKind::ContextBlock if !(p.ratio > 0.0 && p.ratio <= 1.0) => {
                return Err(format!("plugins[{i}].ratio: {} is not in (0, 1]", p.ratio));
            }
            PluginKind::GeneralizedAttention if p.spatial_range != -1 || p.q_stride != 1 => {
                return Err(format!(
                    "plugins[{i}]: generalized attention is built for spatial_range -1 and \
                         q_stride 1 (mmdetection's configs), got {} and {}",
                    p.spatial_range, p.q_stride
                ));
            }
            PluginKind::GeneralizedAttention => {
                if let Err(e) = ga_config(p, 0).terms() {
                    return Err(format!("plugins[{i}].{e}"));
                }
            }
            PluginKind::ContextBlock => {}
        }
        if let Some(j) = (0..i).find(|&j| {
            let q = &plugins[j];
            (q.kind == p.kind || q.position == p.position)
                && (0..4).any(|s| q.stages[s] && p.stages[s])
        }) {
            return Err(format!(
                "plugins[{i}]: plugins[{j}] has its kind or position in one of its stages \
                     (one plugin of a kind, and one per position, in a block)"
            ));
        }
    }
    Ok(())
}

/// The plugins of one block and the conv (1, 2, 3) each follows (0 when absent).
pub(crate) struct BlockPlugins {
    pub context_block: Option<ContextBlock>,
    pub context_block_after: usize,
    pub gen_attention_block: Option<GeneralizedAttention>,
    pub gen_attention_block_after: usize,
}

impl BlockPlugins {
    /// The block's `plugins` over its widths: `width` after conv1 and conv2, `cout` after conv3.
    pub(crate) fn build(
        plugins: &[&PluginConfig],
        width: usize,
        cout: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut out = BlockPlugins {
            context_block: None,
            context_block_after: 0,
            gen_attention_block: None,
            gen_attention_block_after: 0,
        };
        for p in plugins {
            let (after, channels) = match p.position {
                PluginPosition::AfterConv1 => (1, width),
                PluginPosition::AfterConv2 => (2, width),
                PluginPosition::AfterConv3 => (3, cout),
            };
            match p.kind {
                PluginKind::ContextBlock => {
                    out.context_block = Some(ContextBlock::new(channels, p.ratio, device));
                    out.context_block_after = after;
                }
                PluginKind::GeneralizedAttention => {
                    out.gen_attention_block = Some(ga_config(p, channels).init(device)?);
                    out.gen_attention_block_after = after;
                }
            }
        }
        Ok(out)
    }
}
