//! Data-parallel training's launch and its per-step exchanges, on existing collective engines:
//! MPI (the `mpi` cargo feature, OpenMPI through rsmpi) for processes started by `mpirun` or
//! `srun`. Each process is one replica; every replica trains on its share of each global batch
//! (`seesaw_data::pipeline::Shard`) and they exchange, through the engine's all-reduce:
//!
//! - the loss normalisers and Seesaw's class counts, inside the model
//!   (`seesaw_model::distributed`), and SyncBN's batch statistics;
//! - the padded batch size (every replica pads to the global batch's, as one process would);
//! - the gradients, summed (each replica's loss is its share of the global loss), in one
//!   buffer per step;
//! - the logged loss values, summed.
//!
//! Rank 0's initial weights are broadcast to the others. Rank 0 alone writes checkpoints,
//! metrics and the work dir's config; every replica resumes from the same checkpoint.

use std::rc::Rc;

use seesaw_model::burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use seesaw_model::burn::optim::GradientsParams;
use seesaw_model::burn::tensor::{Tensor, TensorData};
use seesaw_model::detectors::Detector;
pub use seesaw_model::distributed::Collective;

use crate::device::DeviceSpec;
use crate::error::{EngineError, Result};

/// The environment variables by which launchers announce more than one rank: OpenMPI's
/// `mpirun`, MPICH/Hydra and Intel MPI (`PMI_SIZE`), SLURM's `srun` (`SLURM_STEP_NUM_TASKS`,
/// set in a job step, not in the allocation's shell), and torchrun (`WORLD_SIZE`).
const WORLD_VARS: [&str; 4] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "SLURM_STEP_NUM_TASKS",
    "WORLD_SIZE",
];

/// The world size a launcher announced, and by which variable (None: a plain process).
pub fn announced_world() -> Option<(&'static str, usize)> {
    WORLD_VARS.iter().find_map(|&v| {
        std::env::var(v)
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|&n| n > 1)
            .map(|n| (v, n))
    })
}

/// Joins the replicas this process was launched among: `None` for a plain process (one
/// replica), an MPI communicator when a launcher started several ranks; for GPU ranks in a
/// build with the `nccl` feature, NCCL (bootstrapped over MPI) for the gradients.
///
/// # Errors
/// Several ranks announced but this build has no `mpi` feature, or torchrun's variables
/// alone (its rendezvous is not an MPI launch), or MPI or NCCL that cannot start.
pub fn join(device: DeviceSpec) -> Result<Option<Rc<dyn Collective>>> {
    let Some((var, n)) = announced_world() else {
        return Ok(None);
    };
    if var == "WORLD_SIZE" && announced_mpi().is_none() {
        return Err(EngineError::Request(format!(
            "WORLD_SIZE={n} (torchrun's launch) without an MPI launcher: CPU ranks are started \
             with `mpirun -n {n} seesaw train ...` or `srun --mpi=pmix -n {n} seesaw train ...` \
             (docs/multi-gpu.md)"
        )));
    }
    mpi_group(var, n, device)
}

/// This process's rank among those on its node (OpenMPI's, SLURM's, torchrun's or MPICH's
/// variable; 0 when none is set): the GPU a rank takes.
pub fn local_rank() -> usize {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "SLURM_LOCALID",
        "LOCAL_RANK",
        "MPI_LOCALRANKID",
    ]
    .into_iter()
    .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
    .unwrap_or(0)
}

/// An MPI launcher's variable, if one is set.
fn announced_mpi() -> Option<&'static str> {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_RANK",
        "SLURM_NTASKS",
    ]
    .into_iter()
    .find(|v| std::env::var_os(v).is_some())
}

#[cfg(not(feature = "mpi"))]
fn mpi_group(var: &str, n: usize, _device: DeviceSpec) -> Result<Option<Rc<dyn Collective>>> {
    Err(EngineError::Request(format!(
        "{var}={n}: launched as one of {n} ranks, but this seesaw was built without data \
         parallelism; build it with `cargo build --release --features mpi` (Debian: apt-get \
         install libopenmpi-dev openmpi-bin libclang-dev)"
    )))
}

#[cfg(feature = "mpi")]
fn mpi_group(var: &str, n: usize, device: DeviceSpec) -> Result<Option<Rc<dyn Collective>>> {
    let group = mpi_backend::MpiGroup::init().ok_or_else(|| {
        EngineError::Request(format!(
            "{var}={n}, but MPI is already initialised in this process"
        ))
    })?;
    if group.world_size() != n && var == "OMPI_COMM_WORLD_SIZE" {
        return Err(EngineError::Request(format!(
            "{var}={n} but MPI's world has {} ranks",
            group.world_size()
        )));
    }
    #[cfg(feature = "nccl")]
    if let DeviceSpec::Cuda(first) = device {
        let ordinal = first + local_rank();
        let nccl = nccl_backend::NcclGroup::init(group, ordinal).map_err(|e| {
            EngineError::Request(format!("NCCL on GPU {ordinal} cannot start: {e}"))
        })?;
        return Ok(Some(Rc::new(nccl)));
    }
    #[cfg(not(feature = "nccl"))]
    let _ = device;
    if group.world_size() < 2 {
        // A launcher's variables, but MPI's world is this process alone.
        return Ok(None);
    }
    Ok(Some(Rc::new(group)))
}

