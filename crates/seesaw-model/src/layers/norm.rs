//! Norm and convolution choices of mmcv's `norm_cfg` and `conv_cfg`: batch norm or group norm
//! (Wu and He, "Group Normalization", ECCV 2018) and plain or weight-standardised
//! convolutions (Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and Weight
//! Standardization", 2019; mmcv's `ConvWS2d`, mmcv/cnn/bricks/conv_ws.py), as mmdetection's
//! `configs/gn/` and `configs/gn+ws/` set them in backbone, neck and heads.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Norm kind (mmcv's `norm_cfg.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    /// No norm (mmcv's `norm_cfg=None`): the convolution keeps its bias.
    #[default]
    None,
    /// Batch norm (`BN`).
    #[serde(alias = "BN")]
    Bn,
    /// Group norm (`GN`, with `num_groups`).
    #[serde(alias = "GN")]
    Gn,
    /// Synchronised batch norm (mmcv's `SyncBN`, PyTorch's `SyncBatchNorm`): in training, the
    /// batch statistics are those of the global batch, over every data-parallel replica; on
    /// one process it is batch norm. Same parameters and names as `bn`.
    #[serde(rename = "syncbn", alias = "SyncBN")]
    SyncBn,
}

/// mmcv's `norm_cfg`: `{ type = "gn", num_groups = 32 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormConfig {
    /// Default `none` (the backbone's default is `bn`).
    #[serde(rename = "type")]
    pub kind: NormKind,
    /// Groups of a group norm. Default 32.
    pub num_groups: usize,
    /// Added to the variance (mmcv's and PyTorch's `eps`). Default 1e-5; torchvision's COCO
    /// detection models run their frozen batch norms with 0 (`overwrite_eps(model, 0.0)`).
    pub eps: f64,
}

impl Default for NormConfig {
    fn default() -> Self {
        Self {
            kind: NormKind::None,
            num_groups: 32,
            eps: 1e-5,
        }
    }
}

impl NormConfig {
    /// Batch norm.
    pub fn bn() -> Self {
        Self {
            kind: NormKind::Bn,
            ..Default::default()
        }
    }

    /// Checks that a group norm's groups divide every channel count in `channels`.
    ///
    /// # Errors
    /// [`ModelError::Input`] naming `field` (e.g. `model.neck.norm`).
    pub fn check(&self, field: &str, channels: &[usize]) -> Result<()> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(ModelError::Input(format!(
                "{field}.eps: {} is not a finite value >= 0",
                self.eps
            )));
        }
        if self.kind != NormKind::Gn {
            return Ok(());
        }
        match channels
            .iter()
            .find(|&&c| self.num_groups == 0 || c % self.num_groups != 0)
        {
            Some(c) => Err(ModelError::Input(format!(
                "{field}.num_groups: {} groups do not divide {c} channels",
                self.num_groups
            ))),
            None => Ok(()),
        }
    }

    /// A norm over `channels` (weight 1, bias 0); `eval` keeps a batch norm on its running
    /// statistics (mmdetection's `norm_eval`). None for `type = "none"`.
    pub fn init(&self, channels: usize, eval: bool, device: &Device) -> Option<Norm> {
        match self.kind {
            NormKind::None => None,
            NormKind::Bn | NormKind::SyncBn => {
                let mut bn = BatchNormConfig::new(channels)
                    .with_epsilon(self.burn_eps())
                    .init(device);
                if eval {
                    bn.training = Param::from_bool(false);
                }
                Some(if self.kind == NormKind::SyncBn {
                    Norm::Sync(bn)
                } else {
                    Norm::Batch(bn)
                })
            }
            NormKind::Gn => Some(Norm::Group(
                GroupNormConfig::new(self.num_groups, channels)
                    .with_epsilon(self.burn_eps())
                    .init(device),
            )),
        }
    }

    /// `eps` as burn's norms take it: they refuse 0, so 0 becomes the smallest positive double,
    /// which is 0 once added in single precision.
    fn burn_eps(&self) -> f64 {
        if self.eps > 0.0 {
            self.eps
        } else {
            f64::MIN_POSITIVE
        }
    }

    /// mmcv's name stem for the norm layer: `bn` or `gn` (`gn1`, `convs.0.gn`, ...).
    pub fn abbr(&self) -> &'static str {
        match self.kind {
            NormKind::Gn => "gn",
            NormKind::None | NormKind::Bn | NormKind::SyncBn => "bn",
        }
    }
}

