//! What data-parallel training needs from the model: the replicas' collective, installed on the
//! training thread, and the few quantities that must be global rather than per replica.
//!
//! A replica trains on its share of the global batch. For the sum of the replicas' gradients to
//! be the gradient of one process on the whole batch, every loss is normalised by the *global*
//! count (sampled anchors, sampled RoIs, positives, mask pixels: [`global_sum`]), Seesaw Loss's
//! cumulative class counts grow by the whole batch's labels on every replica ([`sum_counts`]),
//! and SyncBN's batch statistics are reduced over the replicas ([`all_reduce_sum`], whose
//! backward reduces the statistics' gradients in turn, as PyTorch's `SyncBatchNorm` does).
//! mmdetection leaves the first two per GPU (each rank divides by its own counts and keeps its
//! own Seesaw counts); ours are what one process would compute on the whole batch.
//!
//! The collective itself is an engine's (MPI or NCCL, in `seesaw-engine`); the model sees it
//! only through [`Collective`]. Without one installed (or with a world of one) every function
//! here is the identity, so single-process code pays nothing.

use std::cell::RefCell;
use std::rc::Rc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Tensor, TensorData};

/// The replicas' collective operations (an MPI communicator, an NCCL one, or a test double).
/// Every replica calls the same operations in the same order with buffers of the same length;
/// each call returns when every replica has contributed.
pub trait Collective {
    /// This replica's rank, `0..world_size()`.
    fn rank(&self) -> usize;
    /// The number of replicas.
    fn world_size(&self) -> usize;
    /// Element-wise sum over the replicas, in place.
    fn sum_f32(&self, values: &mut [f32]);
    /// Element-wise sum over the replicas, in place.
    fn sum_f64(&self, values: &mut [f64]);
    /// Element-wise sum over the replicas, in place.
    fn sum_u64(&self, values: &mut [u64]);
    /// Element-wise maximum over the replicas, in place.
    fn max_u64(&self, values: &mut [u64]);
    /// Replaces `bytes` on every replica by rank `root`'s (lengths may differ before the call).
    fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>);
}

thread_local! {
    static GROUP: RefCell<Option<Rc<dyn Collective>>> = const { RefCell::new(None) };
}

/// Keeps a collective installed on this thread; dropping it uninstalls it.
#[must_use = "the collective is uninstalled when the guard drops"]
pub struct GroupGuard {
    previous: Option<Rc<dyn Collective>>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        GROUP.with(|g| *g.borrow_mut() = previous);
    }
}

/// Installs `group` as this thread's collective until the guard drops. The training loop
/// installs it around its forward and backward passes (burn runs both on the calling thread).
pub fn install(group: Rc<dyn Collective>) -> GroupGuard {
    let previous = GROUP.with(|g| g.borrow_mut().replace(group));
    GroupGuard { previous }
}

/// This thread's collective, if one with more than one replica is installed.
pub fn current() -> Option<Rc<dyn Collective>> {
    GROUP
        .with(|g| g.borrow().clone())
        .filter(|g| g.world_size() > 1)
}

/// The number of replicas (1 without a collective).
pub fn world_size() -> usize {
    current().map_or(1, |g| g.world_size())
}

/// `local` summed over the replicas: a loss's normaliser (sampled anchors, RoIs, positives)
/// counted over the whole global batch. The identity on one replica.
pub fn global_sum(local: f64) -> f64 {
    match current() {
        Some(g) => {
            let mut v = [local];
            g.sum_f64(&mut v);
            v[0]
        }
        None => local,
    }
}

/// Per-class label counts of this replica's share, summed in place over the replicas (Seesaw's
/// `cum_samples` of the whole batch). The identity on one replica.
pub fn sum_counts(counts: &mut [u64]) {
    if let Some(g) = current() {
        g.sum_u64(counts);
    }
}

/// Element-wise sum of `x` over the replicas, differentiable: the gradient of each replica's
/// input is the sum of the replicas' output gradients (the adjoint of a sum is a broadcast, and
/// each replica's loss is one term of the global loss). Any shape; the identity on one replica.
///
/// # Panics
/// When the backend cannot read `x` back to the host (a device failure).
pub fn all_reduce_sum<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if current().is_none() {
        return x;
    }
    let out = <burn::backend::Dispatch as CollectiveOps>::all_reduce_sum(x.into_dispatch());
    Tensor::from_dispatch(out)
}

/// The backend side of [`all_reduce_sum`]: the forward reads the tensor to the host, where the
/// engines' collectives work, and writes the sum back; autodiff adds the backward.
#[backend_extension(Flex, Cube: cfg(any(feature = "cuda", feature = "wgpu")), Autodiff)]
pub trait CollectiveOps: Backend {
    /// Element-wise sum over the installed collective's replicas.
    fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The host round trip shared by every concrete backend.
fn host_all_reduce<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let Some(group) = current() else {
        return x;
    };
    let device = x.device();
    crate::readback::count();
    let data = burn::tensor::read_sync(B::float_into_data(x))
        .unwrap_or_else(|e| panic!("all-reduce: reading the tensor back failed: {e:?}"));
    let shape = data.shape().clone();
    let mut values: Vec<f32> = data
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_else(|e| panic!("all-reduce: the tensor is not f32: {e:?}"));
    group.sum_f32(&mut values);
    B::float_from_data(TensorData::new(values, shape), &device)
}

impl CollectiveOps for Flex {
    fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
        host_all_reduce::<Self>(x)
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl CollectiveOps for burn_cubecl::CubeBackend {
    fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
        host_all_reduce::<Self>(x)
    }
}

