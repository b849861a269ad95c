//! The baseline losses against values computed by hand.

use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use seesaw_model::losses::{CrossEntropyLoss, EqlLoss, Eqlv2Loss, FederatedLoss, SigmoidBceLoss};

const LN2: f64 = std::f64::consts::LN_2;

fn t(rows: usize, cols: usize, v: &[f32]) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), [rows, cols]), &Device::flex())
}

fn value(x: Tensor<1>) -> f64 {
    x.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()[0]
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-5, "{a} != {b}");
}

#[test]
fn cross_entropy_by_hand() {
    let ce = CrossEntropyLoss::new(2);
    // softmax(0, 0, ln 2) = (1/4, 1/4, 1/2): background costs ln 2, class 0 costs ln 4.
    let s = t(2, 3, &[0.0, 0.0, LN2 as f32, 0.0, 0.0, LN2 as f32]);
    close(
        value(ce.forward(s.clone(), &[2, 0], None, None).unwrap()),
        (LN2 + 2.0 * LN2) / 2.0,
    );
    close(
        value(ce.forward(s, &[2, 0], None, Some(4.0)).unwrap()),
        3.0 * LN2 / (4.0 + f64::from(f32::EPSILON)),
    );
    let err = ce
        .forward(t(1, 2, &[0.0, 0.0]), &[0], None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("width 3"), "{err}");
}

#[test]
fn sigmoid_bce_by_hand() {
    let bce = SigmoidBceLoss::new(2);
    // Row [ln 3, 0], label 0: -ln(3/4) and ln 2; the mean is over the 2 elements.
    let s = t(1, 2, &[3f32.ln(), 0.0]);
    close(
        value(bce.forward(s.clone(), &[0], None, None).unwrap()),
        ((4.0f64 / 3.0).ln() + LN2) / 2.0,
    );
    // Background: both targets 0: ln 4 - ln(1/4)... i.e. -ln(1/4) + ln 2.
    close(
        value(bce.forward(s, &[2], None, None).unwrap()),
        (4.0f64.ln() + LN2) / 2.0,
    );
}

#[test]
fn eql_drops_rare_negatives_on_foreground_rows_only() {
    let eql = EqlLoss::new(vec![0.5, 0.001, 0.001]);
    let zeros = t(1, 3, &[0.0; 3]);
    close(value(eql.forward(zeros.clone(), &[0]).unwrap()), LN2); // both rare negatives dropped
    close(value(eql.forward(zeros.clone(), &[1]).unwrap()), 2.0 * LN2); // class 2 dropped
    close(value(eql.forward(zeros, &[3]).unwrap()), 3.0 * LN2); // background keeps all
}

#[test]
fn eqlv2_starts_neutral_then_follows_the_gradient_ratio() {
    let mut eql = Eqlv2Loss::new(2);
    let zeros = t(1, 3, &[0.0; 3]);
    close(value(eql.forward(zeros.clone(), &[0]).unwrap()), 3.0 * LN2);
    // One step: class 0 got a positive gradient 0.5, class 1 a negative one 0.5.
    close(eql.pos_grad[0], 0.5);
    close(eql.neg_grad[1], 0.5);
    close(eql.pos_neg[1], 0.0);
    let (pos, neg) = eql.column_weights();
    let n1 = 1.0 / (1.0 + (12.0f64 * 0.8).exp());
    close(neg[1], n1);
    close(pos[1], 1.0 + 4.0 * (1.0 - n1));
    close(neg[0], 1.0);
    assert_eq!((pos[2], neg[2]), (1.0, 1.0));
    // Second step, label 0 again: column 1 is a negative with weight n1.
    let second = value(eql.forward(zeros, &[0]).unwrap());
    close(second, LN2 * (1.0 + n1 + 1.0));
}

#[test]
fn federated_trains_present_classes_plus_sampled_ones() {
    let mut fed = FederatedLoss::new(&[100, 1, 1, 0], 0.5);
    fed.num_fed_classes = 2;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for _ in 0..50 {
        let chosen = fed.sample_classes(&[0, 4], &mut rng);
        assert_eq!(chosen.len(), 2);
        assert_eq!(chosen[0], 0);
        assert!(chosen[1] == 1 || chosen[1] == 2, "{chosen:?}");
    }
    // A zero-weight class is never drawn, even when more are wanted.
    fed.num_fed_classes = 4;
    let chosen = fed.sample_classes(&[0], &mut rng);
    assert_eq!(chosen.len(), 3);
    assert!(!chosen.contains(&3));
    // Zero logits: every trained (row, class) costs ln 2; 3 classes x 2 rows / 2 rows.
    let loss = fed.forward(t(2, 5, &[0.0; 10]), &[0, 4], &mut rng).unwrap();
    close(value(loss), 3.0 * LN2);
}
