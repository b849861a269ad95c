//! SEESAW-PATCH (see `SEESAW-PATCH.md`): 2D convolution backward as im2col + GEMM.
//!
//! Upstream burn-flex 0.22.1 leaves `conv2d_{x,weight,bias}_backward` and
//! `conv_transpose2d_{weight,bias}_backward` to burn-backend's generic defaults. The weight
//! gradient there is a convolution of `x.swap(0, 1)` with `dy.swap(0, 1)` as its kernel: a
//! matrix product whose `n` is the kernel's handful of output pixels, after two layout copies.
//! This module computes, per image `b` and spatial tile `[p0, p1)` of the output,
//!
//! - weight gradient: `dW_g += dY_b,g[:, tile] @ col_b,g[:, tile]^T` where `col` is the im2col
//!   matrix `[C_in/groups * kh * kw, tile]` of the input (`[C_out/groups, C_in/groups*kh*kw]`
//!   per group, the weight's own layout);
//! - input gradient: `dcol = W_g^T @ dY_b,g[:, tile]`, scattered back into `dx_b` (col2im);
//! - bias gradient: a per-channel sum.
//!
//! 1x1 convolutions with stride 1 and no padding skip im2col/col2im (the input is its own col).
//!
//! Work is split into a fixed number of chunks that does not depend on the thread count, and the
//! chunks' partial weight gradients are added in chunk order; `gemm` splits only the output's rows
//! and columns across threads. So on one machine results do not depend on `RAYON_NUM_THREADS`.
//! (Across machines they may differ in the last bits: `gemm` picks its blocking and SIMD kernels
//! from the CPU it runs on.)
//!
//! The scheme is the textbook one of Caffe's `conv_layer` / `base_conv_layer.cpp`
//! (`weight_cpu_gemm`: `dW += dY @ col^T`, `backward_cpu_gemm`: `col2im(W^T @ dY)`), tiled and
//! parallelised here.
//!
//! The transposed convolution's weight gradient is the same computation with the roles swapped:
//! for `y = conv_transpose2d(x, w)`, `dW = weight_grad(input = dy, out_grad = x)` under the same
//! stride / padding / dilation (an output position `o = i * s - p + k * d` of the transposed
//! convolution is the input position of the matching convolution).

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape};

use crate::{FlexTensor, Layout};

/// Upper bound on the im2col tile, in elements (4 MiB of f32).
const COL_TILE_ELEMS: usize = 1 << 20;
/// Smallest spatial tile worth a GEMM call.
const MIN_TILE: usize = 64;
/// Number of independent partial weight gradients (fixed so that results do not depend on the
/// thread count).
const WEIGHT_GRAD_CHUNKS: usize = 8;

/// Element types the kernels run on natively (`gemm` supports both).
pub(crate) trait ConvElem:
    burn_backend::Element + bytemuck::Pod + Copy + Send + Sync + 'static + core::ops::AddAssign + PartialEq
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity (GEMM's `alpha` / `beta`).
    const ONE: Self;
    /// The tensor dtype of this element type.
    const DTYPE: DType;
}

impl ConvElem for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const DTYPE: DType = DType::F32;
}

impl ConvElem for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const DTYPE: DType = DType::F64;
}

/// The geometry of one 2D convolution `input [B, C_in, H, W] -> out [B, C_out, OH, OW]` with a
/// weight `[C_out, C_in / groups, kh, kw]`. `OH`/`OW` are taken from the output gradient, so
/// asymmetric padding and output padding need no special case. Built only by
/// [`Geometry::new`], which checks that the three shapes agree: the kernels hand raw pointers
/// to `gemm`, and these sizes bound what it reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
}

