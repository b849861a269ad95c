//! A detectron2 Mask R-CNN converted and run with detectron2's conventions, against a
//! plain-PyTorch re-creation of detectron2's inference: tests/fixtures/weights/
//! make_detectron2_maskrcnn.py builds its R50-FPN layout at tiny widths (bottlenecks with the
//! stride in the 1x1, frozen BN, BGR input), random weights, saves them as detectron2's model
//! zoo does (a pickle of numpy arrays) and as its training checkpoints do (`.pth`), and records
//! the forward on two PNG images: the FPN maps, the anchors, the RPN's proposals, the
//! detections, the mask probabilities and the pasted masks.

mod common;

use seesaw_data::DataConfig;
use seesaw_data::loading::load_image;
use seesaw_model::backbones::{BlockKind, ResNetConfig, ResNetStyle, StemKind};
use seesaw_model::burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::detectors::{Detector, DetectorConfig};
use seesaw_model::heads::rpn_head::level_anchors;
use seesaw_model::layers::NormConfig;
use seesaw_model::ops::mask_paste::paste_mask;
use seesaw_model::structures::ImageMeta;
use seesaw_model::weights::{self, Layout, Naming, WeightsFile};

/// The fixture's architecture with detectron2's conventions (the options of
/// configs/mask_rcnn_r50_fpn_detectron2_lvis.toml, at COCO-style test thresholds).
fn d2_config() -> DetectorConfig {
    let mut c = DetectorConfig {
        num_classes: 5,
        loss: "ce".parse().expect("loss"),
        with_mask: true,
        ..Default::default()
    };
    c.backbone = ResNetConfig {
        depth: 0,
        block: BlockKind::Bottleneck,
        layers: [1, 1, 1, 1],
        base_channels: 8,
        stem: StemKind::Torchvision,
        style: ResNetStyle::Caffe,
        frozen_stages: 0,
        norm: NormConfig::bn(),
        ..Default::default()
    };
    c.neck.out_channels = 16;
    c.roi.test.score_thr = 0.05;
    c.roi.test.max_per_img = 100;
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

/// The detector converted from `file` and the two images as our pipeline prepares them
/// (RGB, the mean in RGB order: the conversion reversed the stem's channels).
fn converted(file: &str) -> (Detector, Tensor<4>, Vec<ImageMeta>) {
    let device = Device::flex();
    let mut file = fixture(file);
    assert!(file.is_detectron2());
    let notes = file.detectron2_to_ours().expect("BGR stem");
    assert_eq!(notes.len(), 1, "{notes:?}");
    let mut det = d2_config().init(&device).expect("model");
    let naming = Naming::detector(Layout::Detectron2, &det);
    let report = weights::load(&mut det, &file, &naming, false).expect("every tensor fits");
    assert!(report.is_complete(), "{report:?}");
    let data = DataConfig {
        mean: [123.675, 116.28, 103.53],
        std: [1.0, 1.0, 1.0],
        test_scale: [96, 128],
        ..Default::default()
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights");
    let mut pixels = Vec::new();
    let mut metas = Vec::new();
    for i in 0..2 {
        let (p, mut meta) = load_image(
            &dir.join(format!("d2_maskrcnn_img{i}.png")),
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

#[test]
fn a_detectron2_mask_rcnn_converts_and_matches_detectron2() {
    for file in ["d2_maskrcnn_tiny.pkl", "d2_maskrcnn_tiny.pth"] {
        matches_detectron2(file);
    }
}

fn matches_detectron2(file: &str) {
    let out = fixture("d2_maskrcnn_tiny_out.safetensors");
    let (det, images, metas) = converted(file);
    let feats = det.features(images.clone());
    for (l, name) in ["fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6"]
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
    // ROIAlignV2 from levels 1-3 too (every proposal of these small images pools from
    // level 0).
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
        "ROIAlignV2",
    );
    // Anchors: mmdetection's (no rounding, fixed strides).
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
    // The RPN's proposals, in order, with their objectness (detectron2 keeps the logits).
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
        let want: Vec<f32> = host(out.data(&format!("proposal_logits_{i}")).expect("s"))
            .into_iter()
            .map(|l| 1.0 / (1.0 + (-l).exp()))
            .collect();
        close(&scores, &want, 1e-4, "proposal scores");
    }
    // Detections: detectron2's `pred_classes` are ours.
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
        let labels: Vec<i64> = d.labels.iter().map(|&l| l as i64).collect();
        assert_eq!(labels, ints(&out, &format!("det_labels_{i}")), "labels");
        let probs: Vec<f32> = d.masks.iter().flatten().copied().collect();
        close(
            &probs,
            &host(out.data(&format!("mask_probs_{i}")).expect("m")),
            1e-4,
            "mask probabilities",
        );
        // Pasted and binarised as detectron2 does (the grid-sample paste, >= 0.5).
        let want = host(out.data(&format!("det_masks_{i}")).expect("pasted"));
        let hw = 96 * 128;
        for (k, (m, b)) in d.masks.iter().zip(&d.boxes).enumerate() {
            let got: Vec<f32> = paste_mask(m, d.mask_size, b, 96, 128, 0.5)
                .into_iter()
                .map(f32::from)
                .collect();
            let wrong = got
                .iter()
                .zip(&want[k * hw..(k + 1) * hw])
                .filter(|(g, w)| g != w)
                .count();
            assert_eq!(wrong, 0, "{file}: image {i} mask {k}");
        }
    }
}
