//! Resizing feature maps to a given size: PyTorch's `F.interpolate(x, size, mode='nearest')`
//! and the max-pooling down-size of mmcv's merge cells (mmcv/ops/merge_cells.py,
//! `BaseMergeCell._resize`), which NAS-FPN uses. Both are composed of `select`, padding and
//! pooling, whose gradients are right on every backend.

use burn::tensor::module::max_pool2d;
use burn::tensor::ops::{MaxPoolOptions, PadMode};
use burn::tensor::{Int, Tensor, TensorData};

/// The source index of each of `out` positions read from `len` (PyTorch's legacy `nearest`:
/// `min(floor(i * (len / out)), len - 1)` with the scale in `f32`, as its CPU and CUDA kernels
/// compute it).
fn nearest_indices(len: usize, out: usize) -> Vec<i64> {
    let scale = len as f32 / out as f32;
    (0..out)
        .map(|i| ((i as f32 * scale).floor() as usize).min(len - 1) as i64)
        .collect()
}

/// Nearest-neighbour resize of `[N, C, H, W]` to `[N, C, h, w]`, as
/// `F.interpolate(x, size=(h, w), mode='nearest')`. A map with no rows or columns, or a zero
/// target, gives an empty map of the target size.
pub fn resize_nearest(x: Tensor<4>, h: usize, w: usize) -> Tensor<4> {
    let [n, c, xh, xw] = x.dims();
    if (xh, xw) == (h, w) {
        return x;
    }
    let device = x.device();
    if xh == 0 || xw == 0 || h == 0 || w == 0 {
        return Tensor::zeros([n, c, h, w], &device);
    }
    let pick = |x: Tensor<4>, dim: usize, len: usize, out: usize| {
        if len == out {
            return x;
        }
        let idx =
            Tensor::<1, Int>::from_data(TensorData::new(nearest_indices(len, out), [out]), &device);
        x.select(dim, idx)
    };
    let x = pick(x, 2, xh, h);
    pick(x, 3, xw, w)
}

/// mmcv's merge-cell down-size of `[N, C, H, W]` to `[N, C, h, w]`: each side zero-padded
/// (left/top get half the padding, rounded down) to a multiple of the target, then max-pooled
/// with kernel and stride `(H' / h, W' / w)`. mmcv takes this branch when `(H, W)` is not
/// lexicographically below `(h, w)`, so one side may be padded up to its target and pooled
/// with kernel 1. A zero target or an empty map gives an empty or zero map.
pub fn pool_to(x: Tensor<4>, h: usize, w: usize) -> Tensor<4> {
    let [_, _, xh, xw] = x.dims();
    if h == 0 || w == 0 || xh == 0 || xw == 0 {
        return resize_nearest(x, h, w);
    }
    let (ph, pw) = (xh.div_ceil(h) * h - xh, xw.div_ceil(w) * w - xw);
    let x = if ph > 0 || pw > 0 {
        x.pad(
            (pw / 2, pw - pw / 2, ph / 2, ph - ph / 2),
            PadMode::Constant(0.0),
        )
    } else {
        x
    };
    let [_, _, xh, xw] = x.dims();
    let k = [xh / h, xw / w];
    if k == [1, 1] {
        return x;
    }
    max_pool2d(x, MaxPoolOptions::new(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn nearest_indices_follow_pytorch() {
        // torch: F.interpolate(torch.arange(8.).view(1, 1, 1, 8), size=(1, 15)) reads these.
        assert_eq!(
            nearest_indices(8, 15),
            vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7]
        );
        assert_eq!(nearest_indices(3, 8), vec![0, 0, 0, 1, 1, 1, 2, 2]);
        assert_eq!(nearest_indices(4, 2), vec![0, 2]);
    }

    #[test]
    fn pool_to_pads_with_zeros_then_pools() {
        let device = Device::flex();
        // 1 x 3 -> 1 x 2: padded to 1 x 4 (one zero on the right), kernel (1, 2).
        let x = Tensor::<4>::from_data([[[[-1.0f32, -2.0, -3.0]]]], &device);
        let y = pool_to(x, 1, 2)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        assert_eq!(y, vec![-1.0, 0.0]);
        // 5 x 1 -> 3 x 1: padded to 6 (none on top, one below), kernel 2.
        let x = Tensor::<4>::from_data([[[[1.0f32], [5.0], [2.0], [3.0], [-4.0]]]], &device);
        let y = pool_to(x, 3, 1)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        assert_eq!(y, vec![5.0, 3.0, 0.0]);
        // 2 x 1 -> 1 x 3 (mmcv's mixed case): the width is zero-padded to 3, kernel (2, 1).
        let x = Tensor::<4>::from_data([[[[-1.0f32], [-2.0]]]], &device);
        let y = pool_to(x, 1, 3)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        assert_eq!(y, vec![0.0, -1.0, 0.0]);
    }
}
