//! Box regression losses (mmdetection's `L1Loss`, `SmoothL1Loss`, `GIoULoss`), element-wise
//! then reduced as `weight_reduce_loss` does. Predictions and targets are `[N, 4]`.

use burn::tensor::Tensor;

use crate::error::Result;
use crate::losses::Reduction;
use crate::losses::common::reduce;

/// `|pred - target|` summed over the 4 coordinates of each row, `[N]`.
fn rows<F: Fn(Tensor<2>) -> Tensor<2>>(pred: Tensor<2>, target: Tensor<2>, f: F) -> Tensor<1> {
    let [n, _] = pred.dims();
    f((pred - target).abs()).sum_dim(1).reshape([n])
}

/// L1 loss; with "mean" the average is over all N x 4 elements (or the sum over `avg_factor`).
pub fn l1_loss(
    pred: Tensor<2>,
    target: Tensor<2>,
    reduction: Reduction,
    avg_factor: Option<f64>,
) -> Result<Tensor<1>> {
    elementwise(pred, target, reduction, avg_factor, |d| d)
}

/// Smooth L1 loss: `0.5 d² / beta` below `beta`, `d - 0.5 beta` above (mmdetection default
/// beta 1.0).
pub fn smooth_l1_loss(
    pred: Tensor<2>,
    target: Tensor<2>,
    beta: f64,
    reduction: Reduction,
    avg_factor: Option<f64>,
) -> Result<Tensor<1>> {
    elementwise(pred, target, reduction, avg_factor, move |d| {
        let small = d.clone().lower_elem(beta);
        let quad = d.clone().powf_scalar(2.0).mul_scalar(0.5 / beta);
        let lin = d.sub_scalar(0.5 * beta);
        lin.mask_where(small, quad)
    })
}

fn elementwise<F: Fn(Tensor<2>) -> Tensor<2>>(
    pred: Tensor<2>,
    target: Tensor<2>,
    reduction: Reduction,
    avg_factor: Option<f64>,
    f: F,
) -> Result<Tensor<1>> {
    let [n, k] = pred.dims();
    match (reduction, avg_factor) {
        // mmdetection averages box losses over elements, not rows.
        (Reduction::Mean, None) => Ok(rows(pred, target, f)
            .sum()
            .div_scalar((n * k).max(1) as f64)),
        _ => reduce(rows(pred, target, f), None, reduction, avg_factor),
    }
}

/// GIoU loss `1 - GIoU` per row (eps 1e-6 in the unions), reduced over rows; boxes are
/// `[x1, y1, x2, y2]`.
pub fn giou_loss(
    pred: Tensor<2>,
    target: Tensor<2>,
    reduction: Reduction,
    avg_factor: Option<f64>,
) -> Result<Tensor<1>> {
    let [n, _] = pred.dims();
    let col = |t: &Tensor<2>, k: usize| t.clone().slice([0..n, k..k + 1]).reshape([n]);
    let (px1, py1, px2, py2) = (col(&pred, 0), col(&pred, 1), col(&pred, 2), col(&pred, 3));
    let (tx1, ty1, tx2, ty2) = (
        col(&target, 0),
        col(&target, 1),
        col(&target, 2),
        col(&target, 3),
    );
    let area_p = (px2.clone() - px1.clone()) * (py2.clone() - py1.clone());
    let area_t = (tx2.clone() - tx1.clone()) * (ty2.clone() - ty1.clone());
    let iw = (px2.clone().min_pair(tx2.clone()) - px1.clone().max_pair(tx1.clone())).clamp_min(0.0);
    let ih = (py2.clone().min_pair(ty2.clone()) - py1.clone().max_pair(ty1.clone())).clamp_min(0.0);
    let inter = iw * ih;
    let union = (area_p + area_t - inter.clone()).add_scalar(1e-6);
    let iou = inter / union.clone();
    let ew = (px2.max_pair(tx2) - px1.min_pair(tx1)).clamp_min(0.0);
    let eh = (py2.max_pair(ty2) - py1.min_pair(ty1)).clamp_min(0.0);
    let enclose = (ew * eh).add_scalar(1e-6);
    let giou = iou - (enclose.clone() - union) / enclose;
    reduce(giou.neg().add_scalar(1.0), None, reduction, avg_factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn t(v: Vec<f32>) -> Tensor<2> {
        let n = v.len() / 4;
        Tensor::from_data(TensorData::new(v, [n, 4]), &Device::flex())
    }

    fn value(x: Tensor<1>) -> f64 {
        x.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()[0]
    }

    #[test]
    fn losses_by_hand() {
        let p = t(vec![0.0, 0.0, 2.0, 2.0]);
        let g = t(vec![0.5, 0.0, 4.0, 2.0]);
        // |d| = 0.5, 0, 2, 0: L1 mean over 4 elements.
        assert!(
            (value(l1_loss(p.clone(), g.clone(), Reduction::Mean, None).unwrap()) - 2.5 / 4.0)
                .abs()
                < 1e-6
        );
        // Smooth L1 (beta 1): 0.125 + 0 + 1.5 + 0.
        assert!(
            (value(smooth_l1_loss(p.clone(), g.clone(), 1.0, Reduction::Sum, None).unwrap())
                - 1.625)
                .abs()
                < 1e-6
        );
        // IoU = 3 / 8; enclosing 4 x 2 = 8 = union: GIoU = IoU, loss 5/8.
        assert!(
            (value(giou_loss(p.clone(), g, Reduction::Mean, None).unwrap()) - 0.625).abs() < 1e-5
        );
        // Disjoint boxes: IoU 0, enclosing 4 x 2, union 2 + 2: GIoU = -0.5, loss 1.5.
        let far = t(vec![3.0, 0.0, 4.0, 2.0]);
        let near = t(vec![0.0, 0.0, 1.0, 2.0]);
        assert!((value(giou_loss(near, far, Reduction::Mean, None).unwrap()) - 1.5).abs() < 1e-5);
    }
}