impl Geometry {
    /// The geometry of a convolution from the shapes of its input `[B, C_in, H, W]`, weight
    /// `[C_out, C_in / groups, kh, kw]` and output gradient `[B, C_out, OH, OW]`.
    ///
    /// # Panics
    /// Shapes that are not 4D or do not agree (batch, channels, groups), zero stride, dilation
    /// or groups: the same inputs the forward convolution refuses.
    fn new(
        input: &[usize],
        weight: &[usize],
        out: &[usize],
        stride: [usize; 2],
        pad: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> Self {
        assert!(
            input.len() == 4 && weight.len() == 4 && out.len() == 4,
            "conv2d backward: 4D tensors expected, got {input:?}, {weight:?}, {out:?}"
        );
        assert!(
            groups > 0 && stride.iter().chain(&dilation).all(|&v| v > 0),
            "conv2d backward: stride, dilation and groups must be positive"
        );
        assert!(
            weight[1] * groups == input[1] && weight[0] % groups == 0,
            "conv2d backward: weight {weight:?} does not fit input {input:?} with {groups} groups"
        );
        assert!(
            out[0] == input[0] && out[1] == weight[0],
            "conv2d backward: output gradient {out:?} does not fit input {input:?} and weight {weight:?}"
        );
        Self {
            batch: input[0],
            c_in: input[1],
            h: input[2],
            w: input[3],
            c_out: weight[0],
            oh: out[2],
            ow: out[3],
            kh: weight[2],
            kw: weight[3],
            stride,
            pad,
            dilation,
            groups,
        }
    }

    fn ci_g(&self) -> usize {
        self.c_in / self.groups
    }
    fn co_g(&self) -> usize {
        self.c_out / self.groups
    }
    /// Rows of one group's im2col matrix.
    fn rows_g(&self) -> usize {
        self.ci_g() * self.kh * self.kw
    }
    fn spatial_out(&self) -> usize {
        self.oh * self.ow
    }
    fn spatial_in(&self) -> usize {
        self.h * self.w
    }
    /// Whether the input is its own im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && self.oh == self.h
            && self.ow == self.w
    }
    /// Spatial tile length: im2col tiles stay under [`COL_TILE_ELEMS`].
    fn tile(&self) -> usize {
        let p = self.spatial_out().max(1);
        let rows = (self.c_in * self.kh * self.kw).max(1);
        (COL_TILE_ELEMS / rows).max(MIN_TILE).min(p)
    }
    fn tiles(&self) -> usize {
        self.spatial_out().div_ceil(self.tile())
    }
}

/// For kernel offset `k` along one axis: the output positions `o` in `[0, out)` whose input
/// position `o * stride - pad + k * dilation` lies in `[0, size)`, as a half-open range.
#[inline]
fn valid_range(k: usize, out: usize, size: usize, stride: usize, pad: usize, dil: usize) -> (usize, usize) {
    let shift = (k * dil) as isize - pad as isize;
    // o * stride + shift >= 0  <=>  o >= ceil(-shift / stride)
    let lo = if shift >= 0 {
        0
    } else {
        ((-shift) as usize).div_ceil(stride)
    };
    // o * stride + shift <= size - 1  <=>  o <= floor((size - 1 - shift) / stride)
    let top = size as isize - 1 - shift;
    let hi = if top < 0 { 0 } else { (top as usize / stride + 1).min(out) };
    (lo.min(hi), hi)
}

/// im2col of image rows `[c0, c1)` of one image (`x_img`: `[C_in, H, W]`) over output pixels
/// `[p0, p1)`: `col[(c - c0) * kh * kw + i * kw + j][p - p0]`.
fn im2col_tile<T: ConvElem>(
    x_img: &[T],
    g: &Geometry,
    c0: usize,
    c1: usize,
    p0: usize,
    p1: usize,
    col: &mut [T],
) {
    let tp = p1 - p0;
    let hw = g.spatial_in();
    let [sh, sw] = g.stride;
    let [ph, pw] = g.pad;
    let [dh, dw] = g.dilation;
    for c in c0..c1 {
        let plane = &x_img[c * hw..(c + 1) * hw];
        for i in 0..g.kh {
            let (oy_lo, oy_hi) = valid_range(i, g.oh, g.h, sh, ph, dh);
            for j in 0..g.kw {
                let (ox_lo, ox_hi) = valid_range(j, g.ow, g.w, sw, pw, dw);
                let r = ((c - c0) * g.kh + i) * g.kw + j;
                let row = &mut col[r * tp..(r + 1) * tp];
                let mut p = p0;
                while p < p1 {
                    let oy = p / g.ow;
                    let ox0 = p % g.ow;
                    let ox1 = g.ow.min(ox0 + (p1 - p));
                    let out = &mut row[p - p0..p - p0 + (ox1 - ox0)];
                    if oy < oy_lo || oy >= oy_hi {
                        out.fill(T::ZERO);
                    } else {
                        let iy = oy * sh + i * dh - ph;
                        let src = &plane[iy * g.w..(iy + 1) * g.w];
                        let a = ox_lo.clamp(ox0, ox1);
                        let b = ox_hi.clamp(a, ox1);
                        out[..a - ox0].fill(T::ZERO);
                        out[b - ox0..].fill(T::ZERO);
                        // ix = ox * sw + j * dw - pw, in range for ox in [a, b).
                        if a < b {
                            let ix0 = a * sw + j * dw - pw;
                            let dst = &mut out[a - ox0..b - ox0];
                            if sw == 1 {
                                dst.copy_from_slice(&src[ix0..ix0 + (b - a)]);
                            } else {
                                for (k, d) in dst.iter_mut().enumerate() {
                                    *d = src[ix0 + k * sw];
                                }
                            }
                        }
                    }
                    p += ox1 - ox0;
                }
            }
        }
    }
}

