//! A training build's weights depend on its seed alone, whatever other threads build at the
//! same time (burn's flex generator is one per process; `seesaw_model::init`). Its own test
//! binary: the crate's unit tests draw random tensors without the lock.

use seesaw_model::burn::tensor::Device;
use seesaw_model::detectors::DetectorConfig;
use seesaw_model::losses::ClassStats;

fn weights(cfg: &DetectorConfig, device: &Device) -> Vec<f32> {
    let model = cfg
        .init_with(&ClassStats::uniform(cfg.num_classes), 3, device)
        .expect("builds");
    model
        .rpn_head
        .conv
        .weight
        .val()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32")
}

#[test]
fn a_training_build_does_not_depend_on_builds_in_other_threads() {
    let device = Device::flex();
    let mut cfg = DetectorConfig {
        num_classes: 3,
        ..DetectorConfig::default()
    };
    cfg.backbone.base_channels = 8;
    cfg.neck.out_channels = 16;
    let alone = weights(&cfg, &device);
    // Another thread builds models (which draw while they build) the whole time.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let m = cfg.init(&Device::flex()).expect("builds");
                let _ = m.rpn_head.conv.weight.val();
            }
        });
        let again: Vec<Vec<f32>> = (0..3).map(|_| weights(&cfg, &device)).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in again {
            assert!(
                w == alone,
                "the weights changed with the other thread's builds"
            );
        }
    });
}
