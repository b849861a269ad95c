//! A detectron2 Mask R-CNN converted and run with detectron2's conventions, against a
//! plain-PyTorch re-creation of detectron2's inference: tests/fixtures/weights/
//! make_detectron2_maskrcnn.py builds its R50-FPN layout at tiny widths (bottlenecks with the
//! stride in the 1x1, frozen BN, BGR input), random weights, saves them as detectron2's model
//! zoo does (a pickle of numpy arrays) and as its training checkpoints do (`.pth`), and records
//! the forward on two PNG images: the FPN maps, the anchors, the RPN's proposals, the
//! detections, the mask probabilities ([`common::reference`] checks these) and the pasted
//! masks.

mod common;

use common::reference::{Reference, check_against, fixture_images, host};
use seesaw_data::DataConfig;
use seesaw_model::backbones::{BlockKind, ResNetConfig, ResNetStyle, StemKind};
use seesaw_model::burn::tensor::Device;
use seesaw_model::detectors::{Detector, DetectorConfig};
use seesaw_model::layers::NormConfig;
use seesaw_model::ops::mask_paste::paste_mask;
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

/// `file` converted into the fixture's detector (its BGR stem reversed for our RGB images).
fn converted(file: &str) -> Detector {
    let mut file = fixture(file);
    assert!(file.is_detectron2());
    let notes = file.detectron2_to_ours().expect("BGR stem");
    assert_eq!(notes.len(), 1, "{notes:?}");
    let mut det = d2_config().init(&Device::flex()).expect("model");
    let naming = Naming::detector(Layout::Detectron2, &det);
    let report = weights::load(&mut det, &file, &naming, false).expect("every tensor fits");
    assert!(report.is_complete(), "{report:?}");
    det
}

#[test]
fn a_detectron2_mask_rcnn_converts_and_matches_detectron2() {
    for file in ["d2_maskrcnn_tiny.pkl", "d2_maskrcnn_tiny.pth"] {
        let det = converted(file);
        // RGB with the mean in RGB order: the conversion reversed the stem's channels.
        let data = DataConfig {
            mean: [123.675, 116.28, 103.53],
            std: [1.0, 1.0, 1.0],
            test_scale: [96, 128],
            ..Default::default()
        };
        let (images, metas) = fixture_images("d2_maskrcnn", &data);
        let r = Reference {
            out: fixture("d2_maskrcnn_tiny_out.safetensors"),
            fpn_keys: ["fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6"],
            proposal_logits: true,
            label_offset: 0,
            anchor_tol: 1e-6,
        };
        let dets = check_against(&det, images, &metas, &r);
        // Pasted and binarised as detectron2 does (the grid-sample paste, >= 0.5).
        let hw = 96 * 128;
        for (i, d) in dets.iter().enumerate() {
            let want = host(r.out.data(&format!("det_masks_{i}")).expect("pasted"));
            for (k, (m, b)) in d.masks.iter().zip(&d.boxes).enumerate() {
                let wrong = paste_mask(m, d.mask_size, b, 96, 128, 0.5)
                    .into_iter()
                    .zip(&want[k * hw..(k + 1) * hw])
                    .filter(|(g, w)| f32::from(*g) != **w)
                    .count();
                assert_eq!(wrong, 0, "{file}: image {i} mask {k}");
            }
        }
    }
}

#[test]
fn pickles_that_are_not_float_weights_are_refused_by_name() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights/bad_pickles");
    for (file, want) in [
        (
            "int64_first.pkl",
            "`a.bias`: values that are not finite floats (an integer array?",
        ),
        (
            "int64_named.pkl",
            "`b.y`: an array of type i8; only float arrays",
        ),
        ("int32.pkl", "`a.bias`: values that are not finite floats"),
        ("big_endian.pkl", "`a.weight`: a big-endian array"),
        ("not_an_array.pkl", "`a.weight`: not a numpy array"),
        ("a_list.pkl", "the pickle is not a dict of arrays"),
        ("not_a_pickle.pkl", "not a readable pickle"),
        ("truncated.pkl", "not a readable pickle"),
    ] {
        let err = match WeightsFile::open(&dir.join(file)) {
            Ok(_) => panic!("{file} was read"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(file) && err.contains(want), "{file}: {err}");
    }
    let ok = WeightsFile::open(&dir.join("floats.pkl")).expect("float64 and float16 arrays");
    assert_eq!(host(ok.data("a.weight").expect("f64")), vec![0.5, -2.0]);
    assert_eq!(host(ok.data("a.bias").expect("f16")), vec![1.5]);
}
