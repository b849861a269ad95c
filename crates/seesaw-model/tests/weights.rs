//! PyTorch checkpoints in and out, against torch 2.15 / torchvision 0.29 (fixtures made by
//! tests/fixtures/weights/make_weights.py): a torchvision ResNet from `.pth` and
//! `.safetensors`, and mmdetection-layout Mask R-CNN (Seesaw head, normed mask), HTC and
//! HTC-Lite state dicts, each matched to PyTorch's outputs at 1e-4.

mod common;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::backbones::{BlockKind, ResNetConfig, StemKind};
use seesaw_model::burn;
use seesaw_model::detectors::{Detector, DetectorConfig};
use seesaw_model::weights::{self, Layout, Naming, WeightsFile};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name)
}

fn open(name: &str) -> WeightsFile {
    WeightsFile::open(&fixture(name)).expect("fixture opens")
}

fn tensor<const D: usize>(f: &WeightsFile, name: &str, device: &Device) -> Tensor<D> {
    Tensor::from_data(f.data(name).expect("fixture tensor"), device)
}

fn assert_close<const D: usize>(got: Tensor<D>, want: Tensor<D>, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32");
    let w = want
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32");
    let worst = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "{what}: worst relative difference {worst}");
}

/// The fixtures' backbone: torchvision bottlenecks [2, 1, 1, 1] at width 8, BN in eval mode.
fn small_resnet() -> ResNetConfig {
    ResNetConfig {
        depth: 0,
        block: BlockKind::Bottleneck,
        layers: [2, 1, 1, 1],
        base_channels: 8,
        stem: StemKind::Torchvision,
        frozen_stages: 1,
        norm_eval: true,
        ..Default::default()
    }
}

/// The fixtures' detectors: 5 classes, FPN 16, box fc 32, two 16-channel mask convs.
fn config(detector: &str) -> DetectorConfig {
    let mut c = common::tiny("seesaw");
    c.detector = detector.parse().expect("detector");
    c.backbone = small_resnet();
    c.mask_head.conv_channels = 16;
    c.mask_head.normed = detector == "mask_rcnn";
    c.bbox_head.class_agnostic = detector != "mask_rcnn";
    c
}

fn detector(detector: &str) -> (Detector, WeightsFile) {
    let device = Device::flex();
    let mut det = config(detector).init(&device).expect("config");
    let file = open(&format!("mmdet_{detector}.pth"));
    let naming = Naming::detector(Layout::Mmdet, &det);
    let report = weights::load(&mut det, &file, &naming, false).expect("loads");
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.loaded, file.len() - num_batches_tracked(&file));
    (det, file)
}

fn num_batches_tracked(f: &WeightsFile) -> usize {
    f.infos()
        .iter()
        .filter(|t| t.name.ends_with("num_batches_tracked"))
        .count()
}

fn check_resnet(file: &str) {
    let device = Device::flex();
    let mut net = small_resnet().init(&device).expect("config");
    let f = open(file);
    let report = weights::load_backbone(&mut net, &f, false).expect("loads");
    assert!(report.is_complete(), "{report:?}");
    let out = open("tv_resnet_out.safetensors");
    let outs = net.forward(tensor(&out, "input", &device));
    for (i, o) in outs.into_iter().enumerate() {
        let name = format!("c{}", i + 2);
        assert_close(o, tensor(&out, &name, &device), &format!("{file} {name}"));
    }
}

#[test]
fn torchvision_resnet_matches_pytorch_from_pth_and_safetensors() {
    check_resnet("tv_resnet.pth");
    check_resnet("tv_resnet.safetensors");
    let f = open("tv_resnet.pth");
    assert_eq!(f.top_level_key, None);
    // The ImageNet classifier and BN counters are read but not wanted.
    assert!(
        f.infos()
            .iter()
            .any(|t| t.name == "fc.weight" && t.shape == [10, 256])
    );
}

#[test]
fn half_precision_weights_load_as_float32() {
    let device = Device::flex();
    let mut net = small_resnet().init(&device).expect("config");
    let f = open("tv_resnet_half.pth");
    assert!(f.infos().iter().any(|t| t.dtype == "f16"));
    weights::load_backbone(&mut net, &f, false).expect("loads");
    assert_eq!(
        net.conv1.as_ref().expect("conv1").weight.val().dtype(),
        burn::tensor::DType::F32
    );
    let out = open("tv_resnet_out.safetensors");
    let got = net
        .forward(tensor(&out, "input", &device))
        .pop()
        .expect("c5");
    let want: Tensor<4> = tensor(&out, "c5", &device);
    // float16 rounding of the weights (relative 5e-4) is all that separates them.
    let diff: f32 = (got - want.clone()).abs().max().into_scalar();
    let scale: f32 = want.abs().max().into_scalar();
    assert!(diff < 1e-2 * scale, "{diff} vs {scale}");
}

