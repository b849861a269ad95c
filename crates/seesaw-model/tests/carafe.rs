//! CARAFE against a re-creation of mmcv's `CARAFEPack` (tests/fixtures/weights/make_carafe.py,
//! checked there against the indexing of mmcv's naive kernel): forward output and the gradients
//! of the input and every parameter, for one and two groups; and the mask head's CARAFE
//! upsampler under mmdetection's names.

mod common;
use std::path::PathBuf;

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use seesaw_model::heads::mask_head::{UpsampleConfig, UpsampleKind};
use seesaw_model::layers::CarafePackConfig;
use seesaw_model::weights::{self, Layout, Naming, WeightsFile};

fn open(name: &str) -> WeightsFile {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name);
    WeightsFile::open(&path).expect("fixture opens")
}

fn close<const D: usize>(what: &str, got: Tensor<D>, want: Tensor<D>) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got.into_data().try_to_vec::<f32>().expect("f32");
    let w = want.into_data().try_to_vec::<f32>().expect("f32");
    let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
    let worst = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-4 * scale, "{what}: {worst} (scale {scale})");
}

#[test]
fn carafe_pack_matches_mmcv_forward_and_gradients() {
    let device = Device::flex().autodiff();
    let f = open("carafe.safetensors");
    for (prefix, groups) in [("", 1), ("g2.", 2)] {
        let t4 = |name: &str| -> Tensor<4> {
            Tensor::from_data(f.data(&format!("{prefix}{name}")).expect("tensor"), &device)
        };
        let t1 = |name: &str| -> Tensor<1> {
            Tensor::from_data(f.data(&format!("{prefix}{name}")).expect("tensor"), &device)
        };
        let mut cfg = CarafePackConfig::new(16, 2);
        cfg.up_group = groups;
        cfg.compressed_channels = 8;
        let mut layer = cfg.init(&device).expect("config");
        layer.channel_compressor.weight = Param::from_tensor(t4("channel_compressor.weight"));
        layer.channel_compressor.bias = Some(Param::from_tensor(t1("channel_compressor.bias")));
        layer.content_encoder.weight = Param::from_tensor(t4("content_encoder.weight"));
        layer.content_encoder.bias = Some(Param::from_tensor(t1("content_encoder.bias")));
        let x = t4("input").require_grad();
        let y = layer.forward(x.clone());
        close(&format!("{prefix}output"), y.clone(), t4("output"));
        let grads = (y * t4("grad_output")).sum().backward();
        close(
            &format!("{prefix}grad_input"),
            x.grad(&grads).expect("grad"),
            t4("grad_input"),
        );
        for (name, got) in [
            (
                "channel_compressor.weight",
                layer.channel_compressor.weight.grad(&grads),
            ),
            (
                "content_encoder.weight",
                layer.content_encoder.weight.grad(&grads),
            ),
        ] {
            close(
                &format!("{prefix}grad.{name}"),
                got.expect("grad"),
                t4(&format!("grad.{name}")),
            );
        }
        let cb = layer.content_encoder.bias.as_ref().expect("bias");
        close(
            &format!("{prefix}grad.content_encoder.bias"),
            cb.grad(&grads).expect("grad"),
            t1("grad.content_encoder.bias"),
        );
    }
}

#[test]
fn the_mask_head_upsamples_with_carafe_under_mmdetection_names() {
    let device = Device::flex();
    let mut cfg = common::tiny("ce");
    cfg.mask_head.upsample = UpsampleConfig {
        kind: UpsampleKind::Carafe,
        compressed_channels: 4,
        ..Default::default()
    };
    let det = cfg.init(&device).expect("config");
    let head = &det.roi_head.ops().mask_heads()[0];
    assert!(head.upsample.is_none());
    let x = Tensor::<4>::ones([3, 16, 14, 14], &device);
    assert_eq!(head.forward(x).dims(), [3, 5, 28, 28]);
    let names: Vec<String> = weights::export(&det, &Naming::detector(Layout::Mmdet, &det))
        .expect("export")
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.contains("mask_head.upsample"))
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        [
            "roi_head.mask_head.upsample.channel_compressor.bias",
            "roi_head.mask_head.upsample.channel_compressor.weight",
            "roi_head.mask_head.upsample.content_encoder.bias",
            "roi_head.mask_head.upsample.content_encoder.weight",
        ]
    );
    // An even window is refused by name.
    let mut bad = common::tiny("ce");
    bad.mask_head.upsample.kind = UpsampleKind::Carafe;
    bad.mask_head.upsample.up_kernel = 4;
    let err = bad.init(&device).expect_err("refused").to_string();
    assert!(err.contains("model.mask_head.upsample"), "{err}");
}