#[cfg(feature = "nccl")]
mod nccl_backend {
    //! GPU ranks: NCCL (cudarc) for the gradients' sum, over a communicator whose unique id
    //! rank 0 draws and MPI broadcasts; MPI for the rest (small host values).

    use std::sync::Arc;

    use cudarc::driver::{CudaContext, CudaStream};
    use cudarc::nccl::safe::{Comm, Id, ReduceOp};

    use super::Collective;
    use super::mpi_backend::MpiGroup;

    /// Below this many values a sum goes through MPI (a host value needs no device copy).
    const NCCL_MIN: usize = 4096;

    pub struct NcclGroup {
        mpi: MpiGroup,
        stream: Arc<CudaStream>,
        comm: Comm,
    }

    impl NcclGroup {
        /// A communicator over every MPI rank, this one on GPU `ordinal`.
        pub fn init(mpi: MpiGroup, ordinal: usize) -> Result<Self, String> {
            let ctx = CudaContext::new(ordinal).map_err(|e| format!("{e:?}"))?;
            let stream = ctx.default_stream();
            let mut bytes: Vec<u8> = if mpi.rank() == 0 {
                let id = Id::new().map_err(|e| format!("ncclGetUniqueId: {e:?}"))?;
                id.internal().iter().map(|&c| c as u8).collect()
            } else {
                Vec::new()
            };
            mpi.broadcast_bytes(0, &mut bytes);
            let mut internal = [0 as core::ffi::c_char; 128];
            for (d, s) in internal.iter_mut().zip(&bytes) {
                *d = *s as core::ffi::c_char;
            }
            let comm = Comm::from_rank(
                stream.clone(),
                mpi.rank(),
                mpi.world_size(),
                Id::uninit(internal),
            )
            .map_err(|e| format!("ncclCommInitRank: {e:?}"))?;
            Ok(Self { mpi, stream, comm })
        }
    }

    impl Collective for NcclGroup {
        fn rank(&self) -> usize {
            self.mpi.rank()
        }
        fn world_size(&self) -> usize {
            self.mpi.world_size()
        }
        /// # Panics
        /// A CUDA or NCCL failure (a device or network fault, not user data).
        fn sum_f32(&self, values: &mut [f32]) {
            if values.len() < NCCL_MIN {
                return self.mpi.sum_f32(values);
            }
            let fail = |what: &str, e: &dyn std::fmt::Debug| -> ! {
                panic!("NCCL all-reduce: {what} failed: {e:?}")
            };
            let mut buf = self
                .stream
                .clone_htod(&*values)
                .unwrap_or_else(|e| fail("copy to the GPU", &e));
            self.comm
                .all_reduce_in_place(&mut buf, &ReduceOp::Sum)
                .unwrap_or_else(|e| fail("ncclAllReduce", &e));
            self.stream
                .memcpy_dtoh(&buf, values)
                .unwrap_or_else(|e| fail("copy from the GPU", &e));
            self.stream
                .synchronize()
                .unwrap_or_else(|e| fail("synchronize", &e));
        }
        fn sum_f64(&self, values: &mut [f64]) {
            self.mpi.sum_f64(values)
        }
        fn sum_u64(&self, values: &mut [u64]) {
            self.mpi.sum_u64(values)
        }
        fn max_u64(&self, values: &mut [u64]) {
            self.mpi.max_u64(values)
        }
        fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>) {
            self.mpi.broadcast_bytes(root, bytes)
        }
    }
}

#[cfg(feature = "mpi")]
mod mpi_backend {
    use mpi::collective::SystemOperation;
    use mpi::environment::Universe;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::{Communicator, CommunicatorCollectives, Root};

    use super::Collective;

    /// MPI's world communicator (rank = MPI rank); MPI is finalised when it drops.
    pub struct MpiGroup {
        world: SimpleCommunicator,
        _universe: Universe,
    }

    impl MpiGroup {
        /// `MPI_Init`; None when MPI was initialised before.
        pub fn init() -> Option<Self> {
            let universe = mpi::initialize()?;
            let world = universe.world();
            Some(Self {
                world,
                _universe: universe,
            })
        }
    }

    impl Collective for MpiGroup {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn world_size(&self) -> usize {
            self.world.size() as usize
        }
        fn sum_f32(&self, values: &mut [f32]) {
            let send = values.to_vec();
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::sum());
        }
        fn sum_f64(&self, values: &mut [f64]) {
            let send = values.to_vec();
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::sum());
        }
        fn sum_u64(&self, values: &mut [u64]) {
            let send = values.to_vec();
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::sum());
        }
        fn max_u64(&self, values: &mut [u64]) {
            let send = values.to_vec();
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::max());
        }
        fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>) {
            let root = self.world.process_at_rank(root as i32);
            let mut len = [bytes.len() as u64];
            root.broadcast_into(&mut len[..]);
            bytes.resize(len[0] as usize, 0);
            root.broadcast_into(&mut bytes[..]);
        }
    }
}

