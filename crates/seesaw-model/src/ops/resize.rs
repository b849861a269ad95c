//! Resizing feature maps to a given size: PyTorch's `F.interpolate(x, size, mode='nearest')`
//! and `mode='bilinear'`, and the max-pooling down-size of mmcv's merge cells
//! (mmcv/ops/merge_cells.py, `BaseMergeCell._resize`), which NAS-FPN uses. All are composed of
//! `select`, matrix products, padding and pooling, whose gradients are right on every backend
//! (burn-cubecl 0.22.1's own bilinear `interpolate` has no backward: it panics on CUDA and wgpu).

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

/// The `[out, len]` interpolation matrix of PyTorch's bilinear resize along one axis
/// (`upsample_bilinear2d`): output `o` reads source `s = (o + 0.5) * len / out - 0.5` clamped
/// at 0, or `s = o * (len - 1) / (out - 1)` with `align_corners`, from rows `floor(s)` and the
/// next (the last row repeats), weighted by the distances.
fn bilinear_matrix(len: usize, out: usize, align_corners: bool) -> Vec<f32> {
    let mut a = vec![0f32; out * len];
    let scale = if align_corners {
        if out > 1 {
            (len - 1) as f32 / (out - 1) as f32
        } else {
            0.0
        }
    } else {
        len as f32 / out as f32
    };
    for o in 0..out {
        let s = if align_corners {
            scale * o as f32
        } else {
            (scale * (o as f32 + 0.5) - 0.5).max(0.0)
        };
        let i0 = (s as usize).min(len - 1);
        let i1 = (i0 + 1).min(len - 1);
        let l1 = s - i0 as f32;
        a[o * len + i0] += 1.0 - l1;
        a[o * len + i1] += l1;
    }
    a
}

/// Bilinear resize of `[N, C, H, W]` to `[N, C, h, w]`, as `F.interpolate(x, size=(h, w),
/// mode='bilinear', align_corners=...)` (mmdetection's `nn.Upsample(scale_factor=2,
/// mode='bilinear', align_corners=False)` is the size-doubling case). Separable: a product
/// with the rows' interpolation matrix and one with the columns', so forward and backward are
/// matrix products on every backend. An empty map or a zero target gives zeros.
pub fn resize_bilinear(x: Tensor<4>, h: usize, w: usize, align_corners: bool) -> Tensor<4> {
    let [n, c, xh, xw] = x.dims();
    let device = x.device();
    if xh == 0 || xw == 0 || h == 0 || w == 0 || n * c == 0 {
        return Tensor::zeros([n, c, h, w], &device);
    }
    let matrix = |len: usize, out: usize| {
        // Transposed, `[len, out]`: the map's rows multiply it from the left.
        Tensor::<2>::from_data(
            TensorData::new(bilinear_matrix(len, out, align_corners), [out, len]),
            &device,
        )
        .transpose()
    };
    // Columns: [N*C*H, W] x [W, w].
    let x = x.reshape([n * c * xh, xw]).matmul(matrix(xw, w));
    // Rows: [N*C*w, H] x [H, h].
    let x = x
        .reshape([n * c, xh, w])
        .swap_dims(1, 2)
        .reshape([n * c * w, xh])
        .matmul(matrix(xh, h));
    x.reshape([n * c, w, h])
        .swap_dims(1, 2)
        .reshape([n, c, h, w])
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
    fn bilinear_follows_pytorch_and_flex_forward_and_backward() {
        use burn::tensor::Distribution;
        use burn::tensor::module::interpolate;
        use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
        let device = Device::flex().autodiff();
        // torch: F.interpolate(torch.arange(4.).view(1, 1, 1, 4), size=(1, 8), mode='bilinear',
        // align_corners=False) and align_corners=True.
        let x = Tensor::<4>::from_data([[[[0.0f32, 1.0, 2.0, 3.0]]]], &device);
        let v = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("f32");
        assert_eq!(
            v(resize_bilinear(x.clone(), 1, 8, false)),
            vec![0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]
        );
        let t = v(resize_bilinear(x, 1, 7, true));
        for (a, b) in t.iter().zip([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]) {
            assert!((a - b).abs() < 1e-6, "{t:?}");
        }
        // Against flex's own bilinear interpolate (which has a backward): up, down, mixed.
        let g_out = |s: [usize; 4]| Tensor::<4>::random(s, Distribution::Default, &device);
        for (size, out, corners) in [
            ([2, 3, 5, 7], [10, 14], false),
            ([1, 2, 6, 4], [3, 9], false),
            ([2, 1, 4, 5], [7, 3], true),
            ([1, 1, 1, 3], [2, 6], true),
        ] {
            let x = Tensor::<4>::random(size, Distribution::Default, &device).require_grad();
            let w = g_out([size[0], size[1], out[0], out[1]]);
            let ours = resize_bilinear(x.clone(), out[0], out[1], corners);
            let theirs = interpolate(
                x.clone(),
                InterpolateOptions::new(InterpolateMode::Bilinear)
                    .with_output_size(out)
                    .with_align_corners(corners),
            );
            let (a, b) = (v(ours.clone()), v(theirs.clone()));
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() < 1e-5, "{size:?} -> {out:?}: {p} vs {q}");
            }
            let ga = x.grad(&(ours * w.clone()).sum().backward()).expect("grad");
            let gb = x.grad(&(theirs * w).sum().backward()).expect("grad");
            for (p, q) in ga
                .into_data()
                .iter::<f32>()
                .zip(gb.into_data().iter::<f32>())
            {
                assert!((p - q).abs() < 1e-5, "{size:?} -> {out:?} grad: {p} vs {q}");
            }
        }
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
