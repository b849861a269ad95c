//! RoIAlign forward and input gradient against torchvision 0.29.2 (`aligned=True` and the
//! legacy `aligned=False` of its detection models; fixed and
//! adaptive sampling; RoIs partly outside, tiny and empty), made by
//! tests/fixtures/ops/make_roi_align.py.

use burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::ops::roi_align::{RoiAlignConfig, roi_align};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
            "{what}[{k}]: {g} vs {w}"
        );
    }
}

#[test]
fn roi_align_matches_torchvision_forward_and_backward() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops/roi_align.json");
    let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let shape: Vec<usize> = f["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let shape = [shape[0], shape[1], shape[2], shape[3]];
    let input = floats(&f["input"]);
    let rois: Vec<[f32; 5]> = f["rois"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r = floats(r);
            [r[0], r[1], r[2], r[3], r[4]]
        })
        .collect();
    let device = Device::flex().autodiff();
    for case in f["cases"].as_array().unwrap() {
        let cfg = RoiAlignConfig {
            output_size: case["output_size"].as_u64().unwrap() as usize,
            spatial_scale: case["spatial_scale"].as_f64().unwrap() as f32,
            sampling_ratio: case["sampling_ratio"].as_u64().unwrap() as usize,
            aligned: case["aligned"].as_bool().unwrap(),
        };
        let what = format!(
            "{}x{} ratio {} aligned {}",
            cfg.output_size, cfg.output_size, cfg.sampling_ratio, cfg.aligned
        );
        let x =
            Tensor::<4>::from_data(TensorData::new(input.clone(), shape), &device).require_grad();
        let y = roi_align(x.clone(), &rois, &cfg).unwrap();
        let dims = y.dims();
        close(
            &format!("{what} output"),
            &values(y.clone()),
            &floats(&case["output"]),
        );
        let gy =
            Tensor::<4>::from_data(TensorData::new(floats(&case["grad_output"]), dims), &device);
        let grads = (y * gy).sum().backward();
        let gx = x.grad(&grads).unwrap();
        close(
            &format!("{what} grad_input"),
            &values(gx),
            &floats(&case["grad_input"]),
        );
    }
}

#[test]
fn bad_rois_are_errors_and_no_rois_is_empty() {
    let x = Tensor::<4>::zeros([1, 2, 4, 4], &Device::flex());
    let cfg = RoiAlignConfig {
        output_size: 2,
        spatial_scale: 1.0,
        sampling_ratio: 2,
        aligned: true,
    };
    assert_eq!(
        roi_align(x.clone(), &[], &cfg).unwrap().dims(),
        [0, 2, 2, 2]
    );
    let err = roi_align(x.clone(), &[[1.0, 0.0, 0.0, 2.0, 2.0]], &cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("rois[0]: batch index 1"), "{err}");
    let err = roi_align(x, &[[0.0, f32::NAN, 0.0, 2.0, 2.0]], &cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not finite"), "{err}");
}
