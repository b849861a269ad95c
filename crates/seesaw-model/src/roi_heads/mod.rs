//! RoI heads: what follows the RPN in a two-stage detector, one file per kind as mmdetection's
//! `roi_heads/` (`standard_roi_head.py`, `cascade_roi_head.py`, `htc_roi_head.py`,
//! `scnet_roi_head.py`) and detectron2's `modeling/roi_heads/` split them:
//! - [`standard`]: Mask R-CNN's (He et al. 2017), one box head and one mask head;
//! - [`cascade`]: Cascade Mask R-CNN's (Cai & Vasconcelos 2019), box stages at rising IoU and
//!   a mask head per stage;
//! - [`htc`]: Hybrid Task Cascade's without the semantic branch (Chen et al. 2019), box and
//!   mask interleaved, mask features flowing from stage to stage;
//! - [`htc_lite`]: the LVIS 2020 entry's HTC-Lite, the cascade's box stages, one mask head
//!   after the last and a global context encoder whose feature joins every RoI feature.
//!
//! The pieces they share live beside them: [`sampling`] (assign and sample RoIs per stage),
//! [`inference`] (the cascade's test-time box path, mask probabilities, multi-class NMS).
//! Each head owns its losses and their state (see [`crate::heads::BBoxHead`]).
//!
//! Adding a kind: its own file implementing [`RoiHeadOps`], and one line in the
//! `roi_head_kinds!` list below, which makes its `model.detector` name, the [`RoiHead`]
//! variant and the dispatch.

pub mod cascade;
pub mod htc;
pub mod htc_lite;
pub mod inference;
pub mod mask_branch;
pub mod sampling;
pub mod standard;

use crate::structures::ImageRng;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::detectors::DetectorConfig;
use crate::error::{ModelError, Result};
use crate::heads::global_context_head::fuse_context;
use crate::heads::{BBoxHead, GlobalContextHead, MaskHead};
use crate::losses::{AnyLoss, ClassStats, LossState};
use crate::ops::Box2;
use crate::ops::roi_extractor::RoiExtractorConfig;
use crate::structures::{GtInstances, ImageMeta};

pub use cascade::CascadeRoiHead;
pub use htc::HtcRoiHead;
pub use htc_lite::HtcLiteRoiHead;
pub use inference::select_detections;
pub use sampling::{RoiSampler, SampledRois};
pub use standard::StandardRoiHead;

/// Side of the RoI features the box head takes (`roi_layer.output_size`, 7).
pub const BOX_ROI_SIZE: usize = 7;

/// Test-time settings of the RoI heads; defaults are the LVIS recipe's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RcnnTestConfig {
    /// Default 1e-4.
    pub score_thr: f32,
    /// Default 0.5.
    pub nms_iou: f32,
    /// Default 300.
    pub max_per_img: usize,
    /// Default 0.5.
    pub mask_thr: f32,
    /// Detections narrower or lower than this (pixels at input scale) are dropped before NMS
    /// (torchvision's `remove_small_boxes(boxes, 1e-2)`); empty boxes always are. Default 0.
    pub min_bbox_size: f32,
    /// How masks go back into the image: `mmdet` (default) or `torchvision`.
    pub mask_paste: crate::ops::mask_paste::MaskPaste,
}

impl Default for RcnnTestConfig {
    fn default() -> Self {
        Self {
            score_thr: 1e-4,
            nms_iou: 0.5,
            max_per_img: 300,
            mask_thr: 0.5,
            min_bbox_size: 0.0,
            mask_paste: crate::ops::mask_paste::MaskPaste::Mmdet,
        }
    }
}