impl<B: Backend + CollectiveOps, C: CheckpointStrategy> CollectiveOps for Autodiff<B, C> {
    fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct AllReduceSum;

        impl<B: Backend + CollectiveOps> Backward<B, 1> for AllReduceSum {
            type State = ();

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                unary::<B, _>(ops.parents, ops.node, grads, |grad| B::all_reduce_sum(grad));
            }
        }

        let node = x.node();
        let out = B::all_reduce_sum(x.into_primitive());
        match AllReduceSum.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A collective of threads in one process, for tests: each call waits for every replica,
    //! reduces the contributions in rank order and hands every replica the result.

    use super::Collective;
    use std::sync::{Barrier, Mutex};

    pub struct ThreadGroup {
        world: usize,
        barrier: Barrier,
        slots: Mutex<Vec<Vec<f64>>>,
    }

    impl ThreadGroup {
        pub fn new(world: usize) -> Self {
            Self {
                world,
                barrier: Barrier::new(world),
                slots: Mutex::new(vec![Vec::new(); world]),
            }
        }

        fn reduce(&self, rank: usize, values: &[f64], op: fn(f64, f64) -> f64) -> Vec<f64> {
            self.slots.lock().expect("slots")[rank] = values.to_vec();
            self.barrier.wait();
            let out = {
                let slots = self.slots.lock().expect("slots");
                (0..values.len())
                    .map(|i| slots.iter().map(|s| s[i]).reduce(op).unwrap_or(0.0))
                    .collect()
            };
            self.barrier.wait();
            out
        }
    }

    /// One replica's view of a [`ThreadGroup`].
    pub struct Member<'a> {
        pub group: &'a ThreadGroup,
        pub rank: usize,
    }

    impl Collective for Member<'static> {
        fn rank(&self) -> usize {
            self.rank
        }
        fn world_size(&self) -> usize {
            self.group.world
        }
        fn sum_f32(&self, values: &mut [f32]) {
            let v: Vec<f64> = values.iter().map(|&x| f64::from(x)).collect();
            let out = self.group.reduce(self.rank, &v, |a, b| a + b);
            for (d, s) in values.iter_mut().zip(out) {
                *d = s as f32;
            }
        }
        fn sum_f64(&self, values: &mut [f64]) {
            let out = self.group.reduce(self.rank, values, |a, b| a + b);
            values.copy_from_slice(&out);
        }
        fn sum_u64(&self, values: &mut [u64]) {
            let v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
            let out = self.group.reduce(self.rank, &v, |a, b| a + b);
            for (d, s) in values.iter_mut().zip(out) {
                *d = s as u64;
            }
        }
        fn max_u64(&self, values: &mut [u64]) {
            let v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
            let out = self.group.reduce(self.rank, &v, f64::max);
            for (d, s) in values.iter_mut().zip(out) {
                *d = s as u64;
            }
        }
        fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>) {
            let v: Vec<f64> = if self.rank == root {
                bytes.iter().map(|&b| f64::from(b)).collect()
            } else {
                Vec::new()
            };
            // Lengths first, then the bytes (zeros from the others).
            let mut len = [v.len() as f64];
            len = [self.group.reduce(self.rank, &len, f64::max)[0]];
            let mut padded = v;
            padded.resize(len[0] as usize, 0.0);
            let out = self.group.reduce(self.rank, &padded, |a, b| a + b);
            *bytes = out.into_iter().map(|x| x as u8).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Member, ThreadGroup};
    use super::*;
    use burn::tensor::Device;

    fn leak(world: usize) -> &'static ThreadGroup {
        Box::leak(Box::new(ThreadGroup::new(world)))
    }

    #[test]
    fn without_a_collective_everything_is_the_identity() {
        assert_eq!(world_size(), 1);
        assert_eq!(global_sum(3.0), 3.0);
        let mut c = [1, 2];
        sum_counts(&mut c);
        assert_eq!(c, [1, 2]);
        let x = Tensor::<1>::from_floats([1.0, 2.0], &Device::flex());
        assert_eq!(
            all_reduce_sum(x)
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32"),
            vec![1.0, 2.0]
        );
    }

    #[test]
    fn the_all_reduce_sums_forward_and_its_gradient_backward() {
        // Replica r holds x_r; each computes loss_r = sum(w_r * allreduce(x)). The gradient
        // of the global loss sum_r loss_r with respect to x_r is sum_r w_r, on every replica.
        let group = leak(2);
        let w = [[1.0f32, 2.0, 3.0], [10.0, 20.0, 30.0]];
        let xs = [[1.0f32, 0.5, -1.0], [2.0, 4.0, 8.0]];
        let results: Vec<(Vec<f32>, Vec<f32>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|rank| {
                    s.spawn(move || {
                        let _g = install(Rc::new(Member { group, rank }));
                        let device = Device::flex().autodiff();
                        let x = Tensor::<1>::from_floats(xs[rank], &device).require_grad();
                        let y = all_reduce_sum(x.clone());
                        let loss = (y.clone() * Tensor::from_floats(w[rank], &device)).sum();
                        let grads = loss.backward();
                        let g = x.grad(&grads).expect("grad");
                        (
                            y.detach().into_data().try_to_vec::<f32>().expect("f32"),
                            g.into_data().try_to_vec::<f32>().expect("f32"),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        for (y, g) in results {
            assert_eq!(y, vec![3.0, 4.5, 7.0]);
            assert_eq!(g, vec![11.0, 22.0, 33.0]);
        }
    }
}