/// A batch, synchronised batch or group norm; the parameter names are the layer's own.
#[derive(Module, Debug)]
pub enum Norm {
    Batch(BatchNorm),
    Group(GroupNorm),
    /// A batch norm whose training statistics are the global batch's ([`sync_batch_norm`]).
    Sync(BatchNorm),
}

impl Norm {
    /// `[B, C, ...]` -> the same.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Norm::Batch(b) => b.forward(x),
            Norm::Group(g) => g.forward(x),
            Norm::Sync(b) => sync_batch_norm(b, x),
        }
    }
}

/// `bn` on `x` `[B, C, ...]` with the statistics of the global batch: in training (autodiff
/// device, layer not frozen) the per-channel mean and then the (biased) variance are summed
/// over the data-parallel replicas with a differentiable all-reduce
/// ([`crate::distributed::all_reduce_sum`]) before normalising, so the output and every gradient
/// are those of [`BatchNorm`] on the concatenated batch (mmcv's `SyncBN`, PyTorch's
/// `SyncBatchNorm`). The running statistics are updated with the global ones, as burn's batch
/// norm updates its own (momentum 0.1, biased variance). Outside training, or on one replica
/// without a collective, it is `bn.forward`.
pub fn sync_batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    use crate::distributed::{all_reduce_sum, current, global_sum};
    if !(x.device().is_autodiff() && bn.training.is_enabled()) || current().is_none() {
        return bn.forward(x);
    }
    let dims = x.dims();
    let c = dims[1];
    // Two passes, as burn's and PyTorch's batch norms: the mean, then the centred squares
    // (one pass of sums of squares loses digits in single precision).
    let mut stat_shape = [1usize; D];
    stat_shape[1] = c;
    // A replica may hold no element (a share without positive RoIs in a head): it still
    // takes part in every sum, contributing zeros.
    let local = x.shape().num_elements() / c.max(1);
    let per_channel = |t: Tensor<D>| -> Tensor<1> {
        if local == 0 {
            return Tensor::zeros([c], &t.device()) + t.sum().mul_scalar(0.0);
        }
        t.swap_dims(0, 1)
            .reshape([c, local])
            .sum_dim(1)
            .reshape([c])
    };
    let count = global_sum(local as f64).max(1.0);
    let mean = all_reduce_sum(per_channel(x.clone())).div_scalar(count);
    let centred = x - mean.clone().reshape(stat_shape);
    let var = all_reduce_sum(per_channel(centred.clone().square())).div_scalar(count);
    let device = centred.device();
    let momentum = bn.momentum;
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    bn.running_mean.update(
        running_mean
            .mul_scalar(1.0 - momentum)
            .add(mean.clone().detach().mul_scalar(momentum))
            .detach(),
    );
    bn.running_var.update(
        running_var
            .mul_scalar(1.0 - momentum)
            .add(var.clone().detach().mul_scalar(momentum))
            .detach(),
    );
    let inv_std = var.add_scalar(bn.epsilon).sqrt().recip();
    let scale = (inv_std * bn.gamma.val()).reshape(stat_shape);
    centred * scale + bn.beta.val().reshape(stat_shape)
}

/// Convolution kind (mmcv's `conv_cfg.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvKind {
    /// `Conv2d`.
    #[default]
    #[serde(alias = "Conv")]
    Conv,
    /// `ConvWS`: weight standardisation at every forward.
    #[serde(alias = "ConvWS")]
    Ws,
}

