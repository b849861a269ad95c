//! A deformable convolution that predicts its own offsets: mmcv's `ModulatedDeformConv2dPack`
//! (DCNv2, mmdetection's `dcn=dict(type='DCNv2')`) and `DeformConv2dPack` (DCNv1,
//! `type='DCN'`), see mmcv/ops/modulated_deform_conv.py and deform_conv.py.
//!
//! A plain convolution `conv_offset` (zero-initialised, so training starts as a regular
//! convolution) reads the input and gives, per output pixel, two offsets per kernel tap and
//! deform group, and for DCNv2 a mask logit; [`crate::ops::deform_conv::deform_conv2d`] then
//! samples and convolves.

use burn::module::{Initializer, Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

use crate::ops::deform_conv::{DeformConvOptions, deform_conv2d_unchecked};

/// Settings of [`DeformConv2d`]; `new` gives mmcv's defaults for a kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct DeformConv2dConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// `[kh, kw]`.
    pub kernel_size: [usize; 2],
    /// Stride, padding, dilation, groups and deform groups. Default stride 1, padding
    /// `kernel / 2`, dilation 1, one group, one deform group.
    pub options: DeformConvOptions,
    /// Learned bias on the output. Default false (mmdetection's backbones).
    pub bias: bool,
    /// DCNv2's mask (`ModulatedDeformConv2dPack`); false is DCNv1 (`DeformConv2dPack`).
    /// Default true.
    pub modulated: bool,
}

impl DeformConv2dConfig {
    /// A modulated `kernel_size` x `kernel_size` deformable convolution, "same" padding.
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel_size: [kernel_size; 2],
            options: DeformConvOptions {
                padding: [kernel_size / 2; 2],
                ..Default::default()
            },
            bias: false,
            modulated: true,
        }
    }

    /// Offset channels `conv_offset` predicts: `(2 or 3) * deform_groups * kh * kw`.
    pub fn offset_channels(&self) -> usize {
        let per_tap = if self.modulated { 3 } else { 2 };
        per_tap * self.options.deform_groups * self.kernel_size[0] * self.kernel_size[1]
    }

    /// Kaiming-normal weight (fan out, as mmdetection's ResNets initialise their convs), zero
    /// bias, and a zero `conv_offset` (mmcv's `init_weights`).
    pub fn init(&self, device: &Device) -> DeformConv2d {
        let [kh, kw] = self.kernel_size;
        let o = &self.options;
        let cpg = self.in_channels / o.groups.max(1);
        let fan_out = self.out_channels * kh * kw;
        let weight = Initializer::KaimingNormal {
            gain: 2f64.sqrt(),
            fan_out_only: true,
        }
        .init_with(
            [self.out_channels, cpg, kh, kw],
            None,
            Some(fan_out),
            device,
        );
        let bias = self
            .bias
            .then(|| Initializer::Zeros.init([self.out_channels], device));
        let conv_offset =
            Conv2dConfig::new([self.in_channels, self.offset_channels()], self.kernel_size)
                .with_stride(o.stride)
                .with_dilation(o.dilation)
                .with_padding(PaddingConfig2d::Explicit(
                    o.padding[0],
                    o.padding[1],
                    o.padding[0],
                    o.padding[1],
                ))
                .with_bias(true)
                .with_initializer(Initializer::Zeros)
                .init(device);
        DeformConv2d {
            weight,
            bias,
            conv_offset,
            stride: o.stride,
            padding: o.padding,
            dilation: o.dilation,
            groups: o.groups,
            deform_groups: o.deform_groups,
            modulated: self.modulated,
        }
    }
}

/// DCNv2 / DCNv1 with its offset predictor. Parameter names are mmcv's: `weight`, `bias`,
/// `conv_offset.weight`, `conv_offset.bias`.
#[derive(Module, Debug)]
pub struct DeformConv2d {
    /// `[C_out, C_in / groups, kh, kw]`.
    pub weight: Param<Tensor<4>>,
    /// `[C_out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// `[C_in]` -> `[(3 or 2) * deform_groups * kh * kw]`, same geometry as the deformable one.
    pub conv_offset: Conv2d,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    pub deform_groups: usize,
    pub modulated: bool,
}

impl DeformConv2d {
    fn options(&self) -> DeformConvOptions {
        DeformConvOptions {
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
            deform_groups: self.deform_groups,
        }
    }

    /// `[B, C_in, H, W]` -> `[B, C_out, H_out, W_out]`. The offsets and mask come from the
    /// layer's own `conv_offset`, with the same geometry, so they always fit; an input with
    /// the wrong channel count fails in that conv, as for any convolution.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = self.conv_offset.forward(x.clone());
        let [b, ch, ho, wo] = out.dims();
        // mmcv chunks the prediction in three: two offset thirds (kept in order, so the first
        // two thirds are the offsets) and the mask logits.
        let n_off = if self.modulated { ch / 3 * 2 } else { ch };
        let offset = out.clone().narrow(1, 0, n_off);
        let mask = self
            .modulated
            .then(|| sigmoid(out.narrow(1, n_off, ch - n_off)));
        debug_assert_eq!(offset.dims(), [b, n_off, ho, wo]);
        deform_conv2d_unchecked(
            x,
            offset,
            mask,
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
            &self.options(),
        )
    }
}

/// A plain or a deformable convolution, as mmcv's `build_conv_layer(dcn or None, ...)` gives
/// for a layer that mmdetection's `dcn` setting may replace. Either way the parameter names
/// are the convolution's (`weight`, and the deformable one's `conv_offset`).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum ConvOrDcn {
    Conv(Conv2d),
    Dcn(DeformConv2d),
}

impl ConvOrDcn {
    /// `[B, C_in, H, W]` -> `[B, C_out, H_out, W_out]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_ws(x, false)
    }

    /// As [`Self::forward`], a plain convolution weight-standardised when `ws` (mmcv's
    /// `ConvWS`, which mmdetection never combines with DCN).
    pub fn forward_ws(&self, x: Tensor<4>, ws: bool) -> Tensor<4> {
        match self {
            ConvOrDcn::Conv(c) => super::norm::conv_forward(c, x, ws),
            ConvOrDcn::Dcn(d) => d.forward(x),
        }
    }
}