/// RoI sampling and pooling; defaults are mmdetection's Mask R-CNN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoiConfig {
    /// Strides of the pyramid levels RoIs are pooled from. Default 4, 8, 16, 32.
    pub strides: Vec<f32>,
    /// Default 56.
    pub finest_scale: f32,
    /// RoIAlign samples per bin and axis; 0 = adaptive. Default 0.
    pub sampling_ratio: usize,
    /// RoIs sampled per image. Default 512.
    pub sampler_num: usize,
    /// Default 0.25.
    pub sampler_pos_fraction: f32,
    /// IoU for a positive (and below it, a negative). Default 0.5.
    pub pos_iou: f32,
    /// RoIAlign's `aligned`: true (mmdetection 2.x / 3.x); false for torchvision's detection
    /// models (and mmdetection 1.x), which pool without the half-pixel shift. Default true.
    pub aligned: bool,
    pub test: RcnnTestConfig,
}

impl Default for RoiConfig {
    fn default() -> Self {
        Self {
            strides: vec![4.0, 8.0, 16.0, 32.0],
            finest_scale: 56.0,
            sampling_ratio: 0,
            sampler_num: 512,
            sampler_pos_fraction: 0.25,
            pos_iou: 0.5,
            aligned: true,
            test: RcnnTestConfig::default(),
        }
    }
}

impl RoiConfig {
    /// RoIAlign features `[R, C, size, size]` of `rois` (`[image, x1, y1, x2, y2]` at input
    /// scale) from the pyramid levels `strides` names.
    ///
    /// # Errors
    /// RoIs naming images the features do not have.
    pub fn pool(&self, feats: &[Tensor<4>], rois: &[[f32; 5]], size: usize) -> Result<Tensor<4>> {
        self.pool_scaled(feats, rois, size, None)
    }

    /// [`Self::pool`] with the RoIs enlarged `scale` times about their centres (each from the
    /// level of its own size; see [`RoiExtractorConfig::extract_scaled`]).
    ///
    /// # Errors
    /// As [`Self::pool`].
    pub fn pool_scaled(
        &self,
        feats: &[Tensor<4>],
        rois: &[[f32; 5]],
        size: usize,
        scale: Option<f32>,
    ) -> Result<Tensor<4>> {
        self.extractor(size)
            .extract_scaled(&feats[..self.strides.len()], rois, scale)
    }

    /// The multi-level RoIAlign extractor at `size`.
    pub fn extractor(&self, size: usize) -> RoiExtractorConfig {
        RoiExtractorConfig {
            strides: self.strides.clone(),
            finest_scale: self.finest_scale,
            output_size: size,
            sampling_ratio: self.sampling_ratio,
            aligned: self.aligned,
        }
    }

    /// The sampler of a stage training at `iou`.
    pub fn sampler(&self, iou: f32) -> RoiSampler {
        RoiSampler {
            iou,
            num: self.sampler_num,
            pos_fraction: self.sampler_pos_fraction,
        }
    }
}

/// The box stages of the cascade kinds; defaults are mmdetection's Cascade Mask R-CNN / HTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CascadeConfig {
    /// IoU of a positive (and below it, a negative) per stage. Default 0.5, 0.6, 0.7.
    pub stage_ious: Vec<f32>,
    /// Weight of each stage's losses. Default 1, 0.5, 0.25.
    pub stage_loss_weights: Vec<f64>,
    /// Box delta stds per stage. Default (0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1),
    /// (0.033, 0.033, 0.067, 0.067).
    pub stage_target_stds: Vec<[f32; 4]>,
    /// HTC-Lite's mask loss weight. Default 1.75, the sum of the stage weights (SCNet's rule).
    pub mask_loss_weight: f64,
}

impl Default for CascadeConfig {
    fn default() -> Self {
        Self {
            stage_ious: vec![0.5, 0.6, 0.7],
            stage_loss_weights: vec![1.0, 0.5, 0.25],
            stage_target_stds: vec![
                [0.1, 0.1, 0.2, 0.2],
                [0.05, 0.05, 0.1, 0.1],
                [0.033, 0.033, 0.067, 0.067],
            ],
            mask_loss_weight: 1.75,
        }
    }
}

