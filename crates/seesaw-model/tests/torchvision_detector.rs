//! A torchvision Mask R-CNN converted and run with torchvision's conventions, against
//! torchvision itself: tests/fixtures/weights/make_torchvision_maskrcnn.py builds
//! `torchvision.models.detection.MaskRCNN` (maskrcnn_resnet50_fpn's classes and names, tiny
//! widths, random weights), saves its state dict as torchvision saves detection weights and
//! records its forward on two PNG images: the FPN maps, the anchors, the RPN's proposals, the
//! box head's outputs, the detections, the mask probabilities and the pasted masks.

mod common;

use seesaw_data::DataConfig;
use seesaw_data::loading::load_image;
use seesaw_data::transforms::ResizeKind;
use seesaw_model::backbones::{BlockKind, ResNetConfig, StemKind};
use seesaw_model::burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::detectors::{Detector, DetectorConfig};
use seesaw_model::heads::rpn_head::level_anchors;
use seesaw_model::layers::NormConfig;
use seesaw_model::ops::mask_paste::{MaskPaste, paste_mask_torchvision};
use seesaw_model::structures::ImageMeta;
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

fn host(d: TensorData) -> Vec<f32> {
    d.convert::<f32>().try_to_vec::<f32>().expect("f32")
}

fn ints(out: &WeightsFile, name: &str) -> Vec<i64> {
    out.data(name)
        .expect(name)
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("i64")
}

fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

/// The converted detector and the two images as torchvision's transform prepares them.
fn converted(file: &str, cfg: DetectorConfig) -> (Detector, Tensor<4>, Vec<ImageMeta>) {
    let device = Device::flex();
    let mut file = fixture(file);
    assert!(file.is_torchvision_detector());
    let notes = file.torchvision_detector_to_ours(5).expect("re-laid");
    assert_eq!(
        notes.len(),
        6,
        "cls_score, bbox_pred, mask_fcn_logits: {notes:?}"
    );
    let mut det = cfg.init(&device).expect("model");
    let naming = Naming::detector(Layout::Torchvision, &det);
    let report = weights::load(&mut det, &file, &naming, false).expect("every tensor fits");
    assert!(report.is_complete(), "{report:?}");
    let data = DataConfig {
        resize: ResizeKind::Torchvision,
        test_scale: [96, 128],
        ..Default::default()
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights");
    let mut pixels = Vec::new();
    let mut metas = Vec::new();
    for i in 0..2 {
        let (p, mut meta) = load_image(
            &dir.join(format!("tv_maskrcnn_img{i}.png")),
            [96, 128],
            false,
            &data,
        )
        .expect("image");
        assert_eq!(meta.img_shape, (96, 128), "no resize at this scale");
        meta.image_id = i as u64;
        pixels.extend(p);
        metas.push(meta);
    }
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [2, 3, 96, 128]), &device);
    (det, images, metas)
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

