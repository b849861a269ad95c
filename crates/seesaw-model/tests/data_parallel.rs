//! The data-parallel hook: replicas all-reduce each step's label counts before the loss, so two
//! replicas fed halves of a batch end with the counts and (summed) loss of one fed the whole.

use burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::losses::{SeesawLossConfig, seesaw::cum_samples};

fn scores(rows: &[[f32; 6]]) -> Tensor<2> {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), 6]), &Device::flex())
}

fn value(t: Tensor<1>) -> f64 {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()[0]
}

#[test]
fn two_replicas_match_one_replica_on_the_whole_batch() {
    let c = 4;
    let rows = [
        [2.0, -1.0, 0.5, 0.1, 1.0, -1.0],
        [0.3, 1.5, -0.2, 0.0, 0.2, 0.4],
        [-0.5, 0.1, 2.5, 0.3, -0.3, 1.2],
        [1.1, 0.9, -1.0, 0.4, 0.8, 0.1],
        [0.0, 0.2, 0.3, 1.7, 1.5, -0.5],
        [0.6, -0.4, 0.2, 0.1, -1.0, 2.0],
    ];
    let labels = [0, 1, 2, 0, 3, 4];
    let avg = labels.len() as f64; // the whole batch's sampled RoIs, as the box head passes it
    let mut config = SeesawLossConfig::new(c);
    config.p = 0.8;
    let mut whole = config.init();
    whole.set_counts(vec![50, 3, 20, 1, 500]).unwrap();
    let (mut r0, mut r1) = (whole.clone(), whole.clone());

    let out = whole
        .forward(scores(&rows), &labels, None, Some(avg), None)
        .unwrap();
    let expected = value(out.total());

    // Each replica counts its half; the all-reduce sums the two; both add the sum.
    let step: Vec<u64> = cum_samples(&labels[..3], c)
        .unwrap()
        .iter()
        .zip(cum_samples(&labels[3..], c).unwrap())
        .map(|(a, b)| a + b)
        .collect();
    r0.add_counts(&step).unwrap();
    r1.add_counts(&step).unwrap();
    assert_eq!(r0.counts(), whole.counts());
    assert_eq!(r1.counts(), whole.counts());
    let l0 = value(
        r0.loss(scores(&rows[..3]), &labels[..3], None, Some(avg), None)
            .unwrap()
            .total(),
    );
    let l1 = value(
        r1.loss(scores(&rows[3..]), &labels[3..], None, Some(avg), None)
            .unwrap()
            .total(),
    );
    assert!(
        (l0 + l1 - expected).abs() < 1e-5,
        "{l0} + {l1} != {expected}"
    );

    // Without the all-reduce each replica would count only its half: the counts drift apart.
    let mut lonely = whole.clone();
    lonely.set_counts(vec![50, 3, 20, 1, 500]).unwrap();
    lonely
        .forward(scores(&rows[..3]), &labels[..3], None, Some(avg), None)
        .unwrap();
    assert_ne!(lonely.counts(), whole.counts());
}