/// One box stage's training settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// IoU of a positive.
    pub iou: f32,
    /// Weight of the stage's losses.
    pub weight: f64,
    /// The box coder's stds.
    pub stds: [f32; 4],
}

/// The RoI heads' part of the training loss, each a scalar `[1]`; box and mask parts are
/// summed over stages with the stage weights.
#[derive(Debug, Clone)]
pub struct RoiLosses {
    pub cls: Tensor<1>,
    pub bbox: Tensor<1>,
    /// Zero without a mask head.
    pub mask: Tensor<1>,
    /// The global context head's loss; zero without one.
    pub glbctx: Tensor<1>,
    /// Per-stage parts of multi-stage heads, weighted, as mmdetection logs them
    /// (`s0.loss_cls`, `s1.loss_bbox`, `s2.loss_mask`, ...); empty for one stage.
    pub stages: Vec<(String, Tensor<1>)>,
}

/// Which part of [`RoiLosses`] a stage's loss adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossPart {
    /// `loss_cls`.
    Cls,
    /// `loss_bbox`.
    Bbox,
    /// `loss_mask`.
    Mask,
}

impl RoiLosses {
    /// Adds `value` times `weight` to `part`; for a stage `t` of a multi-stage head, also
    /// logs it as `s{t}.loss_cls` (`loss_bbox`, `loss_mask`).
    pub fn add(&mut self, part: LossPart, stage: Option<usize>, value: Tensor<1>, weight: f64) {
        let weighted = value.mul_scalar(weight);
        let (sum, name) = match part {
            LossPart::Cls => (&mut self.cls, "loss_cls"),
            LossPart::Bbox => (&mut self.bbox, "loss_bbox"),
            LossPart::Mask => (&mut self.mask, "loss_mask"),
        };
        *sum = sum.clone() + weighted.clone();
        if let Some(t) = stage {
            self.stages
                .push((format!("s{t}.{name}"), weighted.detach()));
        }
    }

    /// Adds `value` times `weight` to `part` and logs it as `name` (`s{t}.name` for stage `t`
    /// of a multi-stage head): losses besides a head's own classification and box losses
    /// (TSD's `loss_tsd_cls`, `loss_pc_cls`, ...).
    pub fn add_named(
        &mut self,
        part: LossPart,
        stage: Option<usize>,
        name: &str,
        value: Tensor<1>,
        weight: f64,
    ) {
        let weighted = value.mul_scalar(weight);
        let sum = match part {
            LossPart::Cls => &mut self.cls,
            LossPart::Bbox => &mut self.bbox,
            LossPart::Mask => &mut self.mask,
        };
        *sum = sum.clone() + weighted.clone();
        let name = match stage {
            Some(t) => format!("s{t}.{name}"),
            None => name.to_string(),
        };
        self.stages.push((name, weighted.detach()));
    }

    /// Adds Mask Scoring's MaskIoU loss (unweighted by stages) to the mask part and logs it
    /// as `loss_mask_iou` (mmdetection's name); nothing for `None`.
    pub fn add_mask_iou(&mut self, loss: Option<Tensor<1>>) {
        if let Some(l) = loss {
            self.mask = self.mask.clone() + l.clone();
            self.stages.push(("loss_mask_iou".into(), l.detach()));
        }
    }

    /// All parts zero, on `device`.
    pub fn zeros(device: &Device) -> Self {
        let zero = || Tensor::<1>::zeros([1], device);
        RoiLosses {
            cls: zero(),
            bbox: zero(),
            mask: zero(),
            glbctx: zero(),
            stages: vec![],
        }
    }
}

/// What an RoI head builds itself from.
pub struct RoiHeadBuilder<'a> {
    pub cfg: &'a DetectorConfig,
    /// Channels of the pyramid features.
    pub in_channels: usize,
    /// The training set's class statistics (EQL, the federated loss).
    pub stats: &'a ClassStats,
    /// Seed of the federated loss's draws.
    pub seed: u64,
    pub device: &'a Device,
}

