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
//! The pieces they share live beside them: their settings (`config.rs`), [`sampling`] (assign
//! and sample RoIs per stage), the box head's forward on RoIs (`box_forward.rs`: pooling with
//! context, Double Head, TSD), [`inference`] (the cascade's test-time box path, mask
//! probabilities, multi-class NMS).
//! Each head owns its losses and their state (see [`crate::heads::BBoxHead`]).
//!
//! Adding a kind: its own file implementing [`RoiHeadOps`], and one line in the
//! `roi_head_kinds!` list below, which makes its `model.detector` name, the [`RoiHead`]
//! variant and the dispatch.

mod box_forward;
pub mod cascade;
mod config;
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
use crate::heads::{BBoxHead, GlobalContextHead, MaskHead};
use crate::losses::{AnyLoss, ClassStats, LossState};
use crate::ops::Box2;
use crate::structures::{GtInstances, ImageMeta};

pub(crate) use box_forward::{RoiPooler, box_head_forward, pool_with_context};
pub use cascade::CascadeRoiHead;
pub use config::{CascadeConfig, RcnnTestConfig, RoiConfig};
pub use htc::HtcRoiHead;
pub use htc_lite::HtcLiteRoiHead;
pub use inference::select_detections;
pub use sampling::{RoiSampler, SampledRois};
pub use standard::StandardRoiHead;

/// Side of the RoI features the box head takes (`roi_layer.output_size`, 7).
pub const BOX_ROI_SIZE: usize = 7;

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
        let m = crate::heads::mask_head::MASK_SIZE;
        let widest = self
            .ops()
            .mask_heads()
            .iter()
            .map(MaskHead::widest_channels)
            .max()
            .unwrap_or(1);
        let chunk = inference::mask_rois_per_chunk(widest);
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