#[test]
fn loading_keeps_frozen_stages_frozen() {
    let device = Device::flex().autodiff();
    let mut net = small_resnet().init(&device).expect("config");
    weights::load_backbone(&mut net, &open("tv_resnet.pth"), false).expect("loads");
    assert!(
        !net.conv1.as_ref().expect("conv1").weight.is_require_grad(),
        "stem stays frozen"
    );
    assert!(
        !net.layer1[0].conv1.weight.is_require_grad(),
        "stage 1 stays frozen"
    );
    assert!(
        net.layer2[0].conv1.weight.is_require_grad(),
        "stage 2 trains"
    );
}

#[test]
fn mmdet_mask_rcnn_seesaw_matches_pytorch() {
    let device = Device::flex();
    let (det, _) = detector("mask_rcnn");
    let out = open("mmdet_mask_rcnn_out.safetensors");
    let feats = det.features(tensor(&out, "input", &device));
    for (i, f) in feats.iter().enumerate() {
        let name = format!("p{}", i + 2);
        assert_close(f.clone(), tensor(&out, &name, &device), &name);
    }
    let rpn = det.rpn_head.forward(&feats);
    assert_close(rpn.cls, tensor(&out, "rpn_cls", &device), "rpn_cls");
    assert_close(rpn.reg, tensor(&out, "rpn_reg", &device), "rpn_reg");
    let (cls, reg) = det.roi_head.ops().bbox_heads()[0].forward(tensor(&out, "roi7", &device));
    assert_eq!(cls.dims(), [3, 5 + 2], "Seesaw's C + 2 classifier");
    assert_close(cls, tensor(&out, "cls0", &device), "fc_cls (NormedLinear)");
    assert_close(reg, tensor(&out, "reg0", &device), "fc_reg");
    let mask = det.roi_head.ops().mask_heads()[0].forward(tensor(&out, "roi14", &device));
    assert_close(
        mask,
        tensor(&out, "mask0", &device),
        "conv_logits (NormedConv2d)",
    );
}

#[test]
fn mmdet_htc_matches_pytorch_stage_by_stage() {
    let device = Device::flex();
    let (det, _) = detector("htc");
    let out = open("mmdet_htc_out.safetensors");
    let roi7 = tensor::<4>(&out, "roi7", &device);
    let roi14 = tensor::<4>(&out, "roi14", &device);
    let mut res = None;
    for s in 0..3 {
        let (cls, reg) = det.roi_head.ops().bbox_heads()[s].forward(roi7.clone());
        assert_close(cls, tensor(&out, &format!("cls{s}"), &device), "cls");
        assert_close(reg, tensor(&out, &format!("reg{s}"), &device), "reg");
        // Mask information flow: each head takes the previous head's features.
        let f = det.roi_head.ops().mask_heads()[s].features(roi14.clone(), res);
        let logits = det.roi_head.ops().mask_heads()[s].logits(f.clone());
        assert_close(logits, tensor(&out, &format!("mask{s}"), &device), "mask");
        res = Some(f);
    }
}

#[test]
fn mmdet_htc_lite_matches_pytorch_with_the_global_context_head() {
    let device = Device::flex();
    let (det, _) = detector("htc_lite");
    let out = open("mmdet_htc_lite_out.safetensors");
    let feats = det.features(tensor(&out, "input", &device));
    assert_close(feats[4].clone(), tensor(&out, "p6", &device), "p6");
    let glbctx = det
        .roi_head
        .ops()
        .glbctx_head()
        .expect("htc_lite has the context head");
    let (logits, feat) = glbctx.forward(feats[4].clone());
    assert_close(
        logits,
        tensor(&out, "glbctx_logits", &device),
        "glbctx logits",
    );
    assert_close(feat, tensor(&out, "glbctx_feat", &device), "glbctx feature");
    for s in 0..3 {
        let (cls, _) = det.roi_head.ops().bbox_heads()[s].forward(tensor(&out, "roi7", &device));
        assert_close(cls, tensor(&out, &format!("cls{s}"), &device), "cls");
    }
    let mask = det.roi_head.ops().mask_heads()[0].forward(tensor(&out, "roi14", &device));
    assert_close(mask, tensor(&out, "mask0", &device), "mask");
}

