//! Backbones: feature extractors that return one map per stage (strides 4, 8, 16, 32): the
//! ResNet family (ResNet, ResNet-v1d, ResNeXt, ResNeSt, each with optional DCN), one file per
//! member's own part.

pub mod block;
pub mod plugins;
pub mod resnest;
pub mod resnet;
pub mod resnext;

pub use block::{Block, Conv2Layer, DeepStem};
pub use plugins::{PluginConfig, PluginKind, PluginPosition};
pub use resnet::{
    BackboneKind, BlockKind, DcnConfig, DcnKind, ResNet, ResNetConfig, ResNetStyle, Resolved,
    StemKind,
};
