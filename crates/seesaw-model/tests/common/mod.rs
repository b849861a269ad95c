//! Helpers shared by the detector tests: a tiny network and box-shaped masks.

// Each test crate that includes this module uses part of it.
#![allow(dead_code)]

use seesaw_model::backbones::{BlockKind, ResNetConfig, StemKind};
use seesaw_model::detectors::DetectorConfig;
use seesaw_model::structures::GtMask;

pub mod reference;

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

/// Two `h x w` images with the same two ground truths (classes 1 and 4, box-shaped masks).
pub fn two_image_batch(
    h: usize,
    w: usize,
) -> (
    Vec<seesaw_model::structures::ImageMeta>,
    Vec<seesaw_model::structures::GtInstances>,
) {
    use seesaw_model::structures::{GtInstances, ImageMeta};
    let metas = (0..2)
        .map(|i| ImageMeta {
            image_id: i,
            ori_shape: (h as u32, w as u32),
            img_shape: (h, w),
            scale: (1.0, 1.0),
            flip: false,
        })
        .collect();
    let s = |v: f32| v * (w as f32 / 96.0).min(h as f32 / 64.0);
    let boxes = [
        [s(10.0), s(12.0), s(40.0), s(50.0)],
        [s(50.0), s(5.0), s(90.0), s(30.0)],
    ];
    let gts = (0..2)
        .map(|_| GtInstances {
            boxes: boxes.to_vec(),
            labels: vec![1, 4],
            masks: boxes.iter().map(|&b| GtMask::filled_box(h, w, b)).collect(),
            ignore: vec![],
        })
        .collect();
    (metas, gts)
}

/// A fixture file of tests/fixtures/weights.
pub fn fixture(name: &str) -> seesaw_model::weights::WeightsFile {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name);
    seesaw_model::weights::WeightsFile::open(&path).expect("fixture opens")
}

/// The detector of `cfg` with the tensors of the mmdetection-layout fixture `file` loaded:
/// none unexpected or mis-shaped, and every tensor of the model under `prefix` in the file.
pub fn load_mmdet_part(
    cfg: &DetectorConfig,
    file: &str,
    prefix: &str,
    device: &seesaw_model::burn::tensor::Device,
) -> seesaw_model::detectors::Detector {
    use seesaw_model::weights::{self, Layout, Naming};
    let mut det = cfg.init(device).expect("config");
    let naming = Naming::detector(Layout::Mmdet, &det);
    let report = weights::load(&mut det, &fixture(file), &naming, true).expect("loads");
    assert!(
        report.unexpected.is_empty() && report.mismatched.is_empty(),
        "{report:?}"
    );
    assert!(
        report.missing.iter().all(|n| !n.starts_with(prefix)),
        "every {prefix}* tensor is in {file}: {report:?}"
    );
    det
}