impl RoiHeadBuilder<'_> {
    /// The box stages: one (`roi.pos_iou`, `bbox_head.target_stds`) for Mask R-CNN, those of
    /// `cascade` for the cascade kinds.
    ///
    /// # Errors
    /// Cascade lists of different or zero lengths.
    pub fn stages(&self) -> Result<Vec<Stage>> {
        self.cfg.stages()
    }

    /// A box head for `stage`, with its own classification loss.
    ///
    /// # Errors
    /// Bad head settings.
    pub fn bbox_head(&self, stage: &Stage) -> Result<BBoxHead> {
        let cfg = self.cfg;
        let loss = AnyLoss::build(cfg.loss, &cfg.losses, self.stats, self.seed);
        cfg.bbox_head.init(
            self.in_channels * BOX_ROI_SIZE * BOX_ROI_SIZE,
            cfg.num_classes,
            loss,
            stage.stds,
            self.device,
        )
    }

    /// A box head per stage, each with its own classification loss.
    ///
    /// # Errors
    /// Bad head settings.
    pub fn bbox_heads(&self, stages: &[Stage]) -> Result<Vec<BBoxHead>> {
        stages.iter().map(|s| self.bbox_head(s)).collect()
    }

    /// A mask head; with `conv_res`, HTC's (it takes the previous stage's mask feature).
    ///
    /// # Errors
    /// Bad head settings.
    pub fn mask_head(&self, conv_res: bool) -> Result<MaskHead> {
        let mut head = self.cfg.mask_head.init_htc(
            self.in_channels,
            self.cfg.num_classes,
            conv_res,
            self.device,
        )?;
        let iou = &self.cfg.mask_iou_head;
        if iou.enabled {
            head.mask_iou_head =
                Some(iou.init(self.in_channels, self.cfg.num_classes, self.device)?);
        }
        Ok(head)
    }
}

/// What every RoI-head kind does; [`RoiHead`] dispatches to it.
pub trait RoiHeadOps {
    /// Builds the head from the detector's config.
    ///
    /// # Errors
    /// Bad settings.
    fn build(b: &RoiHeadBuilder) -> Result<Self>
    where
        Self: Sized;

    /// The training losses of a batch from its pyramid features and per-image proposals (at
    /// input scale); `rngs[i]` draws image i's sampled RoIs. Updates the losses' state.
    ///
    /// # Errors
    /// Inputs that do not fit the model.
    fn forward_train(
        &mut self,
        feats: &[Tensor<4>],
        proposals: Vec<Vec<Box2>>,
        metas: &[ImageMeta],
        gts: &[GtInstances],
        rngs: &mut [ImageRng],
    ) -> Result<RoiLosses>;

    /// The RoI sampling and pooling settings.
    fn roi_config(&self) -> &RoiConfig;

    /// The image context added to every RoI feature (`[B, C]`, HTC-Lite's global context
    /// encoder on the coarsest level); None for the kinds without one.
    fn context(&self, _feats: &[Tensor<4>]) -> Option<Tensor<2>> {
        None
    }

    /// Whether each mask head takes the previous one's features (HTC's mask information flow).
    fn mask_flow(&self) -> bool {
        false
    }

    /// The box stages on `rois` (`[image, x1, y1, x2, y2]` at input scale): class scores
    /// (`[R * C]`, row-major) and per RoI and class the box decoded by the last stage,
    /// clipped to its image (`[R * C]`); see [`inference::staged_box_predictions`].
    ///
    /// # Errors
    /// RoIs naming missing images.
    fn box_predictions(
        &self,
        feats: &[Tensor<4>],
        rois: &[[f32; 5]],
        metas: &[ImageMeta],
    ) -> Result<(Vec<f32>, Vec<Box2>)> {
        if rois.is_empty() {
            return Ok((vec![], vec![]));
        }
        let ctx = self.context(feats);
        let pooler = RoiPooler {
            roi: self.roi_config(),
            feats,
            ctx: ctx.as_ref(),
        };
        inference::staged_box_predictions(self.bbox_heads(), rois, metas, &pooler)
    }