/// col2im: adds `col` (rows of channels `[c0, c1)`, columns = output pixels `[p0, p1)`) into
/// one image's input gradient `dx_img` (`[C_in, H, W]`, only channels `[c0, c1)` touched).
fn col2im_tile<T: ConvElem>(
    col: &[T],
    g: &Geometry,
    c0: usize,
    c1: usize,
    p0: usize,
    p1: usize,
    dx_planes: &mut [T],
) {
    let tp = p1 - p0;
    let hw = g.spatial_in();
    let [sh, sw] = g.stride;
    let [ph, pw] = g.pad;
    let [dh, dw] = g.dilation;
    for c in c0..c1 {
        let plane = &mut dx_planes[(c - c0) * hw..(c - c0 + 1) * hw];
        for i in 0..g.kh {
            let (oy_lo, oy_hi) = valid_range(i, g.oh, g.h, sh, ph, dh);
            for j in 0..g.kw {
                let (ox_lo, ox_hi) = valid_range(j, g.ow, g.w, sw, pw, dw);
                let r = ((c - c0) * g.kh + i) * g.kw + j;
                let row = &col[r * tp..(r + 1) * tp];
                let mut p = p0;
                while p < p1 {
                    let oy = p / g.ow;
                    let ox0 = p % g.ow;
                    let ox1 = g.ow.min(ox0 + (p1 - p));
                    if oy >= oy_lo && oy < oy_hi {
                        let iy = oy * sh + i * dh - ph;
                        let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                        let a = ox_lo.clamp(ox0, ox1);
                        let b = ox_hi.clamp(a, ox1);
                        if a < b {
                            let ix0 = a * sw + j * dw - pw;
                            let src = &row[p - p0 + (a - ox0)..p - p0 + (b - ox0)];
                            if sw == 1 {
                                for (d, &s) in dst[ix0..ix0 + (b - a)].iter_mut().zip(src) {
                                    *d += s;
                                }
                            } else {
                                for (k, &s) in src.iter().enumerate() {
                                    dst[ix0 + k * sw] += s;
                                }
                            }
                        }
                    }
                    p += ox1 - ox0;
                }
            }
        }
    }
}

/// `dst[m x n] (row stride dst_rs) (+)= lhs[m x k] @ rhs[k x n]`, strides in elements.
///
/// # Safety
/// Every element the strides address (`dst + i * dst_rs + j`, `lhs + i * lhs_rs + l * lhs_cs`,
/// `rhs + l * rhs_rs + j * rhs_cs` for `i < m`, `j < n`, `l < k`) must lie inside a live
/// allocation, and `dst` must not alias `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn gemm_strided<T: ConvElem>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: isize,
    accumulate: bool,
    lhs: *const T,
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: *const T,
    rhs_rs: isize,
    rhs_cs: isize,
    parallelism: gemm::Parallelism,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs,
            accumulate,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Weight gradient of a 2D convolution: `input [B, C_in, H, W]`, `out_grad [B, C_out, OH, OW]`
