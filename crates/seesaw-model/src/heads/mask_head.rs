//! mmdetection's `FCNMaskHead`: 3x3 convs over the 14x14 RoI features, a 2x deconvolution (or
//! CARAFE, `upsample = { type = "carafe" }`) to 28x28, and one mask logit map per class (a 1x1
//! conv, or a cosine `NormedConv2d`).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::heads::mask_iou_head::MaskIouHead;
use crate::heads::rpn_head::{zero_bias, zeros_param};
use crate::layers::{
    CarafePack, CarafePackConfig, ConvKind, Norm, NormConfig, NormKind, NormedConv2d,
    NormedConv2dConfig, conv_forward, zero_touching,
};
use crate::losses::common::{bce_with_logits, float_tensor, index_tensor};
use crate::ops::mask_target::mask_target_bitmap;
use crate::roi_heads::sampling::SampledRois;
use crate::structures::GtInstances;

/// The mask head's 2x upsampler (mmdetection's `upsample_cfg.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpsampleKind {
    /// A 2x2 stride-2 transposed convolution, then ReLU.
    #[default]
    Deconv,
    /// CARAFE ([`CarafePack`]), no ReLU after it (as mmdetection's FCNMaskHead).
    Carafe,
    /// `nn.Upsample(scale_factor=2, mode='nearest')`, no weights, no ReLU.
    Nearest,
    /// `nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False)`, no weights, no
    /// ReLU ([`crate::ops::resize::resize_bilinear`], right on every backend).
    Bilinear,
}

/// mmdetection's `upsample_cfg`: `{ type = "carafe", up_kernel = 5, up_group = 1,
/// encoder_kernel = 3, encoder_dilation = 1, compressed_channels = 64 }` (the CARAFE settings
/// are mmcv's defaults, and those of mmdetection's configs/carafe/).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpsampleConfig {
    /// Default `deconv`.
    #[serde(rename = "type")]
    pub kind: UpsampleKind,
    pub up_kernel: usize,
    pub up_group: usize,
    pub encoder_kernel: usize,
    pub encoder_dilation: usize,
    pub compressed_channels: usize,
}

impl Default for UpsampleConfig {
    fn default() -> Self {
        let c = CarafePackConfig::new(1, 2);
        Self {
            kind: UpsampleKind::Deconv,
            up_kernel: c.up_kernel,
            up_group: c.up_group,
            encoder_kernel: c.encoder_kernel,
            encoder_dilation: c.encoder_dilation,
            compressed_channels: c.compressed_channels,
        }
    }
}

/// Settings of [`MaskHead`]; defaults are mmdetection's (4 convs of 256 channels, 14x14 in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskHeadConfig {
    pub num_convs: usize,
    pub conv_channels: usize,
    /// The "normed mask" variant: logits from a `NormedConv2d` (temperature 20).
    pub normed: bool,
    /// A norm after each 3x3 conv (mmdetection's `norm_cfg`, e.g. group norm; the convs then
    /// have no bias). Default none.
    pub norm: NormConfig,
    /// `conv` (default) or `ws` for the 3x3 convs (mmdetection's `conv_cfg`).
    pub conv: ConvKind,
    /// The 2x upsampler: a deconvolution (default), CARAFE, nearest or bilinear.
    pub upsample: UpsampleConfig,
}

impl Default for MaskHeadConfig {
    fn default() -> Self {
        Self {
            num_convs: 4,
            conv_channels: 256,
            normed: false,
            norm: NormConfig::default(),
            conv: ConvKind::Conv,
            upsample: UpsampleConfig::default(),
        }
    }
}

fn kaiming() -> Initializer {
    Initializer::KaimingNormal {
        gain: 2f64.sqrt(),
        fan_out_only: true,
    }
}

impl MaskHeadConfig {
    /// Builds the head over `in_channels` RoI features for `num_classes` classes.
    pub fn init(
        &self,
        in_channels: usize,
        num_classes: usize,
        device: &Device,
    ) -> Result<MaskHead> {
        self.init_htc(in_channels, num_classes, false, device)
    }

