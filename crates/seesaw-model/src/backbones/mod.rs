//! Backbones: feature extractors that return one map per stage (strides 4, 8, 16, 32).

pub mod resnet;

pub use resnet::{BlockKind, ResNet, ResNetConfig, StemKind};
