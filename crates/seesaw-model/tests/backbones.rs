//! The ResNet family against PyTorch at 1e-4, from checkpoints in each source's names (fixtures
//! made by tests/fixtures/weights/make_backbones.py with torch 2.15, torchvision 0.29.2 and timm
//! 1.0.31): torchvision's ResNeXt, timm's ResNeSt (deep stem, average-pool shortcuts, split
//! attention, `avd` pooling on odd map sizes), and mmdetection's ResNeSt and ResNeXt with DCNv2
//! in stages c3-c5 (the latter with two deform groups), and mmdetection's ResNet with GCNet's
//! context blocks; mmcv's generalized attention.

mod common;
use common::max_rel_diff;
use std::path::PathBuf;

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};
use seesaw_model::backbones::{
    BackboneKind, DcnConfig, DcnKind, PluginConfig, PluginKind, PluginPosition, ResNetConfig,
    StemKind,
};
use seesaw_model::layers::{GeneralizedAttention, GeneralizedAttentionConfig};
use seesaw_model::weights::{self, Layout, Naming, WeightsFile};

fn open(name: &str) -> WeightsFile {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name);
    WeightsFile::open(&path).expect("fixture opens")
}

/// Loads `file` into the backbone `cfg` builds and compares the four stage outputs.
fn check(cfg: ResNetConfig, file: &str, outputs: &str) {
    let device = Device::flex();
    let mut net = cfg.init(&device).expect("config");
    let report = weights::load_backbone(&mut net, &open(file), false).expect("loads");
    assert!(report.is_complete(), "{file}: {report:?}");
    let out = open(outputs);
    let input = Tensor::<4>::from_data(out.data("input").expect("input"), &device);
    for (i, got) in net.forward(input).into_iter().enumerate() {
        let name = format!("c{}", i + 2);
        let want = Tensor::<4>::from_data(out.data(&name).expect("stage"), &device);
        let d = max_rel_diff(got, want);
        assert!(d < 1e-4, "{file} {name}: worst relative difference {d}");
    }
}

/// The fixtures' widths: stage planes 8, 16, 32, 64; blocks [2, 1, 1, 1]; BN in eval mode.
fn small(kind: BackboneKind) -> ResNetConfig {
    ResNetConfig {
        kind,
        depth: 0,
        layers: [2, 1, 1, 1],
        base_channels: 8,
        frozen_stages: 0,
        norm_eval: true,
        ..Default::default()
    }
}

fn resnext() -> ResNetConfig {
    // torchvision's width_per_group 32 at its hard-coded 64 base is mmdetection's base_width 4
    // at base_channels 8: 3x3 widths 16, 32, 64, 128 in 4 groups.
    ResNetConfig {
        groups: 4,
        base_width: 4,
        ..small(BackboneKind::Resnext)
    }
}

fn resnest() -> ResNetConfig {
    ResNetConfig {
        stem_channels: 8,
        ..small(BackboneKind::Resnest)
    }
}

#[test]
fn torchvision_resnext_matches_pytorch() {
    check(resnext(), "tv_resnext.pth", "tv_resnext_out.safetensors");
}

#[test]
fn timm_resnest_matches_pytorch() {
    let cfg = resnest();
    let r = cfg.resolved().expect("resolves");
    assert_eq!((r.stem, r.avg_down), (StemKind::Deep, true));
    check(cfg, "timm_resnest.pth", "timm_resnest_out.safetensors");
}

#[test]
fn mmdet_resnest_with_dcnv2_matches_pytorch() {
    let cfg = ResNetConfig {
        dcn: DcnConfig {
            kind: DcnKind::Dcnv2,
            ..Default::default()
        },
        ..resnest()
    };
    check(
        cfg,
        "mmdet_resnest_dcn.pth",
        "mmdet_resnest_dcn_out.safetensors",
    );
}

#[test]
fn mmdet_resnext_with_dcnv2_and_two_deform_groups_matches_pytorch() {
    let cfg = ResNetConfig {
        dcn: DcnConfig {
            kind: DcnKind::Dcnv2,
            deform_groups: 2,
            ..Default::default()
        },
        ..resnext()
    };
    check(
        cfg,
        "mmdet_resnext_dcn.pth",
        "mmdet_resnext_dcn_out.safetensors",
    );
}

#[test]
fn a_checkpoint_of_another_member_is_refused_by_name() {
    // timm's ResNeSt does not fit a ResNeXt: the deep stem's names are missing from ours.
    let device = Device::flex();
    let mut net = resnext().init(&device).expect("config");
    let err = weights::load_backbone(&mut net, &open("timm_resnest.pth"), false)
        .expect_err("does not fit");
    let msg = err.to_string();
    assert!(msg.contains("unexpected: conv1.0.weight"), "{msg}");
    assert!(msg.contains("missing: conv1.weight"), "{msg}");
}

