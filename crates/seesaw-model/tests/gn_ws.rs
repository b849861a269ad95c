//! Group norm and weight standardisation everywhere, against PyTorch at 1e-4: mmdetection's
//! `configs/gn+ws/mask-rcnn_r50_fpn_gn-ws-all_2x_coco.py` shrunk (ConvWS + GN in the ResNet,
//! the FPN's ConvModules, the Shared4Conv1FC box head and the mask head's convs), re-created in
//! plain torch by tests/fixtures/weights/make_gn_ws.py and loaded from an mmdetection-layout
//! checkpoint (`gn1`, `lateral_convs.0.gn`, `shared_convs.0.gn`, `convs.0.gn`).

mod common;
use common::max_rel_diff;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor};
use seesaw_model::backbones::{BlockKind, ResNetConfig, StemKind};
use seesaw_model::detectors::DetectorConfig;
use seesaw_model::layers::{ConvKind, NormConfig, NormKind};
use seesaw_model::weights::{self, Layout, Naming, WeightsFile};

fn open(name: &str) -> WeightsFile {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name);
    WeightsFile::open(&path).expect("fixture opens")
}

/// The fixture's detector: GN with 4 groups (the widths are small) and ConvWS in every part.
fn config() -> DetectorConfig {
    let gn = NormConfig {
        kind: NormKind::Gn,
        num_groups: 4,
        ..Default::default()
    };
    let mut c = common::tiny("ce");
    c.backbone = ResNetConfig {
        depth: 0,
        block: BlockKind::Bottleneck,
        layers: [2, 1, 1, 1],
        base_channels: 8,
        stem: StemKind::Torchvision,
        frozen_stages: 1,
        norm: gn.clone(),
        conv: ConvKind::Ws,
        ..Default::default()
    };
    c.neck.out_channels = 16;
    c.neck.num_outs = 5;
    c.neck.norm = gn.clone();
    c.neck.conv = ConvKind::Ws;
    c.bbox_head.num_shared_convs = 4;
    c.bbox_head.conv_out_channels = 16;
    c.bbox_head.num_shared_fcs = 1;
    c.bbox_head.fc_channels = 32;
    c.bbox_head.norm = gn.clone();
    c.bbox_head.conv = ConvKind::Ws;
    c.mask_head.num_convs = 2;
    c.mask_head.conv_channels = 16;
    c.mask_head.norm = gn;
    c.mask_head.conv = ConvKind::Ws;
    c
}

#[test]
fn mmdet_gn_ws_all_matches_pytorch_part_by_part() {
    let device = Device::flex();
    let mut det = config().init(&device).expect("config");
    let file = open("mmdet_gn_ws.pth");
    let naming = Naming::detector(Layout::Mmdet, &det);
    // The fixture has no RPN: everything else must be found, named as mmdetection names it.
    let report = weights::load(&mut det, &file, &naming, true).expect("loads");
    assert!(report.unexpected.is_empty(), "{report:?}");
    assert!(report.mismatched.is_empty(), "{report:?}");
    assert!(
        report.missing.iter().all(|n| n.starts_with("rpn_head.")),
        "{report:?}"
    );
    let out = open("mmdet_gn_ws_out.safetensors");
    let t = |name: &str| -> Tensor<4> {
        Tensor::from_data(out.data(name).expect("fixture output"), &device)
    };
    let feats = det.backbone.forward(t("input"));
    for (i, f) in feats.iter().enumerate() {
        let name = format!("c{}", i + 2);
        let d = max_rel_diff(f.clone(), t(&name));
        assert!(d < 1e-4, "{name}: {d}");
    }
    for (i, p) in det.neck.forward(feats).into_iter().enumerate() {
        let name = format!("p{}", i + 2);
        let d = max_rel_diff(p, t(&name));
        assert!(d < 1e-4, "{name}: {d}");
    }
    let ops = det.roi_head.ops();
    let (cls, reg) = ops.bbox_heads()[0].forward(t("bbox_in"));
    let want = |name: &str| -> Tensor<2> {
        Tensor::from_data(out.data(name).expect("fixture output"), &device)
    };
    assert!(max_rel_diff(cls, want("cls_score")) < 1e-4, "cls_score");
    assert!(max_rel_diff(reg, want("bbox_pred")) < 1e-4, "bbox_pred");
    let masks = ops.mask_heads()[0].forward(t("mask_in"));
    assert!(max_rel_diff(masks, t("mask_pred")) < 1e-4, "mask_pred");
}

#[test]
fn group_counts_that_do_not_divide_are_errors_naming_the_field() {
    let device = Device::flex();
    let mut c = config();
    c.neck.norm.num_groups = 5;
    let err = c.init(&device).expect_err("refused").to_string();
    assert!(err.contains("model.neck.norm.num_groups"), "{err}");
    let mut c = config();
    c.backbone.norm.num_groups = 3;
    let err = c.init(&device).expect_err("refused").to_string();
    assert!(err.contains("model.backbone.norm.num_groups"), "{err}");
    // mmcv refuses ConvWS with DCN.
    let mut c = config();
    c.backbone.dcn.kind = seesaw_model::backbones::DcnKind::Dcnv2;
    let err = c.init(&device).expect_err("refused").to_string();
    assert!(err.contains("model.backbone.conv"), "{err}");
}