    /// As [`MaskHeadConfig::init`]; with `conv_res` the head is HTC's: it takes the previous
    /// stage's mask feature through a 1x1 conv + ReLU and adds it to its input.
    pub fn init_htc(
        &self,
        in_channels: usize,
        num_classes: usize,
        conv_res: bool,
        device: &Device,
    ) -> Result<MaskHead> {
        if self.conv_channels == 0 || num_classes == 0 {
            return Err(ModelError::Input(
                "mask head: conv_channels and num_classes must be positive".into(),
            ));
        }
        let c = self.conv_channels;
        self.norm.check("model.mask_head.norm", &[c])?;
        let with_norm = self.norm.kind != NormKind::None;
        let convs = (0..self.num_convs)
            .map(|i| {
                zero_bias(
                    Conv2dConfig::new([if i == 0 { in_channels } else { c }, c], [3, 3])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .with_initializer(kaiming())
                        .with_bias(!with_norm)
                        .init(device),
                )
            })
            .collect();
        let norms = (0..self.num_convs)
            .filter_map(|_| self.norm.init(c, false, device))
            .collect();
        let cin = if self.num_convs == 0 { in_channels } else { c };
        let (upsample, upsample_carafe, c) = match self.upsample.kind {
            UpsampleKind::Deconv => {
                // He-normal with fan-out (c * 2 * 2), written out: the transposed conv's
                // initializer also draws its bias, which has no fan.
                let mut up = ConvTranspose2dConfig::new([cin, c], [2, 2])
                    .with_stride([2, 2])
                    .with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: (2.0 / (c * 4) as f64).sqrt(),
                    })
                    .init(device);
                up.bias = up.bias.take().map(zeros_param);
                (Some(up), None, c)
            }
            UpsampleKind::Nearest | UpsampleKind::Bilinear => (None, None, cin),
            UpsampleKind::Carafe => {
                // CARAFE keeps the channels: the logits read the convs' output width.
                let u = &self.upsample;
                let carafe = CarafePackConfig {
                    channels: cin,
                    scale_factor: 2,
                    up_kernel: u.up_kernel,
                    up_group: u.up_group,
                    encoder_kernel: u.encoder_kernel,
                    encoder_dilation: u.encoder_dilation,
                    compressed_channels: u.compressed_channels,
                }
                .init(device)
                .map_err(|e| ModelError::Input(format!("model.mask_head.upsample: {e}")))?;
                (None, Some(carafe), cin)
            }
        };
        let (logits, logits_normed) = if self.normed {
            (
                None,
                Some(NormedConv2dConfig::new(c, num_classes).init(device)),
            )
        } else {
            (
                Some(zero_bias(
                    Conv2dConfig::new([c, num_classes], [1, 1])
                        .with_initializer(kaiming())
                        .init(device),
                )),
                None,
            )
        };
        let conv_res = conv_res.then(|| {
            zero_bias(
                Conv2dConfig::new([c, in_channels], [1, 1])
                    .with_initializer(kaiming())
                    .init(device),
            )
        });
        Ok(MaskHead {
            conv_res,
            convs,
            norms,
            ws: self.conv == ConvKind::Ws,
            upsample,
            upsample_carafe,
            resize: matches!(
                self.upsample.kind,
                UpsampleKind::Nearest | UpsampleKind::Bilinear
            )
            .then_some(self.upsample.kind),
            logits,
            logits_normed,
            mask_iou_head: None,
        })
    }
}

/// The mask head.
#[derive(Module, Debug)]
pub struct MaskHead {
    /// HTC's mask information flow from the previous stage's head.
    pub conv_res: Option<Conv2d>,
    pub convs: Vec<Conv2d>,
    /// The norm after each conv (mmdetection's `convs.i.gn`); empty without.
    pub norms: Vec<Norm>,
    /// Weight-standardised 3x3 convs.
    pub ws: bool,
    /// The deconvolution; None with CARAFE.
    pub upsample: Option<ConvTranspose2d>,
    /// CARAFE (mmdetection's `upsample` with `type='carafe'`); None with the deconvolution.
    pub upsample_carafe: Option<CarafePack>,
    /// The weightless 2x upsamplers (`nearest`, `bilinear`); None with the others.
    #[module(skip)]
    pub resize: Option<UpsampleKind>,
    pub logits: Option<Conv2d>,
    pub logits_normed: Option<NormedConv2d>,
    /// Mask Scoring's MaskIoU head on this head's RoI features and logits (mmdetection's
    /// `roi_head.mask_iou_head`); None without Mask Scoring.
    pub mask_iou_head: Option<MaskIouHead>,
}