#[test]
fn settings_of_another_member_are_errors_naming_the_field() {
    let device = Device::flex();
    for (cfg, field) in [
        (
            ResNetConfig {
                groups: 32,
                ..Default::default()
            },
            "model.backbone.groups",
        ),
        (
            ResNetConfig {
                radix: 4,
                ..Default::default()
            },
            "model.backbone.radix",
        ),
        (
            ResNetConfig {
                depth: 200,
                ..Default::default()
            },
            "model.backbone.depth",
        ),
    ] {
        let err = cfg.init(&device).expect_err("refused").to_string();
        assert!(err.starts_with(field), "{err}");
    }
    // ResNeSt-200 and -269 exist.
    for depth in [200, 269] {
        let cfg = ResNetConfig {
            kind: BackboneKind::Resnest,
            depth,
            ..Default::default()
        };
        assert_eq!(
            cfg.out_channels().expect("resolves"),
            [256, 512, 1024, 2048]
        );
    }
}

#[test]
fn imagenet_weights_fill_a_dcn_backbone_whose_offsets_start_at_zero() {
    // timm's ResNeSt has no conv_offset: as mmdetection's non-strict init, those stay zero and
    // the network computes what the plain one does with every mask 0.5 in c3-c5.
    let device = Device::flex();
    let cfg = ResNetConfig {
        dcn: DcnConfig {
            kind: DcnKind::Dcnv2,
            ..Default::default()
        },
        ..resnest()
    };
    let mut net = cfg.init(&device).expect("config");
    let report = weights::load_backbone(&mut net, &open("timm_resnest.pth"), false)
        .expect("offsets may be missing");
    assert!(report.is_complete(), "{report:?}");
    // Stages 2-4 have one block each: two offset tensors (weight, bias) per block.
    assert_eq!(report.initialised.len(), 6, "{report:?}");
    assert!(
        report
            .initialised
            .iter()
            .all(|n| n.starts_with("layer") && n.contains("conv2.conv.conv_offset.")),
        "{report:?}"
    );
    let out = open("timm_resnest_out.safetensors");
    let input = Tensor::<4>::from_data(out.data("input").expect("input"), &device);
    let outs = net.forward(input);
    // Stage 1 has no DCN: it matches timm exactly.
    let c2 = Tensor::<4>::from_data(out.data("c2").expect("c2"), &device);
    assert!(max_rel_diff(outs[0].clone(), c2) < 1e-4);
}

#[test]
fn a_detector_exports_the_backbone_in_mmdetection_names_and_loads_back() {
    // The whole-detector naming (`seesaw weights convert/export --to mmdet`) gives the
    // backbone exactly the names of mmdetection's ResNeSt + DCNv2 checkpoint.
    let device = Device::flex();
    let mut cfg = common::tiny("seesaw");
    cfg.backbone = ResNetConfig {
        dcn: DcnConfig {
            kind: DcnKind::Dcnv2,
            ..Default::default()
        },
        ..resnest()
    };
    let mut det = cfg.init(&device).expect("config");
    let file = open("mmdet_resnest_dcn.pth");
    weights::load_backbone(&mut det.backbone, &file, false).expect("backbone loads");
    let naming = Naming::detector(Layout::Mmdet, &det);
    let tensors = weights::export(&det, &naming).expect("export");
    let mut exported: Vec<String> = tensors
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| n.starts_with("backbone."))
        .collect();
    exported.sort();
    let mut want: Vec<String> = file
        .infos()
        .into_iter()
        .map(|t| t.name)
        .filter(|n| !n.ends_with("num_batches_tracked"))
        .collect();
    want.sort();
    assert_eq!(exported, want);
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("det.safetensors");
    weights::write_safetensors(&path, tensors, Default::default()).expect("write");
    let mut again = cfg.init(&device).expect("config");
    let report = weights::load(
        &mut again,
        &WeightsFile::open(&path).expect("reads"),
        &naming,
        false,
    )
    .expect("loads back");
    assert!(report.is_complete(), "{report:?}");
    let out = open("mmdet_resnest_dcn_out.safetensors");
    let input = Tensor::<4>::from_data(out.data("input").expect("input"), &device);
    let c5 = again.backbone.forward(input).pop().expect("c5");
    let want = Tensor::<4>::from_data(out.data("c5").expect("c5"), &device);
    assert!(max_rel_diff(c5, want) < 1e-4);
}

#[test]
fn mmdet_gcnet_context_blocks_match_pytorch() {
    // mmdetection's ResNet with plugins=[dict(cfg=dict(type='ContextBlock', ratio=1/4),
    // stages=(False, True, True, True), position='after_conv3')].
    let cfg = ResNetConfig {
        plugins: vec![PluginConfig {
            stages: [false, true, true, true],
            ..Default::default()
        }],
        ..small(BackboneKind::Resnet)
    };
    check(
        cfg,
        "mmdet_resnet_gcb.pth",
        "mmdet_resnet_gcb_out.safetensors",
    );
}

