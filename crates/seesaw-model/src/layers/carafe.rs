//! mmcv's `CARAFEPack` (mmcv/ops/carafe.py): CARAFE upsampling with its kernel predictor. A
//! 1x1 `channel_compressor` and a `content_encoder` conv predict, for every output pixel,
//! `up_group` sets of `up_kernel^2` weights (pixel-shuffled to the output size and soft-maxed
//! within each set), which [`crate::ops::carafe::carafe`] uses to reassemble the input.
//! mmdetection uses it as the mask head's upsampler (`upsample_cfg=dict(type='carafe', ...)`,
//! configs/carafe/) and in FPN_CARAFE.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::ops::carafe::carafe_unchecked;

/// Settings of [`CarafePack`]; `new` gives mmcv's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct CarafePackConfig {
    pub channels: usize,
    pub scale_factor: usize,
    /// Side of the reassembly window. Default 5.
    pub up_kernel: usize,
    /// Channel groups with their own weights. Default 1.
    pub up_group: usize,
    /// Kernel of the content encoder. Default 3.
    pub encoder_kernel: usize,
    /// Dilation of the content encoder. Default 1.
    pub encoder_dilation: usize,
    /// Channels after the compressor. Default 64.
    pub compressed_channels: usize,
}

impl CarafePackConfig {
    /// mmcv's defaults for `channels` channels upsampled by `scale_factor`.
    pub fn new(channels: usize, scale_factor: usize) -> Self {
        Self {
            channels,
            scale_factor,
            up_kernel: 5,
            up_group: 1,
            encoder_kernel: 3,
            encoder_dilation: 1,
            compressed_channels: 64,
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ModelError::Input`] for an even kernel or zero sizes.
    pub fn check(&self) -> Result<()> {
        let k = self.up_kernel;
        if k % 2 == 0
            || self.encoder_kernel % 2 == 0
            || self.up_group == 0
            || self.channels % self.up_group != 0
            || self.scale_factor == 0
            || self.compressed_channels == 0
            || self.encoder_dilation == 0
        {
            return Err(ModelError::Input(format!(
                "carafe: up_kernel {k} and encoder_kernel {} must be odd, up_group {} must \
                 divide {} channels, scale_factor, compressed_channels and encoder_dilation positive",
                self.encoder_kernel, self.up_group, self.channels
            )));
        }
        Ok(())
    }

    /// Builds the layer: Xavier-uniform compressor, content encoder normal with std 0.001,
    /// zero biases (mmcv's `init_weights`).
    ///
    /// # Errors
    /// [`ModelError::Input`] for an even kernel or zero sizes.
    pub fn init(&self, device: &Device) -> Result<CarafePack> {
        self.check()?;
        let k = self.up_kernel;
        let p = (self.encoder_kernel - 1) * self.encoder_dilation / 2;
        let s = self.scale_factor;
        let mut channel_compressor =
            Conv2dConfig::new([self.channels, self.compressed_channels], [1, 1])
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device);
        channel_compressor.bias = Some(Initializer::Zeros.init([self.compressed_channels], device));
        let out = self.up_group * k * k * s * s;
        let ek = self.encoder_kernel;
        let mut content_encoder = Conv2dConfig::new([self.compressed_channels, out], [ek, ek])
            .with_dilation([self.encoder_dilation; 2])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.001,
            })
            .init(device);
        content_encoder.bias = Some(Initializer::Zeros.init([out], device));
        Ok(CarafePack {
            channel_compressor,
            content_encoder,
            scale_factor: s,
            up_kernel: k,
            up_group: self.up_group,
        })
    }
}

/// CARAFE upsampling; mmcv's parameter names.
#[derive(Module, Debug)]
pub struct CarafePack {
    /// `[C]` -> `[compressed]`, 1x1.
    pub channel_compressor: Conv2d,
    /// `[compressed]` -> `[up_group * up_kernel^2 * scale^2]`.
    pub content_encoder: Conv2d,
    pub scale_factor: usize,
    pub up_kernel: usize,
    pub up_group: usize,
}

impl CarafePack {
    /// `[N, C, H, W]` -> `[N, C, H s, W s]`. The weights come from the layer's own predictor,
    /// so they always fit (an odd kernel and dividing groups are checked when it is built).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, _, h, w] = x.dims();
        let (s, k, g) = (self.scale_factor, self.up_kernel, self.up_group);
        let m = self
            .content_encoder
            .forward(self.channel_compressor.forward(x.clone()));
        // Pixel shuffle: channel (c * s + i) * s + j goes to (h * s + i, w * s + j).
        let m = m
            .reshape([n, g * k * k, s, s, h, w])
            .permute([0, 1, 4, 2, 5, 3])
            .reshape([n, g, k * k, h * s, w * s]);
        let m = softmax(m, 2).reshape([n, g * k * k, h * s, w * s]);
        carafe_unchecked(x, m, k, g, s)
    }
}