#[test]
fn mmdet_checkpoint_meta_gives_the_class_names() {
    let f = open("mmdet_mask_rcnn.pth");
    assert_eq!(f.top_level_key.as_deref(), Some("state_dict"));
    let names = f.mmdet_classes().expect("classes");
    assert_eq!(
        names,
        (0..5).map(|i| format!("class_{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn a_checkpoint_that_does_not_fit_is_refused_by_name_unless_partial() {
    let device = Device::flex();
    let file = open("mmdet_mask_rcnn.pth");
    // 3 classes instead of 5: the classifier, regressor and mask logits are mis-shaped.
    let mut c = config("mask_rcnn");
    c.num_classes = 3;
    let mut det = c.init(&device).expect("config");
    let naming = Naming::detector(Layout::Mmdet, &det);
    let err = weights::load(&mut det, &file, &naming, false)
        .expect_err("mis-shaped")
        .to_string();
    assert!(err.contains("mmdet_mask_rcnn.pth"), "{err}");
    assert!(
        err.contains("mis-shaped: roi_head.bbox_head.fc_cls.weight (model [5, 32], file [7, 32])"),
        "{err}"
    );
    assert!(
        err.contains("roi_head.mask_head.conv_logits.weight"),
        "{err}"
    );
    let before = det.roi_head.ops().bbox_heads()[0]
        .fc1
        .weight
        .val()
        .into_data();
    let report = weights::load(&mut det, &file, &naming, true).expect("partial loads");
    assert_eq!(report.mismatched.len(), 6, "{report:?}");
    assert_ne!(
        det.roi_head.ops().bbox_heads()[0]
            .fc1
            .weight
            .val()
            .into_data(),
        before,
        "the rest loads"
    );

    // An HTC checkpoint into Mask R-CNN: stage-indexed names are unexpected, ours missing.
    let mut det = config("mask_rcnn").init(&device).expect("config");
    let naming = Naming::detector(Layout::Mmdet, &det);
    let err = weights::load(&mut det, &open("mmdet_htc.pth"), &naming, false)
        .expect_err("wrong architecture")
        .to_string();
    assert!(
        err.contains("missing: roi_head.bbox_head.fc_cls.weight"),
        "{err}"
    );
    assert!(
        err.contains("unexpected: roi_head.bbox_head.0.fc_cls.weight"),
        "{err}"
    );

    // A torchvision file is not a detector.
    let err = weights::load(&mut det, &open("tv_resnet.pth"), &naming, false)
        .expect_err("backbone only")
        .to_string();
    assert!(err.contains("missing: backbone.conv1.weight"), "{err}");
    assert!(err.contains("unexpected: conv1.weight"), "{err}");
    assert!(WeightsFile::open(&fixture("nope.pth")).is_err());
    let garbage = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(garbage.path(), b"not a checkpoint").expect("write");
    let err = WeightsFile::open(garbage.path())
        .err()
        .expect("garbage")
        .to_string();
    assert!(err.contains(&garbage.path().display().to_string()), "{err}");
}

#[test]
fn export_uses_mmdet_names_and_loads_back() {
    let device = Device::flex();
    let (det, file) = detector("htc_lite");
    let tensors = weights::export(&det, &Naming::detector(Layout::Mmdet, &det)).expect("export");
    let mut exported: Vec<String> = tensors.iter().map(|(n, _)| n.clone()).collect();
    exported.sort();
    let mut want: Vec<String> = file
        .infos()
        .into_iter()
        .map(|t| t.name)
        .filter(|n| !n.ends_with("num_batches_tracked"))
        .collect();
    want.sort();
    assert_eq!(exported, want, "exported names are mmdetection's");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("htc_lite.safetensors");
    weights::write_safetensors(&path, tensors, Default::default()).expect("write");
    let back = WeightsFile::open(&path).expect("reads");
    for t in back.infos() {
        assert_eq!(
            back.data(&t.name).expect("exported"),
            file.data(&t.name).expect("original").convert::<f32>(),
            "{} survives the round trip",
            t.name
        );
    }
    let mut again = config("htc_lite").init(&device).expect("config");
    let naming = Naming::detector(Layout::Mmdet, &again);
    let report = weights::load(&mut again, &back, &naming, false).expect("loads back");
    assert!(report.is_complete());
    let x: Tensor<4> = Tensor::from_data(
        TensorData::new(vec![0.5f32; 16 * 7 * 7], [1, 16, 7, 7]),
        &device,
    );
    let (a, _) = det.roi_head.ops().bbox_heads()[2].forward(x.clone());
    let (b, _) = again.roi_head.ops().bbox_heads()[2].forward(x);
    assert_close(a, b, "reloaded head");
}
