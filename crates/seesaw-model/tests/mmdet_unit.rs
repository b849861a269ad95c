//! mmdetection's own `test_seesaw_loss` numbers (num_classes 2, no weights, no avg_factor), the
//! C + 2 width contract, and the normalized layers.

use burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::layers::{NormedConv2dConfig, NormedLinearConfig};
use seesaw_model::losses::SeesawLossConfig;

fn row(v: [f32; 4]) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), [1, 4]), &Device::flex())
}

fn value(t: Tensor<1>) -> f64 {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()[0]
}

fn loss_with(p: f64, q: f64) -> seesaw_model::losses::SeesawLoss {
    let mut cfg = SeesawLossConfig::new(2);
    cfg.p = p;
    cfg.q = q;
    cfg.init()
}

#[test]
fn width_must_be_num_classes_plus_two() {
    let mut loss = loss_with(0.8, 2.0);
    for w in [2, 3] {
        let t = Tensor::<2>::zeros([1, w], &Device::flex());
        let err = loss
            .forward(t, &[1], None, None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_classes + 2 = 4"), "{err}");
    }
    let err = loss
        .forward(row([0.0; 4]), &[3], None, None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("labels must lie in 0..=2"), "{err}");
}

#[test]
fn plain_case_p0_q0() {
    let mut loss = loss_with(0.0, 0.0);
    let out = loss
        .forward(row([-100.0, 100.0, -100.0, 100.0]), &[1], None, None, None)
        .unwrap();
    assert!((value(out.loss_cls_objectness) - 200.0).abs() < 1e-3);
    assert!(value(out.loss_cls_classes).abs() < 1e-3);
}

#[test]
fn mitigation_p1_gives_180() {
    let mut loss = loss_with(1.0, 0.0);
    let mut counts = loss.counts().to_vec();
    counts[0] = 20f64.exp() as u64;
    loss.set_counts(counts).unwrap();
    let out = loss
        .forward(row([-100.0, 100.0, -100.0, 100.0]), &[0], None, None, None)
        .unwrap();
    assert!((value(out.loss_cls_objectness) - 200.0).abs() < 1e-3);
    let classes = value(out.loss_cls_classes);
    assert!((classes - 180.0).abs() < 1e-2, "{classes}");
}

#[test]
fn compensation_q1_gives_200_plus_ln_100() {
    let mut loss = loss_with(0.0, 1.0);
    let out = loss
        .forward(row([-100.0, 100.0, -100.0, 100.0]), &[0], None, None, None)
        .unwrap();
    let want = 200.0 + 100f64.ln();
    let classes = value(out.loss_cls_classes);
    assert!((classes - want).abs() < 1e-3, "{classes}");
}

#[test]
fn confident_and_right_gives_zero_loss_full_accuracy_and_the_activation() {
    let mut loss = loss_with(0.0, 1.0);
    let s = row([100.0, -100.0, 100.0, -100.0]);
    let out = loss.forward(s.clone(), &[0], None, None, None).unwrap();
    assert!(value(out.total()).abs() < 1e-3);
    assert_eq!(loss.get_accuracy(s.clone(), &[0]).unwrap(), (100.0, 100.0));
    let act = loss
        .get_activation(s)
        .unwrap()
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap();
    assert_eq!(act.len(), 3);
    assert!(
        (act[0] - 1.0).abs() < 1e-6 && act[1].abs() < 1e-6 && act[2].abs() < 1e-6,
        "{act:?}"
    );
}

#[test]
fn normed_linear_is_tau_times_cosine_plus_bias() {
    let dev = Device::flex();
    let mut layer = NormedLinearConfig::new(2, 2).init(&dev);
    layer.weight = burn::module::Param::from_tensor(Tensor::from_data(
        TensorData::new(vec![3.0f32, 4.0, 0.0, 2.0], [2, 2]),
        &dev,
    ));
    let x = Tensor::<2>::from_data(TensorData::new(vec![6.0f32, 8.0], [1, 2]), &dev);
    let y = layer
        .forward(x)
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap();
    // x/|x| = (0.6, 0.8); rows: (0.6, 0.8) -> cos 1; (0, 1) -> cos 0.8. Times tau 20, bias 0.
    assert!(
        (y[0] - 20.0).abs() < 1e-3 && (y[1] - 16.0).abs() < 1e-3,
        "{y:?}"
    );
}

#[test]
fn normed_conv2d_normalizes_channels_per_pixel() {
    let dev = Device::flex();
    let mut layer = NormedConv2dConfig::new(2, 1).init(&dev);
    layer.weight = burn::module::Param::from_tensor(Tensor::from_data(
        TensorData::new(vec![0.0f32, 5.0], [1, 2, 1, 1]),
        &dev,
    ));
    // Two pixels: (3, 4) and (1, 0) over the two channels.
    let x = Tensor::<4>::from_data(
        TensorData::new(vec![3.0f32, 1.0, 4.0, 0.0], [1, 2, 1, 2]),
        &dev,
    );
    let y = layer
        .forward(x)
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap();
    assert!((y[0] - 16.0).abs() < 1e-3 && y[1].abs() < 1e-3, "{y:?}");
}