    /// Mask probabilities `[R, 28 * 28]` of `rois` (non-empty), each of its class
    /// `labels[r]`, averaged over the mask heads, with Mask Scoring's predicted IoU of that
    /// class `[R]`; None without masks.
    ///
    /// # Errors
    /// RoIs naming missing images; not one label per RoI; labels outside the classes.
    fn mask_probs(
        &self,
        feats: &[Tensor<4>],
        rois: &[[f32; 5]],
        labels: &[usize],
    ) -> Result<Option<(Tensor<2>, Option<Tensor<1>>)>> {
        if self.mask_heads().is_empty() {
            return Ok(None);
        }
        let ctx = self.context(feats);
        let size = crate::heads::mask_head::MASK_ROI_SIZE;
        let pooled = pool_with_context(self.roi_config(), feats, rois, size, ctx.as_ref())?;
        mask_branch::mean_mask_probs(self.mask_heads(), self.mask_flow(), pooled, labels).map(Some)
    }

    /// Whether the head predicts masks.
    fn with_mask(&self) -> bool {
        !self.mask_heads().is_empty()
    }

    /// The mask heads (none when masks are off).
    fn mask_heads(&self) -> &[MaskHead];

    /// The global context encoder, for the kinds that have one (HTC-Lite).
    fn glbctx_head(&self) -> Option<&GlobalContextHead> {
        None
    }

    /// The box heads, one per stage.
    fn bbox_heads(&self) -> &[BBoxHead];

    /// The box heads, mutably.
    fn bbox_heads_mut(&mut self) -> &mut [BBoxHead];
}

macro_rules! roi_head_kinds {
    (@unit $x:ident) => { () };
    ($($(#[$doc:meta])* $variant:ident($ty:ty) = $name:literal, cascade: $cascade:literal;)+) => {
        /// Which RoI head follows the RPN (`model.detector`); a name that is not one of them
        /// is an error listing them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum DetectorKind {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)+
        }

        impl DetectorKind {
            /// Every kind, in the order configs and benchmarks list them.
            pub const ALL: [DetectorKind; <[()]>::len(&[$(roi_head_kinds!(@unit $variant)),+])] =
                [$(DetectorKind::$variant),+];

            /// The name configs use.
            pub fn name(self) -> &'static str {
                match self {
                    $(DetectorKind::$variant => $name,)+
                }
            }

            /// Whether the kind trains the box stages of `model.cascade` (several, at rising
            /// IoU) rather than one at `roi.pos_iou`.
            pub fn is_cascade(self) -> bool {
                match self {
                    $(DetectorKind::$variant => $cascade,)+
                }
            }
        }

        /// The RoI head of a detector: one of the kinds, each in its own file. (A detector holds
        /// one, so the variants' sizes do not matter.)
        #[derive(Module, Debug)]
        #[allow(clippy::large_enum_variant)]
        pub enum RoiHead {
            $($variant($ty),)+
        }

        impl RoiHead {
            /// Builds the head of `kind`.
            ///
            /// # Errors
            /// Bad settings.
            pub fn build(kind: DetectorKind, b: &RoiHeadBuilder) -> Result<Self> {
                Ok(match kind {
                    $(DetectorKind::$variant => RoiHead::$variant(<$ty as RoiHeadOps>::build(b)?),)+
                })
            }

            /// Its kind.
            pub fn kind(&self) -> DetectorKind {
                match self {
                    $(RoiHead::$variant(_) => DetectorKind::$variant,)+
                }
            }

            /// The kind's operations.
            pub fn ops(&self) -> &dyn RoiHeadOps {
                match self {
                    $(RoiHead::$variant(h) => h,)+
                }
            }

            /// The kind's operations, mutably.
            pub fn ops_mut(&mut self) -> &mut dyn RoiHeadOps {
                match self {
                    $(RoiHead::$variant(h) => h,)+
                }
            }
        }
    };
}

