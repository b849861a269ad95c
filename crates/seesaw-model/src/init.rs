//! Drawing initial weights from burn's generator, one per process.
//!
//! burn draws a parameter's initial value from its device's random generator, and flex's (the
//! CPU backend's) is a single process-wide generator. Some of a model's parameters are drawn
//! while it is built (a head that rescales its freshly drawn weights), the rest lazily, when a
//! parameter is first read. Two models built at once in one process (parallel tests, a tool
//! that validates a config while another thread trains) would interleave their draws, and a
//! run's weights would then depend on the other thread's timing. Every build in this crate
//! holds [`generator_lock`]; a training build seeds the generator, builds and draws every
//! parameter within one hold ([`crate::detectors::DetectorConfig::init_with`]), so the weights
//! depend on the seed alone.

use std::sync::{Mutex, MutexGuard, PoisonError};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

static GENERATOR: Mutex<()> = Mutex::new(());

/// Holds the process-wide lock on the device generators' draws until the guard drops. Not
/// reentrant: the crate's builders take it themselves.
pub fn generator_lock() -> MutexGuard<'static, ()> {
    GENERATOR.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads every float parameter (burn initialises a parameter lazily, at its first read).
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Draws every not yet drawn parameter of `module` now (under a held [`generator_lock`]).
pub(crate) fn materialize_locked<M: Module>(module: &M) {
    module.visit(&mut Materialize);
}

/// Seeds `device`'s generator with `seed` and draws every parameter of `module` that is not
/// drawn yet, holding [`generator_lock`] throughout: for parts added to a built model (dual
/// head classification's new branches), whose values then depend on `seed` alone.
pub fn draw_parameters<M: Module>(module: &M, device: &Device, seed: u64) {
    let _guard = generator_lock();
    device.seed(seed);
    materialize_locked(module);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::DetectorConfig;
    use crate::losses::ClassStats;

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
        // Another thread builds models (drawing while it builds) the whole time.
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
}