impl MaskHead {
    /// The device the weights live on (read from the logits layer, which every head has).
    pub fn device(&self) -> Device {
        match (&self.logits, &self.logits_normed) {
            (Some(c), _) => c.weight.device(),
            (None, Some(n)) => n.weight.device(),
            (None, None) => self
                .upsample_carafe
                .as_ref()
                .map_or_else(Device::flex, |c| c.channel_compressor.weight.device()),
        }
    }

    /// The most channels any of the head's 28 x 28 activations has (the upsampled features or
    /// the class logits): its memory per RoI.
    pub fn widest_channels(&self) -> usize {
        let logits = match (&self.logits, &self.logits_normed) {
            (Some(c), _) => c.weight.dims()[0],
            (None, Some(n)) => n.weight.dims()[0],
            (None, None) => 0,
        };
        let features = self
            .convs
            .last()
            .map_or(0, |c| c.weight.dims()[0])
            .max(self.upsample.as_ref().map_or(0, |d| d.weight.dims()[1]));
        logits.max(features).max(1)
    }

    /// `rois` `[R, C, 14, 14]` -> mask logits `[R, num_classes, 28, 28]`.
    pub fn forward(&self, rois: Tensor<4>) -> Tensor<4> {
        self.logits(self.features(rois, None))
    }

    /// The features after the convs `[R, conv_channels, 14, 14]`, with the previous HTC
    /// stage's `res` (same shape) added first when this head has `conv_res`.
    pub fn features(&self, rois: Tensor<4>, res: Option<Tensor<4>>) -> Tensor<4> {
        let mut x = match (&self.conv_res, res) {
            (Some(c), Some(r)) => rois + relu(c.forward(r)),
            _ => rois,
        };
        for (i, c) in self.convs.iter().enumerate() {
            let y = conv_forward(c, x, self.ws);
            x = relu(match self.norms.get(i) {
                Some(n) => n.forward(y),
                None => y,
            });
        }
        x
    }

    /// Mask logits `[R, num_classes, 28, 28]` from [`MaskHead::features`].
    pub fn logits(&self, features: Tensor<4>) -> Tensor<4> {
        let x = match (&self.upsample, &self.upsample_carafe, self.resize) {
            (_, Some(c), _) => c.forward(features),
            (Some(d), None, _) => relu(d.forward(features)),
            (None, None, Some(UpsampleKind::Bilinear)) => {
                let [_, _, h, w] = features.dims();
                crate::ops::resize::resize_bilinear(features, 2 * h, 2 * w, false)
            }
            (None, None, Some(UpsampleKind::Nearest)) => {
                let [_, _, h, w] = features.dims();
                crate::ops::resize::resize_nearest(features, 2 * h, 2 * w)
            }
            (None, None, _) => features,
        };
        match (&self.logits, &self.logits_normed) {
            (_, Some(n)) => n.forward(x),
            (Some(c), None) => c.forward(x),
            (None, None) => x,
        }
    }
}

/// Side of the mask logits and targets (mmdetection's `mask_size`, 28).
pub const MASK_SIZE: usize = 28;

/// Side of the RoI features the mask head takes (`roi_layer.output_size`, 14).
pub const MASK_ROI_SIZE: usize = 14;