roi_head_kinds! {
    /// `mask_rcnn`: one box stage, one mask head.
    MaskRcnn(standard::StandardRoiHead) = "mask_rcnn", cascade: false;
    /// `cascade`: Cascade Mask R-CNN, a mask head per box stage.
    Cascade(cascade::CascadeRoiHead) = "cascade", cascade: true;
    /// `htc`: HTC without the semantic branch.
    Htc(htc::HtcRoiHead) = "htc", cascade: true;
    /// `htc_lite`: one mask head at the last stage and a global context encoder.
    HtcLite(htc_lite::HtcLiteRoiHead) = "htc_lite", cascade: true;
}

impl std::fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DetectorKind {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|k| k.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                ModelError::Input(format!(
                    "unknown detector {s:?} (expected one of {})",
                    names.join(", ")
                ))
            })
    }
}

impl RoiHead {
    /// The name of box head `i`'s classification loss state, as mmdetection's state dict
    /// names the buffer's module (`roi_head.bbox_head.loss_cls`, or `roi_head.bbox_head.1.
    /// loss_cls` in a cascade).
    fn loss_name(&self, i: usize) -> String {
        if self.kind().is_cascade() {
            format!("roi_head.bbox_head.{i}.loss_cls")
        } else {
            "roi_head.bbox_head.loss_cls".into()
        }
    }

    /// Every box head's classification loss state, by name.
    pub fn loss_states(&self) -> Vec<(String, LossState)> {
        self.ops()
            .bbox_heads()
            .iter()
            .enumerate()
            .map(|(i, h)| (self.loss_name(i), h.loss_cls.state()))
            .collect()
    }

    /// Restores the states [`RoiHead::loss_states`] gave.
    ///
    /// # Errors
    /// A head without a state in `states`, a state no head has, or one of another loss.
    pub fn load_loss_states(
        &mut self,
        states: &std::collections::BTreeMap<String, LossState>,
    ) -> Result<()> {
        let names: Vec<String> = (0..self.ops().bbox_heads().len())
            .map(|i| self.loss_name(i))
            .collect();
        if let Some(extra) = states.keys().find(|k| !names.contains(k)) {
            return Err(ModelError::Input(format!(
                "loss state {extra} has no box head in this model (it has {})",
                names.join(", ")
            )));
        }
        for (name, head) in names.iter().zip(self.ops_mut().bbox_heads_mut()) {
            let state = states
                .get(name)
                .ok_or_else(|| ModelError::Input(format!("no loss state for {name}")))?;
            head.loss_cls
                .load_state(state)
                .map_err(|e| ModelError::Input(format!("{name}: {e}")))?;
        }
        Ok(())
    }

    /// Mask probabilities (`m x m`, row-major) of each `(image, box at input scale, class)`,
    /// `m`, and with Mask Scoring each one's predicted mask IoU; no masks (and `m` = 0)
    /// without a mask head.
    ///
    /// # Errors
    /// Detections naming missing images.
    pub fn class_mask_probs(
        &self,
        feats: &[Tensor<4>],
        dets: &[(usize, Box2, usize)],
    ) -> Result<ClassMasks> {
        if !self.ops().with_mask() {
            return Ok(ClassMasks::default());
        }
        if dets.is_empty() {
            return Ok(ClassMasks {
                size: crate::heads::mask_head::MASK_SIZE,
                ..Default::default()
            });
        }
        let rois: Vec<[f32; 5]> = dets
            .iter()
            .map(|(i, b, _)| [*i as f32, b[0], b[1], b[2], b[3]])
            .collect();
        let labels: Vec<usize> = dets.iter().map(|d| d.2).collect();
        // The mask head's widest activation is `R x channels x 28 x 28` floats; a wgpu device
        // caps one buffer (lavapipe at 128 MiB), so many detections (a batch of images, or
        // LVIS's 1203 classes) go through in chunks of RoIs under 96 MiB.
        let m = crate::heads::mask_head::MASK_SIZE;
        let per_roi = self
            .ops()
            .mask_heads()
            .iter()
            .map(MaskHead::widest_channels)
            .max()
            .unwrap_or(1)
            * m
            * m
            * 4;
        let chunk = ((96usize << 20) / per_roi.max(1)).max(1);
        let mut out = ClassMasks {
            size: m,
            ..Default::default()
        };
        for (rois, labels) in rois.chunks(chunk).zip(labels.chunks(chunk)) {
            let (probs, ious) = self
                .ops()
                .mask_probs(feats, rois, labels)?
                .ok_or_else(|| ModelError::Input("no mask heads".into()))?;
            let (masks, size) = inference::class_maps(probs)?;
            out.masks.extend(masks);
            out.size = size;
            if let Some(t) = ious {
                out.ious
                    .get_or_insert_with(Vec::new)
                    .extend(crate::losses::common::host_f32(t)?);
            }
        }
        Ok(out)
    }
}