/// The converted `file` against torchvision's outputs `out`: FPN, anchors, proposals,
/// RoIAlign at levels 1-3, detections, mask probabilities, pasted masks (soft in v1's
/// fixture; binarised at > 0.5 in v2's, whose pixels within 1e-4 of 0.5 may go either way).
fn matches_torchvision(file: &str, out: &str, cfg: DetectorConfig) {
    let out = fixture(out);
    let (det, images, metas) = converted(file, cfg);
    let feats = det.features(images.clone());
    for (l, name) in ["fpn_0", "fpn_1", "fpn_2", "fpn_3", "fpn_pool"]
        .iter()
        .enumerate()
    {
        close(
            &host(feats[l].to_data()),
            &host(out.data(name).expect(name)),
            1e-4,
            name,
        );
    }
    // RoIAlign without the half-pixel shift, from levels 1-3 too (every proposal of these
    // small images pools from level 0); the last box's height is floored at one pixel.
    let extra: Vec<[f32; 5]> = host(out.data("extra_roi_boxes").expect("rois"))
        .chunks_exact(5)
        .map(|r| [r[0], r[1], r[2], r[3], r[4]])
        .collect();
    let levels: Vec<i64> = det
        .config()
        .roi
        .extractor(7)
        .map_roi_levels(&extra)
        .into_iter()
        .map(|l| l as i64)
        .collect();
    assert_eq!(levels, ints(&out, "extra_roi_levels"));
    let pooled = det.config().roi.pool(&feats, &extra, 7).expect("pool");
    close(
        &host(pooled.to_data()),
        &host(out.data("extra_roi_feats").expect("feats")),
        1e-4,
        "RoIAlign aligned=False",
    );
    // Anchors: rounded base anchors, P6's strides 96 // 2 = 48 down and 128 // 2 = 64 across.
    let sizes: Vec<(usize, usize)> = feats.iter().map(|f| (f.dims()[2], f.dims()[3])).collect();
    let (anchors, starts) = level_anchors(&det.config().rpn.anchor_generator(), &sizes);
    let per_level: Vec<i64> = starts.windows(2).map(|w| (w[1] - w[0]) as i64).collect();
    assert_eq!(per_level, ints(&out, "anchors_num_per_level"));
    let flat: Vec<f32> = anchors.iter().flatten().copied().collect();
    close(
        &flat,
        &host(out.data("anchors_0").expect("anchors")),
        0.0,
        "anchors",
    );
    // The RPN's proposals, in order, with their objectness.
    let proposals = det.proposals(&feats, &metas).expect("proposals");
    for (i, props) in proposals.iter().enumerate() {
        let boxes: Vec<f32> = props.iter().flat_map(|(b, _)| *b).collect();
        let scores: Vec<f32> = props.iter().map(|(_, s)| *s).collect();
        close(
            &boxes,
            &host(out.data(&format!("proposals_{i}")).expect("p")),
            1e-4,
            "proposals",
        );
        close(
            &scores,
            &host(out.data(&format!("proposal_scores_{i}")).expect("s")),
            1e-4,
            "proposal scores",
        );
    }
    // Detections: torchvision's label l is our class l - 1.
    let dets = det.predict(images, &metas).expect("predict");
    for (i, d) in dets.iter().enumerate() {
        let boxes: Vec<f32> = d.boxes.iter().flatten().copied().collect();
        close(
            &boxes,
            &host(out.data(&format!("det_boxes_{i}")).expect("b")),
            1e-4,
            "boxes",
        );
        close(
            &d.scores,
            &host(out.data(&format!("det_scores_{i}")).expect("s")),
            1e-4,
            "scores",
        );
        let labels: Vec<i64> = d.labels.iter().map(|&l| l as i64 + 1).collect();
        assert_eq!(labels, ints(&out, &format!("det_labels_{i}")), "labels");
        let probs: Vec<f32> = d.masks.iter().flatten().copied().collect();
        close(
            &probs,
            &host(out.data(&format!("mask_probs_{i}")).expect("m")),
            1e-4,
            "mask probabilities",
        );
        // Pasted as torchvision pastes them.
        let pasted = out.data(&format!("det_masks_{i}")).expect("pasted");
        let binary = pasted.dtype() == seesaw_model::burn::tensor::DType::U8;
        let want = host(pasted);
        let hw = 96 * 128;
        for (k, (m, b)) in d.masks.iter().zip(&d.boxes).enumerate() {
            let got = paste_mask_torchvision(m, d.mask_size, b, 96, 128);
            let want = &want[k * hw..(k + 1) * hw];
            if binary {
                for (p, (g, w)) in got.iter().zip(want).enumerate() {
                    if (g - 0.5).abs() > 1e-4 {
                        assert_eq!(f32::from(u8::from(*g > 0.5)), *w, "{file}: mask {k} px {p}");
                    }
                }
                let sum: f32 = got.iter().sum();
                let want_sum = host(out.data(&format!("det_masks_soft_sum_{i}")).expect("sum"))[k];
                assert!(
                    (sum - want_sum).abs() < 1e-3 * (1.0 + want_sum),
                    "{sum} vs {want_sum}"
                );
            } else {
                close(&got, want, 1e-4, "pasted mask");
            }
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
