//! The necks against PyTorch: mmdetection's PAFPN, FPN_CARAFE, FPG and NAS-FPN re-created in
//! plain torch by tests/fixtures/weights/make_{pafpn,fpn_carafe,fpg,nasfpn}.py with random
//! weights, loaded from mmdetection-layout checkpoints (`neck.*` names as mmdetection's), and
//! compared level by level at 1e-4 (relative to `1 + |want|`): even and odd map sizes where the
//! neck takes them, and batch statistics (training-mode BN) for FPG and NAS-FPN.

mod common;

use seesaw_model::burn;
use seesaw_model::burn::tensor::{Device, Tensor};
use seesaw_model::detectors::{Detector, DetectorConfig};
use seesaw_model::layers::NormConfig;
use seesaw_model::necks::{Neck, NeckKind};

/// How far from PyTorch an output may be.
#[derive(Clone, Copy)]
enum Tol {
    /// `|got - want| / (1 + |want|) < 1e-4` everywhere.
    Elementwise,
    /// `|got - want| / max|want| < 1e-5` everywhere: for maps whose values reach the hundreds
    /// after many stacked cells, where float32 rounding of the large values alone exceeds 1e-4
    /// next to the small ones (a wrong op gives errors of the order of the scale).
    Scale,
}

/// Runs the neck on `{prefix}in0..3` and compares with `{prefix}out0..4`.
/// The tiny detector (backbone widths 8, 16, 32, 64: the fixtures' inputs) with the neck of
/// `edit`, its `neck.*` tensors loaded from `file`, every one of them used.
fn load(file: &str, device: &Device, edit: impl FnOnce(&mut DetectorConfig)) -> Detector {
    let mut cfg = common::tiny("ce");
    edit(&mut cfg);
    common::load_mmdet_part(&cfg, file, "neck.", device)
}

fn check(neck: &Neck, outputs: &str, prefix: &str, tol: Tol, device: &Device) {
    let out = common::fixture(outputs);
    let t = |name: &str| -> Tensor<4> {
        Tensor::from_data(out.data(name).expect("fixture tensor"), device)
    };
    let ins = (0..4).map(|i| t(&format!("{prefix}in{i}"))).collect();
    let outs = neck.forward(ins);
    assert_eq!(outs.len(), 5);
    for (i, o) in outs.into_iter().enumerate() {
        let want = t(&format!("{prefix}out{i}"));
        assert_eq!(o.dims(), want.dims(), "{prefix}out{i}");
        let g = o.into_data().try_to_vec::<f32>().expect("f32");
        let w = want.into_data().try_to_vec::<f32>().expect("f32");
        let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
        let (d, limit) = match tol {
            Tol::Elementwise => (
                g.iter()
                    .zip(&w)
                    .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
                    .fold(0f32, f32::max),
                1e-4,
            ),
            Tol::Scale => (
                g.iter()
                    .zip(&w)
                    .map(|(a, b)| (a - b).abs() / scale)
                    .fold(0f32, f32::max),
                1e-5,
            ),
        };
        assert!(d < limit, "{outputs} {prefix}out{i}: {d} (scale {scale})");
    }
}

#[test]
fn mmdet_pafpn_matches_pytorch_on_even_and_odd_sizes() {
    let device = Device::flex();
    let det = load("mmdet_pafpn.pth", &device, |c| {
        c.neck.kind = NeckKind::Pafpn
    });
    let fpn = det.neck.as_fpn().expect("an FPN");
    assert_eq!(fpn.downsample_convs.len(), 3);
    for prefix in ["", "odd_"] {
        check(
            &det.neck,
            "mmdet_pafpn_out.safetensors",
            prefix,
            Tol::Elementwise,
            &device,
        );
    }
}

#[test]
fn mmdet_fpn_carafe_matches_pytorch_on_even_and_odd_sizes() {
    let device = Device::flex();
    let det = load("mmdet_fpn_carafe.pth", &device, |c| {
        c.neck.kind = NeckKind::FpnCarafe
    });
    let Neck::FpnCarafe(n) = &det.neck else {
        panic!("FPN_CARAFE")
    };
    // Four laterals and an extra 3x3 stride-2 one; four CARAFE upsamplers.
    assert_eq!((n.lateral_convs.len(), n.upsample_modules.len()), (5, 4));
    // The odd sizes crop the upsampled maps (1x2 -> 2x4 to 2x3, 8x12 -> 16x24 to 15x23).
    for prefix in ["", "odd_"] {
        check(
            &det.neck,
            "mmdet_fpn_carafe_out.safetensors",
            prefix,
            Tol::Elementwise,
            &device,
        );
    }
}

