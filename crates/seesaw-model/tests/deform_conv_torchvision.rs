//! Deformable convolution (DCNv2 and DCNv1) against `torchvision.ops.deform_conv2d` 0.29.2:
//! the forward output and the gradients of input, offset, mask, weight and bias, on cases with
//! groups, deform groups, dilation, strides and offsets that sample outside the map, made by
//! tests/fixtures/ops/make_deform_conv.py.

use burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::layers::DeformConv2dConfig;
use seesaw_model::ops::deform_conv::{DeformConvOptions, deform_conv2d};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn pair(v: &Value) -> [usize; 2] {
    let v: Vec<usize> = v
        .as_array()
        .expect("pair")
        .iter()
        .map(|x| x.as_u64().expect("int") as usize)
        .collect();
    [v[0], v[1]]
}

fn tensor<const D: usize>(case: &Value, key: &str, device: &Device) -> Option<Tensor<D>> {
    if case[key].is_null() {
        return None;
    }
    let shape: Vec<usize> = case[format!("{key}_shape")]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|x| x.as_u64().expect("dim") as usize)
                .collect()
        })
        .unwrap_or_else(|| vec![floats(&case[key]).len()]);
    let t = Tensor::from_data(TensorData::new(floats(&case[key]), shape), device);
    Some(t.require_grad())
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32")
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f32, |m, w| m.max(w.abs()));
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * scale,
            "{what}[{k}]: {g} vs {w} (scale {scale})"
        );
    }
}

fn fixture() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ops/deform_conv.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

#[test]
fn deform_conv2d_matches_torchvision_forward_and_every_gradient() {
    let f = fixture();
    let device = Device::flex().autodiff();
    let cases = f["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let x: Tensor<4> = tensor(case, "input", &device).expect("input");
        let weight: Tensor<4> = tensor(case, "weight", &device).expect("weight");
        let offset: Tensor<4> = tensor(case, "offset", &device).expect("offset");
        let mask: Option<Tensor<4>> = tensor(case, "mask", &device);
        let bias: Option<Tensor<1>> = tensor(case, "bias", &device);
        let opts = DeformConvOptions {
            stride: pair(&case["stride"]),
            padding: pair(&case["padding"]),
            dilation: pair(&case["dilation"]),
            groups: case["groups"].as_u64().expect("groups") as usize,
            deform_groups: case["deform_groups"].as_u64().expect("dg") as usize,
        };
        let y = deform_conv2d(
            x.clone(),
            offset.clone(),
            mask.clone(),
            weight.clone(),
            bias.clone(),
            &opts,
        )
        .expect("shapes fit");
        let dims = y.dims();
        close(
            &format!("{name} output"),
            &values(y.clone()),
            &floats(&case["output"]),
        );
        let gy =
            Tensor::<4>::from_data(TensorData::new(floats(&case["grad_output"]), dims), &device);
        let grads = (y * gy).sum().backward();
        let check = |what: &str, got: Option<Vec<f32>>| {
            let want = &case[format!("grad_{what}")];
            match got {
                Some(g) => close(&format!("{name} grad_{what}"), &g, &floats(want)),
                None => assert!(want.is_null(), "{name}: grad_{what} expected"),
            }
        };
        check("input", x.grad(&grads).map(values));
        check("offset", offset.grad(&grads).map(values));
        check("weight", weight.grad(&grads).map(values));
        check("mask", mask.and_then(|m| m.grad(&grads)).map(values));
        check("bias", bias.and_then(|b| b.grad(&grads)).map(values));
    }
}

#[test]
fn shapes_that_do_not_fit_are_errors() {
    let device = Device::flex();
    let x = Tensor::<4>::zeros([1, 4, 5, 5], &device);
    let w = Tensor::<4>::zeros([2, 4, 3, 3], &device);
    let opts = DeformConvOptions {
        padding: [1, 1],
        ..Default::default()
    };
    // 9 taps need 18 offset channels.
    let bad = Tensor::<4>::zeros([1, 16, 5, 5], &device);
    let err = deform_conv2d(x.clone(), bad, None, w.clone(), None, &opts).unwrap_err();
    assert!(err.to_string().contains("offset is [1, 16, 5, 5]"), "{err}");
    // Groups must divide the channels.
    let groups = DeformConvOptions { groups: 3, ..opts };
    let off = Tensor::<4>::zeros([1, 18, 5, 5], &device);
    assert!(deform_conv2d(x.clone(), off.clone(), None, w.clone(), None, &groups).is_err());
    // A kernel larger than the padded map.
    let big = Tensor::<4>::zeros([2, 4, 9, 9], &device);
    let err = deform_conv2d(x, off, None, big, None, &opts).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}

#[test]
fn the_layer_starts_as_a_plain_convolution_with_half_mask() {
    // mmcv zero-initialises conv_offset: no offsets, every mask 0.5.
    let device = Device::flex();
    let layer = DeformConv2dConfig::new(3, 4, 3).init(&device);
    assert_eq!(layer.conv_offset.weight.dims(), [27, 3, 3, 3]);
    let x = Tensor::<4>::random([1, 3, 6, 7], burn::tensor::Distribution::Default, &device);
    let got = layer.forward(x.clone());
    let plain = burn::tensor::module::conv2d(
        x,
        layer.weight.val(),
        None,
        burn::tensor::ops::ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
    )
    .mul_scalar(0.5);
    close("zero-offset layer", &values(got), &values(plain));
}