/// Visits a module's float parameters in their fixed order (the same on every replica).
struct ParamList(Vec<(ParamId, Vec<usize>)>);

impl ModuleVisitor for ParamList {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push((param.id, param.val().dims().to_vec()));
    }
}

/// Replaces each float parameter by rank `root`'s.
struct Broadcast<'a> {
    group: &'a dyn Collective,
    root: usize,
}

impl ModuleMapper for Broadcast<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (group, root) = (self.group, self.root);
        param.map(|t| {
            let require_grad = t.is_require_grad();
            let dims = t.dims();
            let device = t.device();
            let values: Vec<f32> = t
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            group.broadcast_bytes(root, &mut bytes);
            let values: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Tensor::from_data(TensorData::new(values, dims), &device).set_require_grad(require_grad)
        })
    }
}

/// Every replica's parameters become rank 0's (after building or loading: replicas start
/// equal whatever their own initialisation drew).
pub fn broadcast_parameters(model: Detector, group: &dyn Collective) -> Detector {
    model.map(&mut Broadcast { group, root: 0 })
}

/// Sums every parameter's gradient over the replicas, in one all-reduce of one buffer. A
/// parameter with a gradient on some replicas but not this one contributes zeros here; one with
/// a gradient on none stays without one (as on one process, the optimizer then skips it).
///
/// # Errors
/// A gradient that cannot be read back.
pub fn all_reduce_gradients(
    grads: &mut GradientsParams,
    model: &Detector,
    group: &dyn Collective,
) -> Result<()> {
    let mut list = ParamList(Vec::new());
    model.visit(&mut list);
    let params = list.0;
    let device = model.devices().into_iter().next();
    // The gradients flattened into one tensor on the device (zeros for a missing one), then
    // one read to the host: one stall per step on a GPU, not one per parameter.
    let mut flat: Vec<Tensor<1>> = Vec::with_capacity(params.len());
    let mut present: Vec<f32> = Vec::with_capacity(params.len());
    for (id, dims) in &params {
        let n: usize = dims.iter().product();
        match (take_flat(grads, *id, dims.len()), &device) {
            (Some(t), _) => {
                flat.push(t);
                present.push(1.0);
            }
            (None, Some(d)) => {
                flat.push(Tensor::zeros([n], d));
                present.push(0.0);
            }
            (None, None) => present.push(0.0),
        }
    }
    let mut buffer: Vec<f32> = if flat.is_empty() {
        Vec::new()
    } else {
        seesaw_model::readback::to_f32(Tensor::cat(flat, 0))
            .map_err(|e| EngineError::Request(format!("reading the gradients: {e}")))?
    };
    buffer.extend(&present);
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::info!(
            "all-reducing {} gradient values ({:.1} MB) per step",
            buffer.len(),
            buffer.len() as f64 * 4.0 / 1e6
        );
    });
    group.sum_f32(&mut buffer);
    let Some(device) = device else {
        return Ok(());
    };
    let mut at = 0;
    for (k, (id, dims)) in params.iter().enumerate() {
        let n: usize = dims.iter().product();
        if buffer[buffer.len() - params.len() + k] > 0.0 {
            let flat =
                Tensor::<1>::from_data(TensorData::new(buffer[at..at + n].to_vec(), [n]), &device);
            put_shaped(grads, *id, flat, dims);
        }
        at += n;
    }
    Ok(())
}

/// Removes a parameter's gradient, flattened, whatever its rank.
fn take_flat(grads: &mut GradientsParams, id: ParamId, rank: usize) -> Option<Tensor<1>> {
    match rank {
        1 => grads.remove::<1>(id),
        2 => grads.remove::<2>(id).map(|t| t.flatten(0, 1)),
        3 => grads.remove::<3>(id).map(|t| t.flatten(0, 2)),
        4 => grads.remove::<4>(id).map(|t| t.flatten(0, 3)),
        5 => grads.remove::<5>(id).map(|t| t.flatten(0, 4)),
        _ => None,
    }
}

/// Registers a flat gradient under its parameter's shape.
fn put_shaped(grads: &mut GradientsParams, id: ParamId, flat: Tensor<1>, dims: &[usize]) {
    match *dims {
        [a] => grads.register(id, flat.reshape([a])),
        [a, b] => grads.register(id, flat.reshape([a, b])),
        [a, b, c] => grads.register(id, flat.reshape([a, b, c])),
        [a, b, c, d] => grads.register(id, flat.reshape([a, b, c, d])),
        [a, b, c, d, e] => grads.register(id, flat.reshape([a, b, c, d, e])),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_process_is_one_replica() {
        // The test harness is not launched by mpirun.
        if announced_world().is_none() {
            assert!(join(DeviceSpec::Cpu).expect("join").is_none());
        }
    }
}
