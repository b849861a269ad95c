//! Deformable convolution: DCNv2's modulated form (Zhu et al., "Deformable ConvNets v2: More
//! Deformable, Better Results", CVPR 2019) and DCNv1's (Dai et al., ICCV 2017) when there is no
//! mask, with the semantics of `torchvision.ops.deform_conv2d` and mmcv's
//! `modulated_deform_conv2d` (the two agree on layout and boundary rules).
//!
//! Every kernel tap of every output pixel samples the input at its regular position plus a
//! learned offset, bilinearly, and the sample is scaled by a learned mask. The op is composed
//! from tensor ops that are right on every burn backend (floor, comparisons, `select`, matmul),
//! as RoIAlign is: burn 0.22.1's own `deform_conv2d` backward gives wrong offset and mask
//! gradients on the cubecl backends. Gradients with respect to the input (a scatter-add through
//! `select`), the offsets (through the bilinear weights), the mask, the weight and the bias
//! are then autodiff's, equal to torchvision's analytic ones.

use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{ModelError, Result};

/// Geometry of [`deform_conv2d`], as `torch.nn.Conv2d` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeformConvOptions {
    /// `[stride_h, stride_w]`.
    pub stride: [usize; 2],
    /// Zero padding `[pad_h, pad_w]`, pixels on each side.
    pub padding: [usize; 2],
    /// `[dilation_h, dilation_w]`.
    pub dilation: [usize; 2],
    /// Convolution groups (ResNeXt's cardinality): input and output channels split in `groups`.
    pub groups: usize,
    /// Offset groups: the input channels split in `deform_groups` contiguous blocks, each
    /// sampled with its own offsets (and mask).
    pub deform_groups: usize,
}

impl Default for DeformConvOptions {
    fn default() -> Self {
        Self {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            deform_groups: 1,
        }
    }
}

impl DeformConvOptions {
    /// Output size of an `h` x `w` input under a `kh` x `kw` kernel, or None when the kernel
    /// does not fit the padded input (or a stride or dilation is zero).
    pub fn output_size(&self, [h, w]: [usize; 2], [kh, kw]: [usize; 2]) -> Option<[usize; 2]> {
        let one = |n: usize, k: usize, s: usize, p: usize, d: usize| {
            let span = d.checked_mul(k.checked_sub(1)?)? + 1;
            (s > 0 && d > 0 && n + 2 * p >= span).then(|| (n + 2 * p - span) / s + 1)
        };
        Some([
            one(h, kh, self.stride[0], self.padding[0], self.dilation[0])?,
            one(w, kw, self.stride[1], self.padding[1], self.dilation[1])?,
        ])
    }
}

/// Deformable convolution of `x` `[B, C, H, W]` with `weight` `[C_out, C / groups, kh, kw]`:
/// `offset` `[B, 2 * deform_groups * kh * kw, H_out, W_out]` (for deform group `g` and tap
/// `k = i * kw + j`, channel `2 * (g * kh * kw + k)` moves the sample down, the next one right,
/// in input pixels), `mask` `[B, deform_groups * kh * kw, H_out, W_out]` (DCNv2; None is DCNv1,
/// a mask of ones) and `bias` `[C_out]` -> `[B, C_out, H_out, W_out]`.
///
/// A sample's four bilinear corners that fall outside the map read zero (as zero padding), so a
/// sample more than a pixel outside reads zero and gets no offset gradient.
///
/// # Errors
/// [`ModelError::Input`] when the shapes do not fit together or the kernel does not fit.
pub fn deform_conv2d(
    x: Tensor<4>,
    offset: Tensor<4>,
    mask: Option<Tensor<4>>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    opts: &DeformConvOptions,
) -> Result<Tensor<4>> {
    let [b, c, h, w] = x.dims();
    let [cout, cpg, kh, kw] = weight.dims();
    let (g, dg) = (opts.groups, opts.deform_groups);
    let fail = |what: String| ModelError::Input(format!("deform_conv2d: {what}"));
    if g == 0 || dg == 0 || c != cpg * g || cout % g != 0 || c % dg != 0 {
        return Err(fail(format!(
            "input [{b}, {c}, {h}, {w}] and weight [{cout}, {cpg}, {kh}, {kw}] do not fit \
             groups {g} and deform_groups {dg}"
        )));
    }
    let [ho, wo] = opts
        .output_size([h, w], [kh, kw])
        .ok_or_else(|| fail(format!("a {kh}x{kw} kernel does not fit a {h}x{w} map")))?;
    let k = kh * kw;
    if offset.dims() != [b, 2 * dg * k, ho, wo] {
        return Err(fail(format!(
            "offset is {:?}, expected {:?}",
            offset.dims(),
            [b, 2 * dg * k, ho, wo]
        )));
    }
    if let Some(m) = &mask
        && m.dims() != [b, dg * k, ho, wo]
    {
        return Err(fail(format!(
            "mask is {:?}, expected {:?}",
            m.dims(),
            [b, dg * k, ho, wo]
        )));
    }
    if let Some(bias) = &bias
        && bias.dims() != [cout]
    {
        return Err(fail(format!(
            "bias is {:?}, expected [{cout}]",
            bias.dims()
        )));
    }
    Ok(deform_conv2d_unchecked(x, offset, mask, weight, bias, opts))
}

