//! A torchvision Mask R-CNN converted and run with torchvision's conventions, against
//! torchvision itself: tests/fixtures/weights/make_torchvision_maskrcnn.py builds
//! `torchvision.models.detection.MaskRCNN` (maskrcnn_resnet50_fpn's and _v2's classes and
//! names, tiny widths, random weights), saves its state dict as torchvision saves detection
//! weights and records its forward on two PNG images: the FPN maps, the anchors, the RPN's
//! proposals, the box head's outputs, the detections, the mask probabilities and the pasted
//! masks ([`common::reference`] checks all but the masks).

mod common;

use common::reference::{Reference, check_against, close, fixture_images, host};
use seesaw_data::DataConfig;
use seesaw_data::transforms::ResizeKind;
use seesaw_model::backbones::{BlockKind, ResNetConfig, StemKind};
use seesaw_model::burn::tensor::{DType, Device};
use seesaw_model::detectors::{Detector, DetectorConfig};
use seesaw_model::layers::NormConfig;
use seesaw_model::ops::mask_paste::{MaskPaste, paste_mask_torchvision};
use seesaw_model::weights::{self, Layout, Naming, WeightsFile};

/// The fixture's architecture with torchvision's conventions (the options of
/// configs/mask_rcnn_r50_fpn_torchvision_coco.toml).
fn tv_config() -> DetectorConfig {
    let mut c = DetectorConfig {
        num_classes: 5,
        loss: "ce".parse().expect("loss"),
        with_mask: true,
        ..Default::default()
    };
    c.backbone = ResNetConfig {
        depth: 0,
        block: BlockKind::Basic,
        layers: [1, 1, 1, 1],
        base_channels: 8,
        stem: StemKind::Torchvision,
        frozen_stages: 0,
        norm: NormConfig {
            eps: 0.0,
            ..NormConfig::bn()
        },
        ..Default::default()
    };
    c.neck.out_channels = 16;
    c.rpn.anchor_round = true;
    c.rpn.anchor_strides_from_sizes = true;
    c.rpn.test.min_size = 1e-3;
    c.roi.aligned = false;
    c.roi.sampling_ratio = 2;
    c.roi.test.score_thr = 0.05;
    c.roi.test.max_per_img = 100;
    c.roi.test.min_bbox_size = 1e-2;
    c.roi.test.mask_paste = MaskPaste::Torchvision;
    c.bbox_head.fc_channels = 32;
    c.bbox_head.normed_classifier = false;
    c.mask_head.conv_channels = 16;
    c.mask_head.num_convs = 4;
    c
}

fn fixture(name: &str) -> WeightsFile {
    common::fixture(name)
}

/// `file` converted into `cfg`'s detector.
fn converted(file: &str, cfg: DetectorConfig) -> Detector {
    let mut file = fixture(file);
    assert!(file.is_torchvision_detector());
    let notes = file.torchvision_detector_to_ours(5).expect("re-laid");
    assert_eq!(
        notes.len(),
        6,
        "cls_score, bbox_pred, mask_fcn_logits: {notes:?}"
    );
    let mut det = cfg.init(&Device::flex()).expect("model");
    let naming = Naming::detector(Layout::Torchvision, &det);
    let report = weights::load(&mut det, &file, &naming, false).expect("every tensor fits");
    assert!(report.is_complete(), "{report:?}");
    det
}

/// `maskrcnn_resnet50_fpn_v2`'s parts on the fixture's widths (torchvision's v2 builder):
/// batch norm (eps 1e-5) in the FPN, a two-conv RPN head, a 4-conv + 1-fc box head and a mask
/// head with batch norm.
fn tv_v2_config() -> DetectorConfig {
    let mut c = tv_config();
    c.backbone.norm = NormConfig::bn();
    c.neck.norm = NormConfig::bn();
    c.rpn.num_convs = 2;
    c.bbox_head.num_shared_convs = 4;
    c.bbox_head.conv_out_channels = 16;
    c.bbox_head.num_shared_fcs = 1;
    c.bbox_head.norm = NormConfig::bn();
    c.mask_head.norm = NormConfig::bn();
    c
}