/// Per detection, its class's mask probabilities and, with Mask Scoring, its predicted mask
/// IoU.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassMasks {
    /// `size x size` probabilities per detection, row-major.
    pub masks: Vec<Vec<f32>>,
    /// 28, or 0 without a mask head.
    pub size: usize,
    /// The MaskIoU head's prediction per detection (Mask Scoring); None without one.
    pub ious: Option<Vec<f32>>,
}

impl ClassMasks {
    /// Mask Scoring's test-time score (mmdetection's `MaskIoUHead.predict_by_feat`): each
    /// score times its detection's predicted mask IoU, in place, not clamped; unchanged
    /// without Mask Scoring.
    pub fn rescore(&self, scores: &mut [f32]) {
        if let Some(ious) = &self.ious {
            for (s, i) in scores.iter_mut().zip(ious) {
                *s *= i;
            }
        }
    }
}

/// 7x7 box features of `rois` enlarged `scale` times (Double Head's regression RoIs; None: as
/// given) with the image context `ctx` added.
///
/// # Errors
/// RoIs naming missing images.
pub(crate) fn pool_scaled_with_context(
    roi: &RoiConfig,
    feats: &[Tensor<4>],
    rois: &[[f32; 5]],
    scale: Option<f32>,
    ctx: Option<&Tensor<2>>,
) -> Result<Tensor<4>> {
    let x = roi.pool_scaled(feats, rois, BOX_ROI_SIZE, scale)?;
    Ok(match ctx {
        Some(g) => fuse_context(x, g, rois),
        None => x,
    })
}

/// Where a box head's RoI features come from: the pyramid, the RoI settings and HTC-Lite's
/// image context (`[B, C]`, added to every RoI feature).
pub(crate) struct RoiPooler<'a> {
    pub roi: &'a RoiConfig,
    pub feats: &'a [Tensor<4>],
    pub ctx: Option<&'a Tensor<2>>,
}

impl RoiPooler<'_> {
    /// 7x7 RoIAlign features of `rois`, enlarged `scale` times (Double Head) or as given.
    ///
    /// # Errors
    /// RoIs naming missing images.
    pub fn boxes(&self, rois: &[[f32; 5]], scale: Option<f32>) -> Result<Tensor<4>> {
        pool_scaled_with_context(self.roi, self.feats, rois, scale, self.ctx)
    }

    /// TSD's deformable pooling of `rois` (7x7, each from its level) moved by `offset`
    /// (`[R, 2, 7, 7]` or `[R, 2, 1, 1]`), with the image context added.
    ///
    /// # Errors
    /// RoIs naming missing images; an offset of another shape.
    pub fn deform(
        &self,
        rois: &[[f32; 5]],
        offset: Tensor<4>,
        spec: &crate::heads::tsd_bbox_head::TsdSpec,
    ) -> Result<Tensor<4>> {
        let levels = self.roi.extractor(BOX_ROI_SIZE).map_roi_levels(rois);
        let n = self.roi.strides.len();
        let x = crate::ops::deform_roi_pool::deform_roi_pool_levels(
            &self.feats[..n.min(self.feats.len())],
            &self.roi.strides,
            &levels,
            rois,
            offset,
            &crate::ops::deform_roi_pool::DeformRoiPoolConfig {
                output_size: BOX_ROI_SIZE,
                spatial_scale: 1.0,
                sample_per_part: spec.sample_per_part,
                trans_std: spec.trans_std,
            },
        )?;
        Ok(match self.ctx {
            Some(g) => fuse_context(x, g, rois),
            None => x,
        })
    }
}

