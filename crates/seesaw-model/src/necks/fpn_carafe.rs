//! FPN_CARAFE (Wang et al., "CARAFE: Content-Aware ReAssembly of FEatures", ICCV 2019), as
//! mmdetection's `FPN_CARAFE` (mmdet/models/necks/fpn_carafe.py) with its recipe's
//! `upsample_cfg=dict(type='carafe', ...)` (configs/carafe/): an FPN whose top-down path
//! upsamples with CARAFE instead of nearest interpolation, and whose extra levels are convs.
//!
//! Levels `0..n` (the used backbone maps) get a 1x1 lateral; each extra level gets a 3x3
//! stride-2 lateral, the first from the last backbone map itself (2048 channels in ResNet-50),
//! the others from the previous extra lateral. Top-down, from the coarsest level, each lateral
//! is CARAFE-upsampled 2x (`upsample_modules[i - 1]`) and added to the one below, cropped to
//! its size when larger (odd sizes); then a 3x3 conv makes every output, extra levels
//! included. No activations. Names are mmdetection's: `neck.lateral_convs.i.conv`,
//! `neck.fpn_convs.i.conv`, `neck.upsample_modules.i.channel_compressor` / `.content_encoder`.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::NeckConfig;
use crate::error::{ModelError, Result};
use crate::layers::{CarafePack, ConvModule, ConvModuleConfig};

/// FPN with CARAFE upsampling.
#[derive(Module, Debug)]
pub struct FpnCarafe {
    /// 1x1 for the backbone levels, then 3x3 stride 2 for the extra ones.
    pub lateral_convs: Vec<ConvModule>,
    /// 3x3, one per output level.
    pub fpn_convs: Vec<ConvModule>,
    /// `upsample_modules[i]` brings level `i + 1` to level `i`.
    pub upsample_modules: Vec<CarafePack>,
    /// Backbone levels used (after `start_level`).
    pub num_ins: usize,
    pub start_level: usize,
}

impl FpnCarafe {
    /// Builds the neck over the used inputs of `in_channels` (mmdetection's init: Xavier
    /// uniform convs with zero biases, CARAFE's own init).
    ///
    /// # Errors
    /// Bad CARAFE settings (already refused by [`NeckConfig::check`]).
    pub(crate) fn build(cfg: &NeckConfig, in_channels: &[usize], device: &Device) -> Result<Self> {
        let c = cfg.out_channels;
        let n = in_channels.len();
        let module = |cin: usize, k: usize| ConvModuleConfig::new(cin, c, k, &cfg.norm);
        let carafe = || {
            cfg.carafe
                .pack(c)
                .init(device)
                .map_err(|e| ModelError::Input(format!("model.neck.carafe: {e}")))
        };
        let mut lateral_convs = Vec::with_capacity(cfg.num_outs);
        let mut fpn_convs = Vec::with_capacity(cfg.num_outs);
        let mut upsample_modules = Vec::with_capacity(cfg.num_outs);
        // mmdetection's construction order: per backbone level its lateral, output conv and
        // (all but the last) upsampler; then per extra level its lateral, upsampler and
        // output conv.
        for (i, &cin) in in_channels.iter().enumerate() {
            lateral_convs.push(module(cin, 1).init(device));
            fpn_convs.push(module(c, 3).init(device));
            if i + 1 < n {
                upsample_modules.push(carafe()?);
            }
        }
        for i in 0..cfg.num_outs - n {
            let cin = if i == 0 { in_channels[n - 1] } else { c };
            lateral_convs.push(module(cin, 3).with_stride(2).init(device));
            upsample_modules.push(carafe()?);
            fpn_convs.push(module(c, 3).init(device));
        }
        Ok(Self {
            lateral_convs,
            fpn_convs,
            upsample_modules,
            num_ins: n,
            start_level: cfg.start_level,
        })
    }

    /// `inputs`: the backbone maps, finest first (the first `start_level` unused) -> one map
    /// `[B, C, H_l, W_l]` per output level.
    pub fn forward(&self, inputs: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        let inputs: Vec<Tensor<4>> = inputs.into_iter().skip(self.start_level).collect();
        let mut laterals: Vec<Tensor<4>> = Vec::with_capacity(self.lateral_convs.len());
        for (i, conv) in self.lateral_convs.iter().enumerate() {
            // The first extra level reads the last backbone map, later ones the lateral below.
            let x = if i <= self.num_ins {
                inputs[i.min(self.num_ins - 1)].clone()
            } else {
                laterals[i - 1].clone()
            };
            laterals.push(conv.forward(x));
        }
        for i in (1..laterals.len()).rev() {
            let up = self.upsample_modules[i - 1].forward(laterals[i].clone());
            let [b, ch, h, w] = laterals[i - 1].dims();
            let [.., uh, uw] = up.dims();
            let up = if (uh, uw) == (h, w) {
                up
            } else {
                up.slice([0..b, 0..ch, 0..h.min(uh), 0..w.min(uw)])
            };
            laterals[i - 1] = laterals[i - 1].clone() + up;
        }
        self.fpn_convs
            .iter()
            .zip(laterals)
            .map(|(conv, x)| conv.forward(x))
            .collect()
    }
}
