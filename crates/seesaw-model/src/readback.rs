//! Reading tensors back to the host, counted.
//!
//! Every read of a tensor's values by the model and the training loop (losses' host-side
//! bookkeeping, NMS and sampling on the host, mask targets, the logged losses) goes through
//! this module, which counts them. On a GPU each read waits for the queued kernels to finish
//! and copies across the bus: `seesaw bench step` prints the count per training iteration.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::Tensor;

use crate::error::{ModelError, Result};

static READS: AtomicU64 = AtomicU64::new(0);

/// Device-to-host reads made through this module since the process started.
pub fn reads() -> u64 {
    READS.load(Ordering::Relaxed)
}

/// Counts one read made elsewhere (an all-reduce's host round trip).
pub(crate) fn count() {
    READS.fetch_add(1, Ordering::Relaxed);
}

/// The values of a float tensor of any shape as `E`, row-major: one counted read.
fn read<const D: usize, E: burn::tensor::Element>(t: Tensor<D>) -> Result<Vec<E>> {
    count();
    t.try_into_data()
        .map_err(|e| ModelError::Backend(format!("reading a tensor back: {e:?}")))?
        .convert::<E>()
        .try_to_vec::<E>()
        .map_err(|e| ModelError::Backend(format!("reading a tensor back: {e:?}")))
}

/// The values of a float tensor of any shape as f32, row-major: one read.
///
/// # Errors
/// The backend cannot read the tensor back ([`ModelError::Backend`]).
pub fn to_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    read(t)
}

/// The values of a float tensor of any shape as f64, row-major: one read.
///
/// # Errors
/// The backend cannot read the tensor back ([`ModelError::Backend`]).
pub fn to_f64<const D: usize>(t: Tensor<D>) -> Result<Vec<f64>> {
    read(t)
}