/// -> `[C_out, C_in / groups, kh, kw]`.
pub(crate) fn weight_grad<T: ConvElem>(input: &[T], out_grad: &[T], g: &Geometry) -> Vec<T> {
    let rows_g = g.rows_g();
    let co_g = g.co_g();
    let w_len = g.c_out * rows_g;
    let p_out = g.spatial_out();
    let tile = g.tile();
    let n_tiles = g.tiles();
    let items = g.batch * n_tiles;
    if items == 0 || w_len == 0 {
        return vec![T::ZERO; w_len];
    }
    let chunks = WEIGHT_GRAD_CHUNKS.min(items);
    let in_img = g.c_in * g.spatial_in();
    let out_img = g.c_out * p_out;
    let pointwise = g.is_pointwise();

    let run_chunk = |chunk: usize| -> Vec<T> {
        let mut acc = vec![T::ZERO; w_len];
        let mut col = if pointwise {
            Vec::new()
        } else {
            vec![T::ZERO; g.c_in * g.kh * g.kw * tile]
        };
        let (start, end) = (items * chunk / chunks, items * (chunk + 1) / chunks);
        for item in start..end {
            let (b, t) = (item / n_tiles, item % n_tiles);
            let p0 = t * tile;
            let p1 = (p0 + tile).min(p_out);
            let tp = p1 - p0;
            let x_img = &input[b * in_img..(b + 1) * in_img];
            let dy_img = &out_grad[b * out_img..(b + 1) * out_img];
            if !pointwise {
                im2col_tile(x_img, g, 0, g.c_in, p0, p1, &mut col[..g.c_in * g.kh * g.kw * tp]);
            }
            for grp in 0..g.groups {
                // rhs[p, r] = col_g[r, p]
                let (rhs, rhs_rs, rhs_cs) = if pointwise {
                    (
                        x_img[grp * rows_g * p_out + p0..].as_ptr(),
                        1,
                        p_out as isize,
                    )
                } else {
                    (col[grp * rows_g * tp..].as_ptr(), 1, tp as isize)
                };
                // SAFETY: `acc` holds C_out x rows_g; `dy_img` (C_out x P) is read at rows
                // [grp*co_g, (grp+1)*co_g), columns [p0, p1); the rhs is `x_img` (C_in x P,
                // pointwise) or `col` (C_in*kh*kw x tp), read at rows of group `grp`, columns
                // < tp: all inside slices whose sizes `Geometry::new` tied to these dimensions.
                unsafe {
                    gemm_strided(
                        co_g,
                        rows_g,
                        tp,
                        acc[grp * co_g * rows_g..].as_mut_ptr(),
                        rows_g as isize,
                        true,
                        dy_img[grp * co_g * p_out + p0..].as_ptr(),
                        p_out as isize,
                        1,
                        rhs,
                        rhs_rs,
                        rhs_cs,
                        gemm::Parallelism::None,
                    );
                }
            }
        }
        acc
    };

    #[cfg(feature = "rayon")]
    let partials: Vec<Vec<T>> = {
        use rayon::prelude::*;
        (0..chunks).into_par_iter().map(run_chunk).collect()
    };
    #[cfg(not(feature = "rayon"))]
    let partials: Vec<Vec<T>> = (0..chunks).map(run_chunk).collect();

    let mut partials = partials.into_iter();
    let mut total = partials.next().unwrap_or_else(|| vec![T::ZERO; w_len]);
    for part in partials {
        for (t, p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    total
}

/// Input gradient of one image: `dx_img [C_in, H, W]` from `dy_img [C_out, OH, OW]` and the
/// weight `[C_out, C_in / groups * kh * kw]`.
fn input_grad_image<T: ConvElem>(
    weight: &[T],
    dy_img: &[T],
    g: &Geometry,
    dx_img: &mut [T],
    parallel_inside: bool,
) {
    let rows_g = g.rows_g();
    let co_g = g.co_g();
    let ci_g = g.ci_g();
    let p_out = g.spatial_out();
    let hw = g.spatial_in();
    #[cfg(feature = "rayon")]
    let parallelism = if parallel_inside {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    #[cfg(not(feature = "rayon"))]
    let parallelism = gemm::Parallelism::None;
    if g.is_pointwise() {
        for grp in 0..g.groups {
            // dx_g [ci_g, P] = W_g^T [ci_g, co_g] @ dy_g [co_g, P]
            // SAFETY: `dx_img` is C_in x P (pointwise: H*W = P), `weight` C_out x ci_g, `dy_img`
            // C_out x P; every row/column index stays below those bounds (`Geometry::new`).
            unsafe {
                gemm_strided(
                    ci_g,
                    p_out,
                    co_g,
                    dx_img[grp * ci_g * hw..].as_mut_ptr(),
                    hw as isize,
                    false,
                    weight[grp * co_g * rows_g..].as_ptr(),
                    1,
                    rows_g as isize,
                    dy_img[grp * co_g * p_out..].as_ptr(),
                    p_out as isize,
                    1,
                    parallelism,
                );
            }
        }
        return;
    }
    dx_img.fill(T::ZERO);
    let tile = g.tile();
    let mut dcol = vec![T::ZERO; g.c_in * g.kh * g.kw * tile];
    let mut p0 = 0;
    while p0 < p_out {
        let p1 = (p0 + tile).min(p_out);
        let tp = p1 - p0;
        for grp in 0..g.groups {
            // dcol_g [rows_g, tp] = W_g^T [rows_g, co_g] @ dy_g[:, tile] [co_g, tp]
            // SAFETY: `dcol` holds C_in*kh*kw x tile >= groups*rows_g x tp, `weight` C_out x
            // rows_g, `dy_img` C_out x P read at columns [p0, p0 + tp) (`Geometry::new`).
            unsafe {
                gemm_strided(
                    rows_g,
                    tp,
                    co_g,
                    dcol[grp * rows_g * tp..].as_mut_ptr(),
                    tp as isize,
                    false,
                    weight[grp * co_g * rows_g..].as_ptr(),
                    1,
                    rows_g as isize,
                    dy_img[grp * co_g * p_out + p0..].as_ptr(),
                    p_out as isize,
                    1,
                    parallelism,
                );
            }
        }
        let dcol_tile = &dcol[..g.c_in * g.kh * g.kw * tp];
        #[cfg(feature = "rayon")]
        let k = g.kh * g.kw;
        if parallel_inside && g.c_in > 1 {
            // Each channel's rows scatter into its own plane: no two threads write one place.
            #[cfg(feature = "rayon")]
            {
                use rayon::prelude::*;
                dx_img.par_chunks_mut(hw).enumerate().for_each(|(c, plane)| {
                    col2im_tile(&dcol_tile[c * k * tp..(c + 1) * k * tp], g, c, c + 1, p0, p1, plane);
                });
            }
            #[cfg(not(feature = "rayon"))]
            col2im_tile(dcol_tile, g, 0, g.c_in, p0, p1, dx_img);
        } else {
            col2im_tile(dcol_tile, g, 0, g.c_in, p0, p1, dx_img);
        }
        p0 = p1;
    }
}

/// Input gradient of a 2D convolution: `weight [C_out, C_in / groups, kh, kw]`,
/// `out_grad [B, C_out, OH, OW]` -> `[B, C_in, H, W]`.
pub(crate) fn input_grad<T: ConvElem>(weight: &[T], out_grad: &[T], g: &Geometry) -> Vec<T> {
    let in_img = g.c_in * g.spatial_in();
    let out_img = g.c_out * g.spatial_out();
    let mut dx = vec![T::ZERO; g.batch * in_img];
    if in_img == 0 {
        return dx;
    }
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        let threads = rayon::current_num_threads();
        if threads > 1 && g.batch >= threads {
            dx.par_chunks_mut(in_img).enumerate().for_each(|(b, dx_img)| {
                input_grad_image(weight, &out_grad[b * out_img..(b + 1) * out_img], g, dx_img, false);
            });
            return dx;
        }
        for (b, dx_img) in dx.chunks_mut(in_img).enumerate() {
            input_grad_image(weight, &out_grad[b * out_img..(b + 1) * out_img], g, dx_img, threads > 1);
        }
        dx
    }
    #[cfg(not(feature = "rayon"))]
    {
        for (b, dx_img) in dx.chunks_mut(in_img).enumerate() {
            input_grad_image(weight, &out_grad[b * out_img..(b + 1) * out_img], g, dx_img, false);
        }
        dx
    }
}

/// Bias gradient: `out_grad [B, C, OH, OW]` summed over batch and space -> `[C]`.
pub(crate) fn bias_grad<T: ConvElem>(out_grad: &[T], batch: usize, channels: usize) -> Vec<T> {
    let spatial = if batch * channels == 0 {
        0
    } else {
        out_grad.len() / (batch * channels)
    };
    let sum_channel = |c: usize| -> T {
        let mut s = T::ZERO;
        for b in 0..batch {
            let base = (b * channels + c) * spatial;
            for &v in &out_grad[base..base + spatial] {
                s += v;
            }
        }
        s
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        if out_grad.len() >= super::PARALLEL_THRESHOLD {
            return (0..channels).into_par_iter().map(sum_channel).collect();
        }
    }
    (0..channels).map(sum_channel).collect()
}

fn tensor_from<T: ConvElem>(data: Vec<T>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(Shape::from(shape)), T::DTYPE)
}

/// `conv2d_weight_backward` for a native element type: `x [B, C_in, H, W]`, weight
/// `[C_out, C_in / groups, kh, kw]` (only its shape is read), `output_grad [B, C_out, OH, OW]`
/// -> `[C_out, C_in / groups, kh, kw]`.
///
/// # Panics
/// Shapes that do not agree ([`Geometry::new`]), or tensors of another dtype than `T`.
pub(crate) fn conv2d_weight_backward<T: ConvElem>(
    x: FlexTensor,
    weight: &FlexTensor,
    output_grad: FlexTensor,
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> FlexTensor {
    let x = x.to_contiguous();
    let dy = output_grad.to_contiguous();
    let xs = x.layout().shape();
    let ws = weight.layout().shape();
    let ys = dy.layout().shape();
    let g = Geometry::new(xs, ws, ys, stride, pad, dilation, groups);
    let dw = weight_grad::<T>(x.storage(), dy.storage(), &g);
    tensor_from(dw, vec![ws[0], ws[1], ws[2], ws[3]])
}

/// `conv2d_x_backward` for a native element type: `x [B, C_in, H, W]` (only its shape is read),
/// weight `[C_out, C_in / groups, kh, kw]`, `output_grad [B, C_out, OH, OW]` -> `[B, C_in, H, W]`.
///
/// # Panics
/// Shapes that do not agree ([`Geometry::new`]), or tensors of another dtype than `T`.
pub(crate) fn conv2d_x_backward<T: ConvElem>(
    x: &FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> FlexTensor {
    let w = weight.to_contiguous();
    let dy = output_grad.to_contiguous();
    let xs = x.layout().shape();
    let ws = w.layout().shape();
    let ys = dy.layout().shape();
    let g = Geometry::new(xs, ws, ys, stride, pad, dilation, groups);
    let dx = input_grad::<T>(w.storage(), dy.storage(), &g);
    tensor_from(dx, vec![xs[0], xs[1], xs[2], xs[3]])
}

/// `conv_transpose2d_weight_backward` for a native element type: `x [B, C_in, H, W]`, weight
/// `[C_in, C_out / groups, kh, kw]` (only its shape is read), `output_grad [B, C_out, OH, OW]`
/// -> `[C_in, C_out / groups, kh, kw]`.
///
/// # Panics
/// Shapes that do not agree ([`Geometry::new`]), or tensors of another dtype than `T`.
pub(crate) fn conv_transpose2d_weight_backward<T: ConvElem>(
    x: FlexTensor,
    weight: &FlexTensor,
    output_grad: FlexTensor,
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> FlexTensor {
    let x = x.to_contiguous();
    let dy = output_grad.to_contiguous();
    let xs = x.layout().shape();
    let ws = weight.layout().shape();
    let ys = dy.layout().shape();
    // The matching convolution maps dy [B, C_out, OH, OW] -> x [B, C_in, H, W] with the weight
    // [C_in, C_out / groups, kh, kw].
    let g = Geometry::new(ys, ws, xs, stride, pad, dilation, groups);
    let dw = weight_grad::<T>(dy.storage(), x.storage(), &g);
    tensor_from(dw, vec![ws[0], ws[1], ws[2], ws[3]])
}

/// Bias gradient of a 2D convolution or transposed convolution: `output_grad [B, C, OH, OW]`
/// -> `[C]`.
///
/// # Panics
/// A tensor that is not 4D or not of dtype `T`.
pub(crate) fn conv2d_bias_backward<T: ConvElem>(output_grad: FlexTensor) -> FlexTensor {
    let dy = output_grad.to_contiguous();
    let ys = dy.layout().shape();
    assert!(ys.len() == 4, "conv2d bias backward: 4D output gradient expected, got {ys:?}");
    let db = bias_grad::<T>(dy.storage(), ys[0], ys[1]);
    tensor_from(db, vec![ys[1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_range_matches_brute_force() {
        for size in 1..7 {
            for stride in 1..4 {
                for pad in 0..4 {
                    for dil in 1..3 {
                        for k in 0..4 {
                            let out = 9;
                            let (lo, hi) = valid_range(k, out, size, stride, pad, dil);
                            for o in 0..out {
                                let pos = (o * stride + k * dil) as isize - pad as isize;
                                let inside = pos >= 0 && pos < size as isize;
                                assert_eq!(inside, o >= lo && o < hi, "{size} {stride} {pad} {dil} {k} {o}");
                            }
                        }
                    }
                }
            }
        }
    }
}