/// `conv` applied to `x`, with its weight standardised first when `ws` (mmcv's `ConvWS2d`:
/// per output filter, minus its mean, over its unbiased standard deviation plus 1e-5).
pub fn conv_forward(conv: &Conv2d, x: Tensor<4>, ws: bool) -> Tensor<4> {
    if !ws {
        return conv.forward(x);
    }
    let [_, _, h, w] = x.dims();
    // burn's own rule for each padding kind (its helper is crate-private).
    let same = |k: usize, stride: usize, n: usize| {
        let out = n.div_ceil(stride.max(1));
        let total = if out > 0 {
            ((out - 1) * stride + k).saturating_sub(n)
        } else {
            0
        };
        (total / 2, total - total / 2)
    };
    let ((top, bottom), (left, right)) = match conv.padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Same => (
            same(conv.kernel_size[0], conv.stride[0], h),
            same(conv.kernel_size[1], conv.stride[1], w),
        ),
        PaddingConfig2d::Explicit(t, l, b, r) => ((t, b), (l, r)),
    };
    let weight = conv.weight.val();
    let [o, i, kh, kw] = weight.dims();
    let n = i * kh * kw;
    let flat = weight.reshape([o, n]);
    let mean = flat.clone().mean_dim(1);
    let centred = flat - mean;
    let var = centred
        .clone()
        .square()
        .sum_dim(1)
        .div_scalar((n.max(2) - 1) as f64);
    let std = var.sqrt().add_scalar(1e-5);
    let weight = (centred / std).reshape([o, i, kh, kw]);
    let options = ConvOptions::new_with_padding(
        conv.stride,
        [(top, bottom), (left, right)],
        conv.dilation,
        conv.groups,
    );
    conv2d(x, weight, conv.bias.as_ref().map(|b| b.val()), options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::install;
    use crate::distributed::testing::{Member, ThreadGroup};
    use burn::tensor::{Distribution, TensorData};
    use std::rc::Rc;

    /// Output, input gradient, gamma and beta gradients and the running statistics of a norm
    /// on `x`, under `loss = sum(y * w)`.
    fn run(norm: &Norm, x: Vec<f32>, shape: [usize; 4], w: Vec<f32>) -> [Vec<f32>; 6] {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::from_data(TensorData::new(x, shape), &device).require_grad();
        let y = norm.forward(x.clone());
        let loss = (y.clone() * Tensor::from_data(TensorData::new(w, shape), &device)).sum();
        let grads = loss.backward();
        let (Norm::Batch(bn) | Norm::Sync(bn)) = norm else {
            panic!("a batch norm")
        };
        let v = |t: Tensor<1>| {
            t.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32")
        };
        let v4 = |t: Tensor<4>| {
            t.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32")
        };
        [
            v4(y.detach()),
            v4(x.grad(&grads).expect("x grad")),
            v(bn.gamma.val().grad(&grads).expect("gamma grad")),
            v(bn.beta.val().grad(&grads).expect("beta grad")),
            v(bn.running_mean.value()),
            v(bn.running_var.value()),
        ]
    }

    #[test]
    fn sync_batch_norm_on_two_replicas_is_batch_norm_on_the_whole_batch() {
        let device = Device::flex().autodiff();
        let shape = [4, 3, 5, 6];
        let per_image = 3 * 5 * 6;
        let draw = |seed: u64| -> Vec<f32> {
            device.seed(seed);
            Tensor::<4>::random(shape, Distribution::Normal(2.0, 3.0), &device)
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32")
        };
        let (x, w) = (draw(1), draw(2));
        let affine = |n: &mut BatchNorm| {
            n.gamma = Param::from_tensor(Tensor::from_floats([0.5, 1.5, -2.0], &device));
            n.beta = Param::from_tensor(Tensor::from_floats([0.1, -0.3, 0.7], &device));
        };
        let mut cfg = NormConfig::bn();
        let Some(Norm::Batch(mut whole_bn)) = cfg.init(3, false, &device) else {
            panic!("bn")
        };
        affine(&mut whole_bn);
        let whole = run(&Norm::Batch(whole_bn), x.clone(), shape, w.clone());

        cfg.kind = NormKind::SyncBn;
        let group: &'static ThreadGroup = Box::leak(Box::new(ThreadGroup::new(2)));
        let halves: Vec<[Vec<f32>; 6]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|rank| {
                    let (x, w, cfg) = (&x, &w, &cfg);
                    s.spawn(move || {
                        let _g = install(Rc::new(Member { group, rank }));
                        let device = Device::flex().autodiff();
                        let Some(Norm::Sync(mut bn)) = cfg.init(3, false, &device) else {
                            panic!("syncbn")
                        };
                        affine(&mut bn);
                        let part = |v: &Vec<f32>| {
                            v[rank * 2 * per_image..(rank + 1) * 2 * per_image].to_vec()
                        };
                        run(&Norm::Sync(bn), part(x), [2, 3, 5, 6], part(w))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("replica"))
                .collect()
        });
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            for (i, (p, q)) in a.iter().zip(b).enumerate() {
                assert!(
                    (p - q).abs() <= 1e-4 * (1.0 + q.abs()),
                    "{what}[{i}]: {p} vs {q}"
                );
            }
        };
        let joined = |k: usize| [halves[0][k].clone(), halves[1][k].clone()].concat();
        close(&joined(0), &whole[0], "output");
        close(&joined(1), &whole[1], "input gradient");
        // Parameter gradients: each replica holds its share; their sum is the whole batch's.
        for (k, what) in [(2, "gamma gradient"), (3, "beta gradient")] {
            let sum: Vec<f32> = halves[0][k]
                .iter()
                .zip(&halves[1][k])
                .map(|(a, b)| a + b)
                .collect();
            close(&sum, &whole[k], what);
        }
        for (k, what) in [(4, "running mean"), (5, "running variance")] {
            close(&halves[0][k], &whole[k], what);
            close(&halves[1][k], &whole[k], what);
        }
    }

    #[test]
    fn a_replica_without_elements_still_takes_part() {
        // Replica 0 holds the whole batch, replica 1 none (a share without positive RoIs):
        // replica 0's output is batch norm's, and both finish (no replica waits forever).
        let device = Device::flex().autodiff();
        let shape = [3, 2, 4, 4];
        device.seed(5);
        let x: Vec<f32> = Tensor::<4>::random(shape, Distribution::Normal(1.0, 2.0), &device)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        let w = vec![1.0f32; x.len()];
        let Some(Norm::Batch(bn)) = NormConfig::bn().init(2, false, &device) else {
            panic!("bn")
        };
        let whole = run(&Norm::Batch(bn), x.clone(), shape, w.clone());
        let group: &'static ThreadGroup = Box::leak(Box::new(ThreadGroup::new(2)));
        let out: Vec<Vec<f32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|rank| {
                    let (x, w) = (&x, &w);
                    s.spawn(move || {
                        let _g = install(Rc::new(Member { group, rank }));
                        let device = Device::flex().autodiff();
                        let cfg = NormConfig {
                            kind: NormKind::SyncBn,
                            ..NormConfig::bn()
                        };
                        let Some(norm) = cfg.init(2, false, &device) else {
                            panic!("syncbn")
                        };
                        if rank == 0 {
                            run(&norm, x.clone(), shape, w.clone())[0].clone()
                        } else {
                            let x = Tensor::<4>::zeros([0, 2, 4, 4], &device).require_grad();
                            let loss = norm.forward(x.clone()).sum();
                            let grads = loss.backward();
                            assert!(x.grad(&grads).is_none_or(|g| g.dims()[0] == 0));
                            Vec::new()
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("replica"))
                .collect()
        });
        for (p, q) in out[0].iter().zip(&whole[0]) {
            assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{p} vs {q}");
        }
    }
}