/// [`deform_conv2d`] without the shape checks, for callers whose shapes fit by construction
/// (the offsets and mask predicted by the layer's own `conv_offset`); the output size is the
/// offsets'.
pub(crate) fn deform_conv2d_unchecked(
    x: Tensor<4>,
    offset: Tensor<4>,
    mask: Option<Tensor<4>>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    opts: &DeformConvOptions,
) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let [cout, cpg, kh, kw] = weight.dims();
    let [_, _, ho, wo] = offset.dims();
    let (g, dg) = (opts.groups, opts.deform_groups);
    let k = kh * kw;
    let device = x.device();
    let (l, cg) = (ho * wo, c / dg);
    if b == 0 || l == 0 || cout == 0 {
        return Tensor::zeros([b, cout, ho, wo], &device);
    }
    let n = b * l * dg * k;

    // Regular sampling positions of (output pixel, tap), `[1, L, 1, K]`.
    let (mut base_y, mut base_x) = (Vec::with_capacity(l * k), Vec::with_capacity(l * k));
    let [sh, sw] = opts.stride;
    let [ph, pw] = opts.padding;
    let [dh, dw] = opts.dilation;
    for oy in 0..ho {
        for ox in 0..wo {
            for i in 0..kh {
                for j in 0..kw {
                    base_y.push((oy * sh + i * dh) as f32 - ph as f32);
                    base_x.push((ox * sw + j * dw) as f32 - pw as f32);
                }
            }
        }
    }
    let grid = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, l, 1, k]), &device);
    // Offsets `[B, dg * K * 2, H_out, W_out]` -> `[B, L, dg, K, 2]`: the order of the samples.
    let off = offset.reshape([b, dg, k, 2, l]).permute([0, 4, 1, 2, 3]);
    let y = off.clone().narrow(4, 0, 1).reshape([b, l, dg, k]) + grid(base_y);
    let xs = off.narrow(4, 1, 1).reshape([b, l, dg, k]) + grid(base_x);
    let y0 = y.clone().floor().detach();
    let x0 = xs.clone().floor().detach();
    // The fractional parts carry the offset gradient.
    let ly = y - y0.clone();
    let lx = xs - x0.clone();
    let modulation = mask.map(|m| m.reshape([b, dg, k, l]).permute([0, 3, 1, 2]));

    // Feature rows `(b, deform group, y, x)` of `C / dg` channels.
    let table = x
        .reshape([b, dg, cg, h * w])
        .swap_dims(2, 3)
        .reshape([b * dg * h * w, cg]);
    let row0: Vec<i64> = (0..b * dg).map(|i| (i * h * w) as i64).collect();
    let row0 = Tensor::<4, Int>::from_data(TensorData::new(row0, [b, 1, dg, 1]), &device);

    let mut cols: Option<Tensor<2>> = None;
    for (dy, dx) in [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)] {
        let yc = y0.clone().add_scalar(dy);
        let xc = x0.clone().add_scalar(dx);
        let (hm, wm) = ((h - 1) as f32, (w - 1) as f32);
        let inside = yc.clone().greater_equal_elem(0.0).float()
            * yc.clone().lower_equal_elem(hm).float()
            * xc.clone().greater_equal_elem(0.0).float()
            * xc.clone().lower_equal_elem(wm).float();
        let wy = if dy == 0.0 {
            ly.clone().neg().add_scalar(1.0)
        } else {
            ly.clone()
        };
        let wx = if dx == 0.0 {
            lx.clone().neg().add_scalar(1.0)
        } else {
            lx.clone()
        };
        let mut weight_c = wy * wx * inside;
        if let Some(m) = &modulation {
            weight_c = weight_c * m.clone();
        }
        let index =
            row0.clone() + yc.clamp(0.0, hm).int().mul_scalar(w as i64) + xc.clamp(0.0, wm).int();
        let part = table.clone().select(0, index.reshape([n])) * weight_c.reshape([n, 1]);
        cols = Some(match cols {
            None => part,
            Some(acc) => acc + part,
        });
    }
    // The four corners always run; the empty case is only for the type.
    let Some(cols) = cols else {
        return Tensor::zeros([b, cout, ho, wo], &device);
    };

    // `[B, L, dg, K, C / dg]` -> per convolution group `[B, groups, L, K * C / groups]`.
    let cols = cols
        .reshape([b, l, dg, k, cg])
        .permute([0, 1, 3, 2, 4])
        .reshape([b, l, k, g, cpg])
        .permute([0, 3, 1, 2, 4])
        .reshape([b, g, l, k * cpg]);
    // `[C_out, C / groups, kh, kw]` -> `[1, groups, K * C / groups, C_out / groups]`, same order.
    let wmat = weight
        .reshape([g, cout / g, cpg, k])
        .permute([0, 3, 2, 1])
        .reshape([1, g, k * cpg, cout / g]);
    let out = cols
        .matmul(wmat)
        .permute([0, 1, 3, 2])
        .reshape([b, cout, ho, wo]);
    match bias {
        Some(bias) => out + bias.reshape([1, cout, 1, 1]),
        None => out,
    }
}
