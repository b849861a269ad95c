//! Pieces every loss shares: tensors from host values and back, row-wise cross-entropy, and
//! mmdetection's `weight_reduce_loss`.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{ModelError, Result};
use crate::losses::Reduction;

/// Reads a float tensor back as f64 values.
pub(crate) fn host(t: Tensor<2>) -> Result<Vec<f64>> {
    crate::readback::to_f64(t)
}

pub(crate) fn index_tensor(idx: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(v, [idx.len()]), device)
}

pub(crate) fn float_tensor<const D: usize>(
    v: Vec<f64>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// `-log_softmax(logits)[n, target_n]`, `[N]`.
pub(crate) fn cross_entropy_rows(logits: Tensor<2>, targets: &[usize]) -> Tensor<1> {
    let device = logits.device();
    let n = targets.len();
    let idx = index_tensor(targets, &device).reshape([n, 1]);
    log_softmax(logits, 1).gather(1, idx).reshape([n]).neg()
}

/// mmdetection's `weight_reduce_loss` on per-row losses `[R]`.
pub(crate) fn reduce(
    loss: Tensor<1>,
    weights: Option<Tensor<1>>,
    reduction: Reduction,
    avg_factor: Option<f64>,
) -> Result<Tensor<1>> {
    let rows = loss.dims()[0];
    let loss = match weights {
        Some(w) => loss * w,
        None => loss,
    };
    Ok(match (reduction, avg_factor) {
        (Reduction::None, _) => loss,
        (Reduction::Sum, None) => loss.sum(),
        (Reduction::Sum, Some(_)) => {
            return Err(ModelError::Input(
                "avg_factor can not be used with reduction \"sum\"".into(),
            ));
        }
        (Reduction::Mean, Some(a)) => loss.sum().div_scalar(a + f64::from(f32::EPSILON)),
        (Reduction::Mean, None) => {
            if rows == 0 {
                loss.sum()
            } else {
                loss.mean()
            }
        }
    })
}

/// Element-wise `binary_cross_entropy_with_logits`, `[N, K]`, computed stably:
/// `max(x, 0) - x * t + log(1 + exp(-|x|))`.
pub(crate) fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<2> {
    let relu = logits.clone().clamp_min(0.0);
    let soft = logits.clone().abs().neg().exp().add_scalar(1.0).log();
    relu - logits * targets + soft
}

/// One-hot rows `[N, K]` of `labels`; a label `>= K` (background) gives a zero row.
pub(crate) fn one_hot(labels: &[usize], k: usize, device: &Device) -> Tensor<2> {
    let mut v = vec![0f64; labels.len() * k];
    for (n, &y) in labels.iter().enumerate() {
        if y < k {
            v[n * k + y] = 1.0;
        }
    }
    float_tensor(v, [labels.len(), k], device)
}

/// Checks the width of a classifier output and the range of its labels.
pub(crate) fn check_input(
    loss: &str,
    cls_score: &Tensor<2>,
    labels: &[usize],
    num_classes: usize,
    width: usize,
) -> Result<usize> {
    let [n, w] = cls_score.dims();
    if w != width {
        return Err(ModelError::Input(format!(
            "{loss} needs cls_score of width {width} for {num_classes} classes, got [{n}, {w}]"
        )));
    }
    if labels.len() != n {
        return Err(ModelError::Input(format!(
            "{} labels for {n} rows of cls_score",
            labels.len()
        )));
    }
    if let Some((i, &y)) = labels.iter().enumerate().find(|(_, y)| **y > num_classes) {
        return Err(ModelError::Input(format!(
            "labels[{i}] = {y}: labels must lie in 0..={num_classes} ({num_classes} is background)"
        )));
    }
    Ok(n)
}

/// Reads any float tensor back as f32 values (row-major).
pub(crate) fn host_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    crate::readback::to_f32(t)
}
