//! CARAFE's reassembly (Wang et al., "CARAFE: Content-Aware ReAssembly of FEatures", ICCV
//! 2019), with the semantics of mmcv's `carafe` op (mmcv/ops/carafe.py and its kernels): each
//! output pixel is a weighted sum of the `k x k` neighbourhood, in the input, of the pixel it
//! comes from, with weights predicted for that output pixel.
//!
//! Composed of padding, shifted slices, a stack and one batched matmul (the k x k taps of each source
//! pixel against its output pixels' weights), so autodiff gives the
//! input and weight gradients on every backend (mmcv's CUDA kernel has no counterpart in burn).

use burn::tensor::Tensor;
use burn::tensor::ops::PadMode;

use crate::error::{ModelError, Result};

/// Nearest upsampling by an integer factor: `[N, C, H, W]` -> `[N, C, H s, W s]`.
pub fn upsample_nearest(x: Tensor<4>, s: usize) -> Tensor<4> {
    if s == 1 {
        return x;
    }
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1])
        .expand([n, c, h, s, w, s])
        .reshape([n, c, h * s, w * s])
}

/// `out[n, ch, oh, ow] = sum over i, j < k of mask[n, g * k^2 + i * k + j, oh, ow] *
/// x[n, ch, oh / s + i - (k - 1) / 2, ow / s + j - (k - 1) / 2]`, reading zero outside the
/// map, where `g = ch / (C / groups)`: `x` `[N, C, H, W]`, `mask` `[N, groups * k^2, H s, W s]`
/// (normally softmax-normalised over each group's `k^2` weights) -> `[N, C, H s, W s]`.
///
/// # Errors
/// [`ModelError::Input`] when the shapes do not fit or `k` is even.
pub fn carafe(
    x: Tensor<4>,
    mask: Tensor<4>,
    up_kernel: usize,
    up_group: usize,
    scale: usize,
) -> Result<Tensor<4>> {
    let [n, c, h, w] = x.dims();
    let k = up_kernel;
    let (hs, ws) = (h * scale, w * scale);
    if k % 2 == 0 || up_group == 0 || c % up_group != 0 || scale == 0 {
        return Err(ModelError::Input(format!(
            "carafe: up_kernel {k} must be odd, up_group {up_group} must divide {c} channels, \
             scale {scale} positive"
        )));
    }
    if mask.dims() != [n, up_group * k * k, hs, ws] {
        return Err(ModelError::Input(format!(
            "carafe: mask is {:?}, expected {:?}",
            mask.dims(),
            [n, up_group * k * k, hs, ws]
        )));
    }
    Ok(carafe_unchecked(x, mask, up_kernel, up_group, scale))
}

/// [`carafe`] without the checks, for a caller whose mask fits by construction (the layer's own
/// predictor) and whose `up_kernel` is odd and `up_group` divides the channels.
pub(crate) fn carafe_unchecked(
    x: Tensor<4>,
    mask: Tensor<4>,
    up_kernel: usize,
    up_group: usize,
    scale: usize,
) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let (k, g, s) = (up_kernel, up_group, scale);
    let (k2, cg) = (k * k, c / g);
    let r = (k - 1) / 2;
    let padded = x.pad((r, r, r, r), PadMode::Constant(0.0));
    // The k*k shifted copies of the map at its own resolution (tap i * k + j reads row
    // y + i - r, column x + j - r): [N, C, k2, H, W] -> [N, G, H, W, C / G, k2].
    let taps: Vec<Tensor<4>> = (0..k2)
        .map(|t| {
            let (i, j) = (t / k, t % k);
            padded.clone().slice([0..n, 0..c, i..i + h, j..j + w])
        })
        .collect();
    let taps = Tensor::stack::<5>(taps, 2)
        .reshape([n, g, cg, k2, h, w])
        .permute([0, 1, 4, 5, 2, 3]);
    // Each source pixel's s*s output pixels with their k2 weights: [N, G, H, W, k2, s * s].
    let weights = mask
        .reshape([n, g, k2, h, s, w, s])
        .permute([0, 1, 3, 5, 2, 4, 6])
        .reshape([n, g, h, w, k2, s * s]);
    // One small matmul per source pixel and group, [C / G, k2] x [k2, s * s], back to the
    // output's layout.
    taps.matmul(weights)
        .reshape([n, g, h, w, cg, s, s])
        .permute([0, 1, 4, 2, 5, 3, 6])
        .reshape([n, c, h * s, w * s])
}