impl MaskHead {
    /// The mask loss of the positives of `s` (mmdetection's `FCNMaskHead.loss_and_target`):
    /// `logits` `[P, C, 28, 28]` of the positive RoIs in `s.pos_rows` order; binary
    /// cross-entropy of each RoI's ground-truth class map against its ground truth's mask cut
    /// out by the RoI and resized to 28 x 28, averaged over pixels and RoIs.
    ///
    /// # Errors
    /// A positive whose ground truth has no mask.
    pub fn loss(
        &self,
        logits: Tensor<4>,
        s: &SampledRois,
        gts: &[GtInstances],
    ) -> Result<Tensor<1>> {
        let targets = self.targets(s, gts)?;
        Ok(self.loss_with_targets(logits, s, &targets, None))
    }

    /// The binary 28 x 28 targets of the positives of `s` (`[P * 28 * 28]`, row-major), as
    /// [`MaskHead::loss`] makes them.
    ///
    /// # Errors
    /// A positive whose ground truth has no mask.
    pub fn targets(&self, s: &SampledRois, gts: &[GtInstances]) -> Result<Vec<f32>> {
        let m = MASK_SIZE;
        let mut targets = Vec::with_capacity(s.pos_rows.len() * m * m);
        for (&row, &(img, g)) in s.pos_rows.iter().zip(&s.pos_gt) {
            let gm = gts[img].masks.get(g).ok_or_else(|| {
                ModelError::Input(format!("image {img}: ground truth {g} has no mask"))
            })?;
            let roi = s.rois[row];
            targets.extend(mask_target_bitmap(gm, &[roi[1], roi[2], roi[3], roi[4]], m));
        }
        Ok(targets)
    }

    /// [`MaskHead::loss`] with the targets given (from [`MaskHead::targets`]); the sum over
    /// pixels is divided by `pixels` (default: this call's P x 28 x 28; the global batch's under
    /// data parallelism).
    pub fn loss_with_targets(
        &self,
        logits: Tensor<4>,
        s: &SampledRois,
        targets: &[f32],
        pixels: Option<f64>,
    ) -> Tensor<1> {
        let device = logits.device();
        let m = MASK_SIZE;
        let [p, c, _, _] = logits.dims();
        let idx: Vec<usize> = s
            .pos_rows
            .iter()
            .enumerate()
            .map(|(k, &row)| k * c + s.labels[row])
            .collect();
        let chosen = logits
            .reshape([p * c, m * m])
            .select(0, index_tensor(&idx, &device));
        let targets = targets.iter().map(|&t| f64::from(t)).collect();
        bce_with_logits(chosen, float_tensor(targets, [p, m * m], &device))
            .sum()
            .div_scalar(pixels.unwrap_or((p * m * m).max(1) as f64))
    }

    /// The loss of a step without positive RoIs: a zero that still reaches every parameter.
    pub fn zero_loss(&self, device: &Device) -> Tensor<1> {
        zero_touching(self, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weightless_upsamplers_double_the_features_before_the_logits() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 8, 14, 14], burn::tensor::Distribution::Default, &device);
        for (name, kind) in [
            ("nearest", UpsampleKind::Nearest),
            ("bilinear", UpsampleKind::Bilinear),
        ] {
            let cfg: MaskHeadConfig = serde_json::from_str(&format!(
                r#"{{"num_convs": 1, "conv_channels": 8, "upsample": {{"type": "{name}"}}}}"#
            ))
            .expect("parses");
            assert_eq!(cfg.upsample.kind, kind);
            let head = cfg.init(8, 3, &device).expect("head");
            assert!(head.upsample.is_none() && head.upsample_carafe.is_none());
            let features = head.features(x.clone(), None);
            let logits = head.logits(features.clone());
            assert_eq!(logits.dims(), [2, 3, 28, 28]);
            // The 1x1 logits conv of the upsampled features.
            let up = match kind {
                UpsampleKind::Nearest => crate::ops::resize::resize_nearest(features, 28, 28),
                _ => crate::ops::resize::resize_bilinear(features, 28, 28, false),
            };
            let want = head.logits.as_ref().expect("conv").forward(up);
            let d = (logits - want).abs().max().into_scalar::<f32>();
            assert!(d < 1e-6, "{name}: {d}");
        }
    }
}