/// What a box head gives for a set of RoIs.
pub(crate) struct BoxForward {
    /// Class logits `[R, cls_channels]` (TSD's, for a TSD head).
    pub cls: Tensor<2>,
    /// Deltas `[R, 4 or 4 C]` (TSD's).
    pub reg: Tensor<2>,
    /// The fine-tuning step's second branch's logits; None without it.
    pub dual: Option<Tensor<2>>,
    /// The boxes the deltas are relative to when they are not the RoIs (TSD's translated
    /// proposals).
    pub decode_rois: Option<Vec<[f32; 5]>>,
    /// In training, TSD's outputs and the sibling head's logits and deltas.
    pub tsd: Option<TsdTrain>,
}

/// TSD's training outputs.
pub(crate) struct TsdTrain {
    pub out: crate::heads::TsdOutput,
    /// The sibling head's logits and deltas.
    pub sibling: (Tensor<2>, Tensor<2>),
}

/// A box head's logits and deltas on `rois`, pooling them once, or twice for the Double Head
/// (the regression branch reads the enlarged RoIs), with the second classification branch's
/// logits when the head has one. A TSD head gives TSD's logits and deltas with its
/// translated proposals and, with `train`, its sibling head's outputs too.
///
/// # Errors
/// RoIs naming missing images.
pub(crate) fn box_head_forward(
    head: &BBoxHead,
    rois: &[[f32; 5]],
    pooler: &RoiPooler,
    train: bool,
) -> Result<BoxForward> {
    let cls_feats = pooler.boxes(rois, None)?;
    if let Some(branch) = &head.tsd {
        let out = branch.forward(cls_feats.clone(), &|offset| {
            pooler.deform(rois, offset, &branch.spec)
        })?;
        let delta_r = crate::losses::common::host_f32(out.delta_r.clone().detach())?;
        let decode_rois = Some(branch.translate(rois, &delta_r));
        let (cls, reg) = (out.cls.clone(), out.reg.clone());
        let tsd = train.then(|| TsdTrain {
            out,
            sibling: head.forward(cls_feats),
        });
        return Ok(BoxForward {
            cls,
            reg,
            dual: None,
            decode_rois,
            tsd,
        });
    }
    let dual = head.dual_logits(cls_feats.clone());
    let (cls, reg) = match head.reg_roi_scale() {
        Some(scale) => head.forward_pair(cls_feats, pooler.boxes(rois, Some(scale))?),
        None => head.forward(cls_feats),
    };
    Ok(BoxForward {
        cls,
        reg,
        dual,
        decode_rois: None,
        tsd: None,
    })
}

/// RoIAlign features of `rois` with the image context `ctx` (`[B, C]`, HTC-Lite's) added.
///
/// # Errors
/// RoIs naming missing images.
pub(crate) fn pool_with_context(
    roi: &RoiConfig,
    feats: &[Tensor<4>],
    rois: &[[f32; 5]],
    size: usize,
    ctx: Option<&Tensor<2>>,
) -> Result<Tensor<4>> {
    let x = roi.pool(feats, rois, size)?;
    Ok(match ctx {
        Some(g) => fuse_context(x, g, rois),
        None => x,
    })
}