/// mmcv's `GeneralizedAttention` (32 channels, 4 heads, kv_stride 2) with every parameter
/// random, on a [2, 32, 9, 11] input, from make_generalized_attention.py (checked there against
/// mmcv's own file).
fn generalized_attention(kind: &str) -> (GeneralizedAttention, Tensor<4>, Tensor<4>) {
    let device = Device::flex();
    let f = open("generalized_attention.safetensors");
    let mut cfg = GeneralizedAttentionConfig::new(32);
    cfg.num_heads = 4;
    cfg.attention_type = kind.into();
    let mut ga = cfg.init(&device).expect("config");
    let pre = format!("t{kind}.");
    let data = |name: &str| f.data(&format!("{pre}{name}")).expect("fixture tensor");
    let conv = |c: &mut Option<Conv2d>, name: &str| {
        if let Some(c) = c {
            c.weight = Param::from_tensor(Tensor::from_data(data(name), &device));
        }
    };
    conv(&mut ga.query_conv, "query_conv.weight");
    conv(&mut ga.key_conv, "key_conv.weight");
    let mut value = Some(ga.value_conv.clone());
    conv(&mut value, "value_conv.weight");
    ga.value_conv = value.expect("value");
    let mut proj = Some(ga.proj_conv.clone());
    conv(&mut proj, "proj_conv.weight");
    ga.proj_conv = proj.expect("proj");
    ga.proj_conv.bias = Some(Param::from_tensor(Tensor::from_data(
        data("proj_conv.bias"),
        &device,
    )));
    // PyTorch's Linear weight is [out, in]; burn's [in, out].
    for (fc, name) in [
        (&mut ga.appr_geom_fc_x, "appr_geom_fc_x.weight"),
        (&mut ga.appr_geom_fc_y, "appr_geom_fc_y.weight"),
    ] {
        if let Some(fc) = fc {
            let w: Tensor<2> = Tensor::from_data(data(name), &device);
            fc.weight = Param::from_tensor(w.transpose());
        }
    }
    for (b, name) in [
        (&mut ga.appr_bias, "appr_bias"),
        (&mut ga.geom_bias, "geom_bias"),
    ] {
        if let Some(b) = b {
            *b = Param::from_tensor(Tensor::from_data(data(name), &device));
        }
    }
    ga.gamma = Param::from_tensor(Tensor::from_data(data("gamma"), &device));
    let input = Tensor::from_data(data("input"), &device);
    let output = Tensor::from_data(data("output"), &device);
    (ga, input, output)
}

#[test]
fn generalized_attention_matches_mmcv_for_1111_and_0010() {
    for kind in ["1111", "0010"] {
        let (ga, input, want) = generalized_attention(kind);
        let d = max_rel_diff(ga.forward(input), want);
        assert!(d < 1e-4, "{kind}: worst relative difference {d}");
    }
}

#[test]
fn generalized_attention_sits_after_conv2_under_mmdetection_names() {
    // mmdetection's configs/empirical_attention: stages c4-c5, after conv2, 8 heads.
    let device = Device::flex();
    let cfg = ResNetConfig {
        plugins: vec![PluginConfig {
            kind: PluginKind::GeneralizedAttention,
            num_heads: 8,
            attention_type: "0010".into(),
            stages: [false, false, true, true],
            position: PluginPosition::AfterConv2,
            ..Default::default()
        }],
        ..small(BackboneKind::Resnet)
    };
    let net = cfg.init(&device).expect("config");
    assert!(net.layer2[0].gen_attention_block.is_none());
    let ga = net.layer3[0]
        .gen_attention_block
        .as_ref()
        .expect("c4 has it");
    // The block's 3x3 width (32 at stage 3 of the small net).
    assert_eq!(ga.value_conv.weight.dims(), [32, 32, 1, 1]);
    let names: Vec<String> = weights::export(&net, &Naming::backbone(Layout::Mmdet, &net))
        .expect("export")
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("layer3.0.gen_attention_block."))
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        [
            "layer3.0.gen_attention_block.appr_bias",
            "layer3.0.gen_attention_block.gamma",
            "layer3.0.gen_attention_block.key_conv.weight",
            "layer3.0.gen_attention_block.proj_conv.bias",
            "layer3.0.gen_attention_block.proj_conv.weight",
            "layer3.0.gen_attention_block.value_conv.weight",
        ]
    );
    let x = Tensor::<4>::zeros([1, 3, 64, 96], &device);
    assert_eq!(net.forward(x)[3].dims(), [1, 256, 2, 3]);
    // Two plugins at one position, or two of a kind in a stage, are refused by name.
    let twice = ResNetConfig {
        plugins: vec![cfg.plugins[0].clone(), cfg.plugins[0].clone()],
        ..cfg.clone()
    };
    let err = twice.init(&device).expect_err("refused").to_string();
    assert!(err.contains("model.backbone.plugins[1]"), "{err}");
}