fn fpg(c: &mut DetectorConfig) {
    c.neck.kind = NeckKind::Fpg;
    c.neck.inter_channels = 8;
    c.neck.norm = NormConfig::bn();
}

#[test]
fn mmdet_fpg_matches_pytorch_with_running_and_batch_statistics() {
    // The recipe's grid (9 bottom-up stacks, the triangular skips) at inter_channels 8.
    let device = Device::flex();
    let det = load("mmdet_fpg.pth", &device, fpg);
    check(
        &det.neck,
        "mmdet_fpg_out.safetensors",
        "",
        Tol::Elementwise,
        &device,
    );
    let device = Device::flex().autodiff();
    let det = load("mmdet_fpg.pth", &device, fpg);
    check(
        &det.neck,
        "mmdet_fpg_out.safetensors",
        "train_",
        Tol::Elementwise,
        &device,
    );
}

fn nas_fpn(c: &mut DetectorConfig) {
    c.neck.kind = NeckKind::NasFpn;
    c.neck.start_level = 1;
    c.neck.norm = NormConfig::bn();
}

#[test]
fn mmdet_nas_fpn_matches_pytorch_with_padded_pooling_and_batch_statistics() {
    // The recipe: 7 stacks from C3-C5. The odd set pools 15x23 maps to 8x12 and 4x6 through
    // mmcv's zero padding, and resizes 8x12 to 15x23. With the random running statistics the
    // values reach about 250 after the 7 stacks: compared against the scale.
    let device = Device::flex();
    let det = load("mmdet_nasfpn.pth", &device, nas_fpn);
    for prefix in ["", "odd_"] {
        check(
            &det.neck,
            "mmdet_nasfpn_out.safetensors",
            prefix,
            Tol::Scale,
            &device,
        );
    }
    let device = Device::flex().autodiff();
    let det = load("mmdet_nasfpn.pth", &device, nas_fpn);
    check(
        &det.neck,
        "mmdet_nasfpn_out.safetensors",
        "train_",
        Tol::Elementwise,
        &device,
    );
}

/// A change to a detector config.
type ConfigEdit = fn(&mut DetectorConfig);

/// A neck's first lateral conv weight, whose gradient shows the loss reached the neck.
fn first_lateral(neck: &Neck) -> burn::module::Param<Tensor<4>> {
    match neck {
        Neck::Fpn(n) => n.lateral_convs[0].weight.clone(),
        Neck::FpnCarafe(n) => n.lateral_convs[0].conv.weight.clone(),
        Neck::Fpg(n) => n.lateral_convs[0].weight.clone(),
        Neck::NasFpn(n) => n.lateral_convs[0].conv.weight.clone(),
    }
}

#[test]
fn every_neck_trains_under_every_roi_head_kind() {
    use rand::SeedableRng;
    use seesaw_model::heads::BoxLossKind;
    let device = Device::flex().autodiff();
    let (h, w) = (128usize, 128usize);
    let (metas, gts) = common::two_image_batch(h, w);
    let necks: [(&str, ConfigEdit); 4] = [
        ("pafpn", |c| c.neck.kind = NeckKind::Pafpn),
        ("fpn_carafe", |c| c.neck.kind = NeckKind::FpnCarafe),
        ("fpg", fpg),
        ("nas_fpn", |c| {
            nas_fpn(c);
            c.rpn.anchor_strides = vec![8.0, 16.0, 32.0, 64.0, 128.0];
            c.roi.strides = vec![8.0, 16.0, 32.0, 64.0];
        }),
    ];
    for (neck, edit) in necks {
        for detector in ["mask_rcnn", "cascade", "htc_lite"] {
            let mut cfg = common::tiny("seesaw");
            cfg.detector = detector.parse().expect("detector");
            if detector != "mask_rcnn" {
                cfg.bbox_head.class_agnostic = true;
                cfg.bbox_head.loss_bbox = BoxLossKind::SmoothL1;
            }
            edit(&mut cfg);
            let mut model = cfg.init(&device).expect("model");
            let images = Tensor::<4>::random(
                [2, 3, h, w],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            let parts = model
                .forward_train(
                    images,
                    &metas,
                    &gts,
                    &mut seesaw_model::structures::image_rngs(&mut rng, metas.len()),
                )
                .expect("train forward");
            let total = parts.total();
            let v = total.clone().into_data().try_to_vec::<f32>().expect("f32")[0];
            assert!(v.is_finite() && v > 0.0, "{neck} {detector}: {v}");
            let grads = total.backward();
            let g = first_lateral(&model.neck)
                .grad(&grads)
                .expect("the neck has a gradient");
            let g = g.abs().sum().into_data().try_to_vec::<f32>().expect("f32")[0];
            assert!(g.is_finite() && g > 0.0, "{neck} {detector}: |grad| {g}");
        }
    }
}
