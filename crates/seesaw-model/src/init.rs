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
//!
//! Weights are drawn on flex, whatever the device, and then moved there: each backend has its
//! own generator (wgpu's and CUDA's are not flex's), and a seed should give the same model on
//! every device, as a PyTorch module built on the CPU and moved with `.to(device)` does.

use std::sync::{Mutex, MutexGuard, PoisonError};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

static GENERATOR: Mutex<()> = Mutex::new(());

/// Holds the process-wide lock on the device generators' draws until the guard drops. Not
/// reentrant: the crate's builders take it themselves.
pub fn generator_lock() -> MutexGuard<'static, ()> {
    GENERATOR.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The device weights for `device` are drawn on: flex, with autodiff when `device` has it.
pub(crate) fn drawing_device(device: &Device) -> Device {
    if device.gradient_checkpointing_strategy().is_some() {
        Device::flex().autodiff()
    } else {
        Device::flex()
    }
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