#[test]
fn a_torchvision_mask_rcnn_converts_and_matches_torchvision() {
    matches_torchvision(
        "tv_maskrcnn_tiny.pth",
        "tv_maskrcnn_tiny_out.safetensors",
        tv_config(),
    );
}

#[test]
fn a_torchvision_mask_rcnn_v2_converts_and_matches_torchvision() {
    matches_torchvision(
        "tv_maskrcnn_v2_tiny.pth",
        "tv_maskrcnn_v2_tiny_out.safetensors",
        tv_v2_config(),
    );
}

/// The converted `file` against torchvision's outputs `out` (RoIAlign without the half-pixel
/// shift, rounded anchors whose P6 strides are 96 // 2 = 48 down and 128 // 2 = 64 across,
/// labels one above our classes), then the pasted masks: soft in v1's fixture, binarised at
/// > 0.5 in v2's (pixels within 1e-4 of 0.5 may go either way; the soft sums must agree).
fn matches_torchvision(file: &str, out: &str, cfg: DetectorConfig) {
    let det = converted(file, cfg);
    let data = DataConfig {
        resize: ResizeKind::Torchvision,
        test_scale: [96, 128],
        ..Default::default()
    };
    let (images, metas) = fixture_images("tv_maskrcnn", &data);
    let r = Reference {
        out: fixture(out),
        fpn_keys: ["fpn_0", "fpn_1", "fpn_2", "fpn_3", "fpn_pool"],
        proposal_logits: false,
        label_offset: 1,
        anchor_tol: 0.0,
    };
    let dets = check_against(&det, images, &metas, &r);
    let hw = 96 * 128;
    for (i, d) in dets.iter().enumerate() {
        let pasted = r.out.data(&format!("det_masks_{i}")).expect("pasted");
        let binary = pasted.dtype() == DType::U8;
        let want = host(pasted);
        for (k, (m, b)) in d.masks.iter().zip(&d.boxes).enumerate() {
            let got = paste_mask_torchvision(m, d.mask_size, b, 96, 128);
            let want = &want[k * hw..(k + 1) * hw];
            if !binary {
                close(&got, want, 1e-4, "pasted mask");
                continue;
            }
            for (p, (g, w)) in got.iter().zip(want).enumerate() {
                if (g - 0.5).abs() > 1e-4 {
                    assert_eq!(f32::from(u8::from(*g > 0.5)), *w, "{file}: mask {k} px {p}");
                }
            }
            let sum: f32 = got.iter().sum();
            let sums = host(r.out.data(&format!("det_masks_soft_sum_{i}")).expect("sum"));
            assert!(
                (sum - sums[k]).abs() < 1e-3 * (1.0 + sums[k]),
                "{sum} vs {}",
                sums[k]
            );
        }
    }
}

#[test]
fn the_model_zoos_older_names_convert_to_the_same_tensors() {
    // maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth was saved by an older torchvision:
    // `backbone.fpn.inner_blocks.0.weight`, `rpn.head.conv.weight`,
    // `roi_heads.mask_head.mask_fcn1.weight` (the fixture script checks that torchvision loads
    // them into the same model).
    let mut legacy = fixture("tv_maskrcnn_tiny_legacy_names.pth");
    let mut current = fixture("tv_maskrcnn_tiny.pth");
    assert!(legacy.is_torchvision_detector());
    legacy.torchvision_detector_to_ours(5).expect("legacy");
    current.torchvision_detector_to_ours(5).expect("current");
    let names: Vec<String> = current.infos().into_iter().map(|t| t.name).collect();
    assert_eq!(legacy.len(), names.len());
    for name in &names {
        assert_eq!(
            host(legacy.data(name).expect("renamed")),
            host(current.data(name).expect("name")),
            "{name}"
        );
    }
}
