//! Helpers shared by the detector tests: a tiny network and box-shaped masks.

// Each test crate that includes this module uses part of it.
#![allow(dead_code)]

use seesaw_model::backbones::{BlockKind, ResNetConfig, StemKind};
use seesaw_model::detectors::DetectorConfig;
use seesaw_model::structures::GtMask;

/// Mask R-CNN with 5 classes on a network small enough to train in a test.
pub fn tiny(loss: &str) -> DetectorConfig {
    let mut c = DetectorConfig {
        num_classes: 5,
        loss: loss.parse().expect("loss"),
        ..Default::default()
    };
    c.backbone = ResNetConfig {
        depth: 0,
        block: BlockKind::Basic,
        layers: [1, 1, 1, 1],
        base_channels: 8,
        stem: StemKind::Small,
        frozen_stages: 0,
        norm_eval: false,
        ..Default::default()
    };
    c.neck.out_channels = 16;
    c.bbox_head.fc_channels = 32;
    c.bbox_head.normed_classifier = loss == "seesaw";
    c.mask_head.conv_channels = 8;
    c.mask_head.num_convs = 2;
    c.rpn.sampler_num = 32;
    c.roi.sampler_num = 16;
    c
}

/// An `h x w` mask that is 1 inside box `b`.
pub fn square_mask(h: usize, w: usize, b: [f32; 4]) -> GtMask {
    let mut data = vec![0u8; h * w];
    for y in b[1] as usize..b[3] as usize {
        for x in b[0] as usize..b[2] as usize {
            data[y * w + x] = 1;
        }
    }
    GtMask {
        height: h,
        width: w,
        data,
    }
}

/// The worst `|got - want| / (1 + |want|)` over two tensors of one shape.
pub fn max_rel_diff<const D: usize>(
    got: burn::tensor::Tensor<D>,
    want: burn::tensor::Tensor<D>,
) -> f32 {
    assert_eq!(got.dims(), want.dims(), "shape");
    let g = got.into_data().try_to_vec::<f32>().expect("f32");
    let w = want.into_data().try_to_vec::<f32>().expect("f32");
    g.iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0f32, f32::max)
}
