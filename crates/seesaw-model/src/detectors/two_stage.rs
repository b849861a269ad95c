//! Two-stage detectors as mmdetection composes them: ResNet -> FPN -> RPN -> RoI heads on
//! RoIAlign features. The RoI heads are one of four ([`DetectorKind`]):
//! - `mask_rcnn`: one Shared2FC box stage and an FCN mask head (He et al. 2017);
//! - `cascade`: box stages at rising IoU, each refining the last's boxes, a mask head per stage
//!   (Cascade Mask R-CNN, Cai & Vasconcelos 2019);
//! - `htc`: HTC without its semantic branch: box and mask interleaved, mask features flowing
//!   from stage to stage (Chen et al. 2019);
//! - `htc_lite`: the cascade's box stages, one mask head after the last, and a global context
//!   encoder whose feature joins every RoI feature (the LVIS 2020 entry; spec §4.2).
//!
//! The classification loss is any of [`crate::losses::AnyLoss`], one per box stage (Seesaw
//! keeps counts per stage); with Seesaw the classifiers have C + 2 outputs.

use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::backbones::{ResNet, ResNetConfig};
use crate::error::{ModelError, Result};
use crate::heads::global_context_head::{GlobalContextConfig, GlobalContextHead, fuse_context};
use crate::heads::rpn_head::{RpnOutput, level_anchors};
use crate::heads::{BBoxHead, BBoxHeadConfig, MaskHead, MaskHeadConfig, RpnConfig, RpnHead};
use crate::losses::any::AnyLoss;
use crate::losses::bbox::{l1_loss, smooth_l1_loss};
use crate::losses::common::{bce_with_logits, float_tensor, host_f32, index_tensor};
use crate::losses::{LossKind, Reduction};
use crate::necks::{Fpn, FpnConfig};
use crate::ops::Box2;
use crate::ops::assigner::MaxIouAssigner;
use crate::ops::box_coder::DeltaXywhCoder;
use crate::ops::mask_target::mask_target_bitmap;
use crate::ops::nms::batched_nms;
use crate::ops::roi_extractor::RoiExtractorConfig;
use crate::ops::sampler::RandomSampler;
use crate::structures::{Detections, GtInstances, ImageMeta};

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
}

impl Default for RcnnTestConfig {
    fn default() -> Self {
        Self {
            score_thr: 1e-4,
            nms_iou: 0.5,
            max_per_img: 300,
            mask_thr: 0.5,
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
            test: RcnnTestConfig::default(),
        }
    }
}

/// Which RoI heads follow the RPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectorKind {
    /// `mask_rcnn`: one box stage, one mask head.
    MaskRcnn,
    /// `cascade`: Cascade Mask R-CNN, a mask head per box stage.
    Cascade,
    /// `htc`: HTC without the semantic branch.
    Htc,
    /// `htc_lite`: one mask head at the last stage and a global context encoder.
    HtcLite,
}

impl DetectorKind {
    pub const ALL: [DetectorKind; 4] = [
        DetectorKind::MaskRcnn,
        DetectorKind::Cascade,
        DetectorKind::Htc,
        DetectorKind::HtcLite,
    ];

    /// The name configs use.
    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::MaskRcnn => "mask_rcnn",
            DetectorKind::Cascade => "cascade",
            DetectorKind::Htc => "htc",
            DetectorKind::HtcLite => "htc_lite",
        }
    }

    pub fn is_cascade(self) -> bool {
        self != DetectorKind::MaskRcnn
    }
}

impl std::str::FromStr for DetectorKind {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s.replace('-', "_"))
            .ok_or_else(|| {
                ModelError::Input(format!(
                    "unknown detector {s:?} (expected mask_rcnn, cascade, htc or htc_lite)"
                ))
            })
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
struct Stage {
    iou: f32,
    weight: f64,
    stds: [f32; 4],
}

/// Settings of [`Detector`]; defaults are mmdetection's Mask R-CNN R50-FPN on LVIS v1 with
/// Seesaw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// mask_rcnn, cascade, htc or htc_lite. Default mask_rcnn.
    pub detector: String,
    /// Default 1203 (LVIS v1).
    pub num_classes: usize,
    /// Classification loss of the box heads: ce, bce, eql, eqlv2, federated or seesaw.
    pub loss: String,
    /// Train and predict masks. Default true.
    pub with_mask: bool,
    pub backbone: ResNetConfig,
    pub neck: FpnConfig,
    pub rpn: RpnConfig,
    pub roi: RoiConfig,
    /// The box head of every stage.
    pub bbox_head: BBoxHeadConfig,
    /// The mask head of every stage that has one.
    pub mask_head: MaskHeadConfig,
    /// Stages of cascade, htc and htc_lite (mask_rcnn uses `roi.pos_iou` and
    /// `bbox_head.target_stds`).
    pub cascade: CascadeConfig,
    /// htc_lite's global context encoder.
    pub glbctx: GlobalContextConfig,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            detector: "mask_rcnn".into(),
            num_classes: 1203,
            loss: "seesaw".into(),
            with_mask: true,
            backbone: ResNetConfig::default(),
            neck: FpnConfig::default(),
            rpn: RpnConfig::default(),
            roi: RoiConfig::default(),
            bbox_head: BBoxHeadConfig {
                normed_classifier: true,
                ..Default::default()
            },
            mask_head: MaskHeadConfig::default(),
            cascade: CascadeConfig::default(),
            glbctx: GlobalContextConfig::default(),
        }
    }
}

impl DetectorConfig {
    /// The classification loss named by `loss`.
    pub fn loss_kind(&self) -> Result<LossKind> {
        self.loss.parse()
    }

    /// The RoI heads named by `detector`.
    pub fn kind(&self) -> Result<DetectorKind> {
        self.detector.parse()
    }

    /// Box stages, hence classification losses, the detector trains.
    pub fn num_stages(&self) -> Result<usize> {
        Ok(self.stages()?.len())
    }

    fn stages(&self) -> Result<Vec<Stage>> {
        if !self.kind()?.is_cascade() {
            return Ok(vec![Stage {
                iou: self.roi.pos_iou,
                weight: 1.0,
                stds: self.bbox_head.target_stds,
            }]);
        }
        let c = &self.cascade;
        let n = c.stage_ious.len();
        if n == 0 || c.stage_loss_weights.len() != n || c.stage_target_stds.len() != n {
            return Err(ModelError::Input(format!(
                "cascade: stage_ious, stage_loss_weights and stage_target_stds must have the \
                 same positive length (have {}, {} and {})",
                n,
                c.stage_loss_weights.len(),
                c.stage_target_stds.len()
            )));
        }
        Ok((0..n)
            .map(|t| Stage {
                iou: c.stage_ious[t],
                weight: c.stage_loss_weights[t],
                stds: c.stage_target_stds[t],
            })
            .collect())
    }

    /// Builds the network; parameters are drawn from the device's generator (seed it first).
    pub fn init(&self, device: &Device) -> Result<Detector> {
        let kind = self.kind()?;
        let loss = self.loss_kind()?;
        let stages = self.stages()?;
        if self.num_classes == 0 {
            return Err(ModelError::Input("num_classes must be positive".into()));
        }
        if self.neck.num_outs != self.rpn.anchor_strides.len() {
            return Err(ModelError::Input(format!(
                "rpn.anchor_strides has {} levels but neck.num_outs is {}",
                self.rpn.anchor_strides.len(),
                self.neck.num_outs
            )));
        }
        if self.roi.strides.is_empty() || self.roi.strides.len() > self.neck.num_outs {
            return Err(ModelError::Input(format!(
                "roi.strides must name 1 to {} pyramid levels",
                self.neck.num_outs
            )));
        }
        if !["l1", "smooth_l1"].contains(&self.bbox_head.loss_bbox.as_str()) {
            return Err(ModelError::Input(format!(
                "bbox_head.loss_bbox {:?}: expected l1 or smooth_l1",
                self.bbox_head.loss_bbox
            )));
        }
        let backbone = self.backbone.init(device)?;
        let neck = self.neck.init(&self.backbone.out_channels()?, device)?;
        let c = self.neck.out_channels;
        let rpn_head = self.rpn.init(c, device)?;
        let bbox_heads = stages
            .iter()
            .map(|_| {
                self.bbox_head.init(
                    c * 49,
                    self.num_classes,
                    loss.cls_channels(self.num_classes),
                    device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let num_masks = match (self.with_mask, kind) {
            (false, _) => 0,
            (true, DetectorKind::Cascade | DetectorKind::Htc) => stages.len(),
            (true, _) => 1,
        };
        let mask_heads = (0..num_masks)
            .map(|t| {
                self.mask_head.init_htc(
                    c,
                    self.num_classes,
                    kind == DetectorKind::Htc && t > 0,
                    device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let glbctx = if kind == DetectorKind::HtcLite {
            Some(self.glbctx.init(c, self.num_classes, device)?)
        } else {
            None
        };
        let det = Detector {
            backbone,
            neck,
            rpn_head,
            bbox_heads,
            mask_heads,
            glbctx,
            kind,
            config: self.clone(),
        };
        // burn draws a parameter at its first use; draw them all now, while the caller's seed
        // (and any lock it holds on the global generator) is in force.
        det.visit(&mut Materialize);
        Ok(det)
    }

    fn extractor(&self, output_size: usize) -> RoiExtractorConfig {
        RoiExtractorConfig {
            strides: self.roi.strides.clone(),
            finest_scale: self.roi.finest_scale,
            output_size,
            sampling_ratio: self.roi.sampling_ratio,
        }
    }
}

/// The parts of the training loss, each a scalar `[1]`; the box and mask parts are summed
/// over stages with the stage weights.
#[derive(Debug, Clone)]
pub struct LossParts {
    pub rpn_cls: Tensor<1>,
    pub rpn_bbox: Tensor<1>,
    pub cls: Tensor<1>,
    pub bbox: Tensor<1>,
    /// Zero when masks are off.
    pub mask: Tensor<1>,
    /// The global context encoder's loss; zero without one.
    pub glbctx: Tensor<1>,
}

impl LossParts {
    /// Names, in the order of [`LossParts::to_vec`].
    pub const NAMES: [&'static str; 6] = ["rpn_cls", "rpn_bbox", "cls", "bbox", "mask", "glbctx"];

    pub fn total(&self) -> Tensor<1> {
        self.to_vec()
            .into_iter()
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| self.cls.clone())
    }

    pub fn to_vec(&self) -> Vec<Tensor<1>> {
        vec![
            self.rpn_cls.clone(),
            self.rpn_bbox.clone(),
            self.cls.clone(),
            self.bbox.clone(),
            self.mask.clone(),
            self.glbctx.clone(),
        ]
    }
}

/// A two-stage detector.
#[derive(Module, Debug)]
pub struct Detector {
    pub backbone: ResNet,
    pub neck: Fpn,
    pub rpn_head: RpnHead,
    /// One per box stage.
    pub bbox_heads: Vec<BBoxHead>,
    /// One (mask_rcnn, htc_lite), one per stage (cascade, htc) or none (masks off).
    pub mask_heads: Vec<MaskHead>,
    /// htc_lite's global context encoder.
    pub glbctx: Option<GlobalContextHead>,
    #[module(skip)]
    kind: DetectorKind,
    #[module(skip)]
    config: DetectorConfig,
}

/// The sampled RoIs of a batch, positives of each image first.
struct Sampled {
    rois: Vec<[f32; 5]>,
    labels: Vec<usize>,
    /// Per RoI: whether it is a ground truth added as a proposal.
    is_gt: Vec<bool>,
    /// Rows of `rois` that are positive, with their box targets.
    pos_rows: Vec<usize>,
    targets: Vec<f64>,
    /// Per positive: its image and ground-truth index.
    pos_gt: Vec<(usize, usize)>,
}

impl Detector {
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    pub fn kind(&self) -> DetectorKind {
        self.kind
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.backbone.conv1.weight.device()
    }

    /// Pyramid features of `images` `[B, 3, H, W]` (H, W multiples of 32).
    pub fn features(&self, images: Tensor<4>) -> Vec<Tensor<4>> {
        self.neck.forward(self.backbone.forward(images))
    }

    fn rpn(&self, feats: &[Tensor<4>]) -> (RpnOutput, Vec<Box2>, Vec<usize>) {
        let out = self.rpn_head.forward(feats);
        let (anchors, starts) = level_anchors(&self.config().rpn.anchor_generator(), &out.sizes);
        (out, anchors, starts)
    }

    /// The global context head's logits `[B, K]` and feature `[B, C]`, for htc_lite.
    fn context(&self, feats: &[Tensor<4>]) -> Option<(Tensor<2>, Tensor<2>)> {
        let head = self.glbctx.as_ref()?;
        feats.last().map(|x| head.forward(x.clone()))
    }

    /// RoIAlign features `[R, C, size, size]` of `rois`, with the image context added.
    fn pooled(
        &self,
        feats: &[Tensor<4>],
        rois: &[[f32; 5]],
        size: usize,
        ctx: Option<&Tensor<2>>,
    ) -> Result<Tensor<4>> {
        let cfg = self.config();
        let x = cfg
            .extractor(size)
            .extract(&feats[..cfg.roi.strides.len()], rois)?;
        Ok(match ctx {
            Some(g) => fuse_context(x, g, rois),
            None => x,
        })
    }

    /// Mask logits `[R, C, 28, 28]` of mask head `t` on pooled features `[R, C, 14, 14]`;
    /// HTC runs the heads before it for their features first.
    fn mask_logits(&self, pooled: Tensor<4>, t: usize) -> Result<Tensor<4>> {
        let head = self
            .mask_heads
            .get(t)
            .ok_or_else(|| ModelError::Input(format!("no mask head {t}")))?;
        let mut res = None;
        if self.kind == DetectorKind::Htc {
            for h in &self.mask_heads[..t] {
                res = Some(h.features(pooled.clone(), res));
            }
        }
        Ok(head.logits(head.features(pooled, res)))
    }

    /// The training loss of a batch: `images` `[B, 3, H, W]`, one meta and one ground-truth
    /// set per image. `losses` are the box stages' classification losses (they keep Seesaw's
    /// counts), one per stage; `rng` draws the sampled anchors and RoIs.
    pub fn forward_train<R: Rng>(
        &self,
        images: Tensor<4>,
        metas: &[ImageMeta],
        gts: &[GtInstances],
        losses: &mut [AnyLoss],
        rng: &mut R,
    ) -> Result<LossParts> {
        let cfg = self.config();
        let stages = cfg.stages()?;
        let device = images.device();
        let [b, _, _, _] = images.dims();
        if metas.len() != b || gts.len() != b {
            return Err(ModelError::Input(format!(
                "{b} images with {} metas and {} ground-truth sets",
                metas.len(),
                gts.len()
            )));
        }
        if losses.len() != stages.len() {
            return Err(ModelError::Input(format!(
                "{} box stages but {} classification losses",
                stages.len(),
                losses.len()
            )));
        }
        let feats = self.features(images);
        let (out, anchors, starts) = self.rpn(&feats);
        let (rpn_cls, rpn_bbox) = cfg.rpn.loss(&out, &anchors, gts, rng)?;
        let mut proposals: Vec<Vec<Box2>> = cfg
            .rpn
            .proposals(&out, &anchors, &starts, metas, &cfg.rpn.train)?
            .into_iter()
            .map(|p| p.into_iter().map(|(bx, _)| bx).collect())
            .collect();
        let ctx = self.context(&feats);
        let glbctx = match (&self.glbctx, &ctx) {
            (Some(head), Some((logits, _))) => {
                let labels: Vec<Vec<usize>> = gts.iter().map(|g| g.labels.clone()).collect();
                head.loss(logits.clone(), &labels)?
            }
            _ => Tensor::zeros([1], &device),
        };
        let ctx = ctx.map(|(_, g)| g);
        let zero = || Tensor::<1>::zeros([1], &device);
        let (mut cls, mut bbox, mut mask) = (zero(), zero(), zero());
        let last = stages.len() - 1;
        for (t, (stage, loss)) in stages.iter().zip(losses.iter_mut()).enumerate() {
            let s = self.sample_rois(&proposals, gts, stage, rng);
            let pooled = self.pooled(&feats, &s.rois, 7, ctx.as_ref())?;
            let (cls_score, reg) = self.bbox_heads[t].forward(pooled);
            let r = s.rois.len();
            let cls_t = loss.forward(cls_score.clone(), &s.labels, Some(r.max(1) as f64))?;
            let bbox_t = self.box_loss(reg.clone(), &s)?;
            cls = cls + cls_t.mul_scalar(stage.weight);
            bbox = bbox + bbox_t.mul_scalar(stage.weight);
            let refine = t < last || self.kind == DetectorKind::Htc;
            let refined = if refine && r > 0 {
                Some(self.refine_training(&s, cls_score, reg, metas, stage, loss)?)
            } else {
                None
            };
            if !self.mask_heads.is_empty() {
                match self.kind {
                    DetectorKind::MaskRcnn => {
                        mask = mask + self.mask_loss(&feats, &s, gts, 0, ctx.as_ref())?;
                    }
                    DetectorKind::Cascade => {
                        let m = self.mask_loss(&feats, &s, gts, t, ctx.as_ref())?;
                        mask = mask + m.mul_scalar(stage.weight);
                    }
                    DetectorKind::Htc => {
                        // Interleaved: the mask head trains on RoIs re-sampled from the boxes
                        // this stage has just refined, which also feed the next stage.
                        if let Some(p) = refined.clone() {
                            proposals = p;
                        }
                        let s2 = self.sample_rois(&proposals, gts, stage, rng);
                        let m = self.mask_loss(&feats, &s2, gts, t, ctx.as_ref())?;
                        mask = mask + m.mul_scalar(stage.weight);
                    }
                    DetectorKind::HtcLite if t == last => {
                        let m = self.mask_loss(&feats, &s, gts, 0, ctx.as_ref())?;
                        mask = mask + m.mul_scalar(cfg.cascade.mask_loss_weight);
                    }
                    DetectorKind::HtcLite => {}
                }
            }
            if let Some(p) = refined
                && self.kind != DetectorKind::Htc
            {
                proposals = p;
            }
        }
        Ok(LossParts {
            rpn_cls,
            rpn_bbox,
            cls,
            bbox,
            mask,
            glbctx,
        })
    }

    /// L1 (or smooth L1) over the positives' deltas, averaged over all sampled RoIs.
    fn box_loss(&self, reg: Tensor<2>, s: &Sampled) -> Result<Tensor<1>> {
        let cfg = self.config();
        let device = reg.device();
        let r = s.rois.len();
        if s.pos_rows.is_empty() {
            return Ok(reg.sum().mul_scalar(0.0));
        }
        let p = s.pos_rows.len();
        let pred = if cfg.bbox_head.class_agnostic {
            reg.select(0, index_tensor(&s.pos_rows, &device))
        } else {
            let c = cfg.num_classes;
            let idx: Vec<usize> = s
                .pos_rows
                .iter()
                .map(|&row| row * c + s.labels[row])
                .collect();
            reg.reshape([r * c, 4])
                .select(0, index_tensor(&idx, &device))
        };
        let target = float_tensor(s.targets.clone(), [p, 4], &device);
        let sum = if cfg.bbox_head.loss_bbox == "smooth_l1" {
            smooth_l1_loss(pred, target, 1.0, Reduction::Sum, None)?
        } else {
            l1_loss(pred, target, Reduction::Sum, None)?
        };
        Ok(sum.div_scalar(r as f64))
    }

    /// Mask head `t`'s BCE over the positives of `s`, against their ground truths' masks.
    fn mask_loss(
        &self,
        feats: &[Tensor<4>],
        s: &Sampled,
        gts: &[GtInstances],
        t: usize,
        ctx: Option<&Tensor<2>>,
    ) -> Result<Tensor<1>> {
        let device = feats[0].device();
        if s.pos_rows.is_empty() {
            return Ok(Tensor::zeros([1], &device));
        }
        let pos_rois: Vec<[f32; 5]> = s.pos_rows.iter().map(|&i| s.rois[i]).collect();
        let m = 28;
        let mut targets = Vec::with_capacity(pos_rois.len() * m * m);
        for (k, &(img, g)) in s.pos_gt.iter().enumerate() {
            let gm = gts[img].masks.get(g).ok_or_else(|| {
                ModelError::Input(format!("image {img}: ground truth {g} has no mask"))
            })?;
            let roi = pos_rois[k];
            targets.extend(
                mask_target_bitmap(gm, &[roi[1], roi[2], roi[3], roi[4]], m)
                    .into_iter()
                    .map(f64::from),
            );
        }
        let pooled = self.pooled(feats, &pos_rois, 14, ctx)?;
        let logits = self.mask_logits(pooled, t)?;
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
        Ok(bce_with_logits(chosen, float_tensor(targets, [p, m * m], &device)).mean())
    }

    /// mmdetection's `refine_bboxes`: every sampled RoI but the added ground truths, moved by
    /// its regression (the target class for positives, the best-scoring class for negatives,
    /// when regression is class-specific) and clipped to its image, as the next proposals.
    fn refine_training(
        &self,
        s: &Sampled,
        cls_score: Tensor<2>,
        reg: Tensor<2>,
        metas: &[ImageMeta],
        stage: &Stage,
        loss: &AnyLoss,
    ) -> Result<Vec<Vec<Box2>>> {
        let cfg = self.config();
        let c = cfg.num_classes;
        let labels = if cfg.bbox_head.class_agnostic {
            s.labels.clone()
        } else {
            let best = argmax_rows(&host_f32(loss.class_scores(cls_score.detach(), c)?)?, c);
            s.labels
                .iter()
                .zip(best)
                .map(|(&l, b)| if l == c { b } else { l })
                .collect()
        };
        let boxes = self.decode(&s.rois, &host_f32(reg.detach())?, &labels, metas, stage)?;
        let mut out = vec![Vec::new(); metas.len()];
        for ((roi, bx), &gt) in s.rois.iter().zip(boxes).zip(&s.is_gt) {
            if !gt {
                out[roi[0] as usize].push(bx);
            }
        }
        Ok(out)
    }

    /// Each RoI moved by its deltas (`[R, 4]` or `[R, 4 C]`, of class `labels[r]`) and clipped
    /// to its image.
    fn decode(
        &self,
        rois: &[[f32; 5]],
        deltas: &[f32],
        labels: &[usize],
        metas: &[ImageMeta],
        stage: &Stage,
    ) -> Result<Vec<Box2>> {
        let cfg = self.config();
        let per_roi = if cfg.bbox_head.class_agnostic {
            1
        } else {
            cfg.num_classes
        };
        let coder = DeltaXywhCoder {
            stds: stage.stds,
            ..Default::default()
        };
        rois.iter()
            .enumerate()
            .map(|(r, roi)| {
                let meta = image_meta(metas, roi, r)?;
                let k = if per_roi == 1 {
                    0
                } else {
                    labels[r].min(per_roi - 1)
                };
                let o = (r * per_roi + k) * 4;
                let d = [deltas[o], deltas[o + 1], deltas[o + 2], deltas[o + 3]];
                Ok(coder.decode(
                    &[roi[1], roi[2], roi[3], roi[4]],
                    &d,
                    Some((meta.img_shape.0 as f32, meta.img_shape.1 as f32)),
                ))
            })
            .collect()
    }

    fn sample_rois<R: Rng>(
        &self,
        proposals: &[Vec<Box2>],
        gts: &[GtInstances],
        stage: &Stage,
        rng: &mut R,
    ) -> Sampled {
        let cfg = self.config();
        let assigner = MaxIouAssigner {
            pos_iou_thr: stage.iou,
            neg_iou_thr: (0.0, stage.iou),
            min_pos_iou: stage.iou,
            ..MaxIouAssigner::rcnn()
        };
        let sampler = RandomSampler {
            num: cfg.roi.sampler_num,
            pos_fraction: cfg.roi.sampler_pos_fraction,
            neg_pos_ub: -1.0,
            add_gt_as_proposals: true,
        };
        let coder = DeltaXywhCoder {
            stds: stage.stds,
            ..Default::default()
        };
        let bg = cfg.num_classes;
        let mut s = Sampled {
            rois: vec![],
            labels: vec![],
            is_gt: vec![],
            pos_rows: vec![],
            targets: vec![],
            pos_gt: vec![],
        };
        for (i, (cands, gt)) in proposals.iter().zip(gts).enumerate() {
            let assign = assigner.assign(cands, &gt.boxes, &gt.labels, &gt.ignore);
            let res = sampler.sample(&assign, &gt.labels, rng);
            let list = |k: usize| -> Box2 {
                if k < res.num_gts_added {
                    gt.boxes[k]
                } else {
                    cands[k - res.num_gts_added]
                }
            };
            for &p in &res.pos {
                let g = (res.assign.gt_inds[p] - 1) as usize;
                let bx = list(p);
                s.pos_rows.push(s.rois.len());
                s.rois.push([i as f32, bx[0], bx[1], bx[2], bx[3]]);
                s.labels.push(gt.labels[g]);
                s.is_gt.push(p < res.num_gts_added);
                s.targets
                    .extend(coder.encode(&bx, &gt.boxes[g]).map(f64::from));
                s.pos_gt.push((i, g));
            }
            for &q in &res.neg {
                let bx = list(q);
                s.rois.push([i as f32, bx[0], bx[1], bx[2], bx[3]]);
                s.labels.push(bg);
                s.is_gt.push(q < res.num_gts_added);
            }
        }
        s
    }

    /// Test-time proposals of each image (at input scale), best first.
    pub fn proposals(
        &self,
        feats: &[Tensor<4>],
        metas: &[ImageMeta],
    ) -> Result<Vec<Vec<(Box2, f32)>>> {
        let (out, anchors, starts) = self.rpn(feats);
        let cfg = self.config();
        cfg.rpn
            .proposals(&out, &anchors, &starts, metas, &cfg.rpn.test)
    }

    /// The box stages on `rois` (`[image, x1, y1, x2, y2]` at input scale): class scores
    /// (`[R * C]`, row-major) from the stages' mean logits, and per RoI and class the box
    /// decoded by the last stage, clipped to its image (`[R * C]`; the same box for every
    /// class when regression is class-agnostic). Each stage but the last moves the RoIs for
    /// the next, by the best-scoring class's regression.
    pub fn box_predictions(
        &self,
        feats: &[Tensor<4>],
        rois: &[[f32; 5]],
        metas: &[ImageMeta],
        loss: &AnyLoss,
    ) -> Result<(Vec<f32>, Vec<Box2>)> {
        let cfg = self.config();
        let stages = cfg.stages()?;
        let c = cfg.num_classes;
        if rois.is_empty() {
            return Ok((vec![], vec![]));
        }
        let ctx = self.context(feats).map(|(_, g)| g);
        let mut rois = rois.to_vec();
        let mut logits: Option<Tensor<2>> = None;
        let last = stages.len() - 1;
        let mut deltas = vec![];
        for (t, stage) in stages.iter().enumerate() {
            let pooled = self.pooled(feats, &rois, 7, ctx.as_ref())?;
            let (cls_score, reg) = self.bbox_heads[t].forward(pooled);
            logits = Some(match logits {
                Some(sum) => sum + cls_score.clone(),
                None => cls_score.clone(),
            });
            deltas = host_f32(reg)?;
            if t < last {
                let labels = if cfg.bbox_head.class_agnostic {
                    vec![0; rois.len()]
                } else {
                    argmax_rows(&host_f32(loss.class_scores(cls_score, c)?)?, c)
                };
                let moved = self.decode(&rois, &deltas, &labels, metas, stage)?;
                for (roi, b) in rois.iter_mut().zip(moved) {
                    roi[1..].copy_from_slice(&b);
                }
            }
        }
        let mean = logits
            .ok_or_else(|| ModelError::Input("no box stages".into()))?
            .div_scalar(stages.len() as f64);
        let scores = host_f32(loss.class_scores(mean, c)?)?;
        let per_roi = if cfg.bbox_head.class_agnostic { 1 } else { c };
        let coder = DeltaXywhCoder {
            stds: stages[last].stds,
            ..Default::default()
        };
        let mut boxes = Vec::with_capacity(rois.len() * c);
        for (r, roi) in rois.iter().enumerate() {
            let meta = image_meta(metas, roi, r)?;
            let max_shape = Some((meta.img_shape.0 as f32, meta.img_shape.1 as f32));
            let reference = [roi[1], roi[2], roi[3], roi[4]];
            for k in 0..c {
                let o = (r * per_roi + if per_roi == 1 { 0 } else { k }) * 4;
                let d = [deltas[o], deltas[o + 1], deltas[o + 2], deltas[o + 3]];
                boxes.push(coder.decode(&reference, &d, max_shape));
            }
        }
        Ok((scores, boxes))
    }

    /// Mask probabilities (`m x m`, row-major) of each `(image, box at input scale, class)`:
    /// the sigmoid of the mask head, averaged over the stages' heads for cascade and htc.
    pub fn mask_probs(
        &self,
        feats: &[Tensor<4>],
        dets: &[(usize, Box2, usize)],
    ) -> Result<(Vec<Vec<f32>>, usize)> {
        if self.mask_heads.is_empty() {
            return Ok((vec![], 0));
        }
        if dets.is_empty() {
            return Ok((vec![], 28));
        }
        let rois: Vec<[f32; 5]> = dets
            .iter()
            .map(|(i, b, _)| [*i as f32, b[0], b[1], b[2], b[3]])
            .collect();
        let ctx = self.context(feats).map(|(_, g)| g);
        let pooled = self.pooled(feats, &rois, 14, ctx.as_ref())?;
        let heads = self.mask_heads.len();
        let mut sum: Option<Tensor<4>> = None;
        let mut res = None;
        for head in &self.mask_heads {
            let x = if self.kind == DetectorKind::Htc {
                let f = head.features(pooled.clone(), res.take());
                res = Some(f.clone());
                f
            } else {
                head.features(pooled.clone(), None)
            };
            let p = sigmoid(head.logits(x));
            sum = Some(match sum {
                Some(s) => s + p,
                None => p,
            });
        }
        let probs = sum
            .ok_or_else(|| ModelError::Input("no mask heads".into()))?
            .div_scalar(heads as f64);
        let [n, cc, m, _] = probs.dims();
        let idx: Vec<usize> = dets.iter().enumerate().map(|(k, d)| k * cc + d.2).collect();
        let device = probs.device();
        let probs = host_f32(
            probs
                .reshape([n * cc, m * m])
                .select(0, index_tensor(&idx, &device)),
        )?;
        Ok((probs.chunks_exact(m * m).map(<[f32]>::to_vec).collect(), m))
    }

    /// Detections of a batch (boxes at input scale), best first per image: `score_thr`,
    /// class-wise NMS and `max_per_img` of `roi.test`; with masks, each detection's mask
    /// probabilities (28 x 28) of its class.
    pub fn predict(
        &self,
        images: Tensor<4>,
        metas: &[ImageMeta],
        loss: &AnyLoss,
    ) -> Result<Vec<Detections>> {
        let cfg = self.config();
        let feats = self.features(images);
        let proposals = self.proposals(&feats, metas)?;
        let mut rois = Vec::new();
        for (i, props) in proposals.iter().enumerate() {
            rois.extend(
                props
                    .iter()
                    .map(|(b, _)| [i as f32, b[0], b[1], b[2], b[3]]),
            );
        }
        let (scores, boxes) = self.box_predictions(&feats, &rois, metas, loss)?;
        let c = cfg.num_classes;
        let mut dets = Vec::with_capacity(metas.len());
        let mut start = 0;
        for props in &proposals {
            let rows = start..start + props.len();
            dets.push(select_detections(
                &scores[rows.start * c..rows.end * c],
                &boxes[rows.start * c..rows.end * c],
                c,
                &cfg.roi.test,
            ));
            start = rows.end;
        }
        let wanted: Vec<(usize, Box2, usize)> = dets
            .iter()
            .enumerate()
            .flat_map(|(i, d)| d.boxes.iter().zip(&d.labels).map(move |(b, &l)| (i, *b, l)))
            .collect();
        let (masks, m) = self.mask_probs(&feats, &wanted)?;
        let mut masks = masks.into_iter();
        for d in &mut dets {
            d.mask_size = m;
            d.masks = masks.by_ref().take(d.boxes.len()).collect();
        }
        Ok(dets)
    }
}

fn image_meta<'a>(metas: &'a [ImageMeta], roi: &[f32; 5], r: usize) -> Result<&'a ImageMeta> {
    metas.get(roi[0] as usize).ok_or_else(|| {
        ModelError::Input(format!(
            "rois[{r}] names image {} of {}",
            roi[0],
            metas.len()
        ))
    })
}

/// Per row of `scores` (`width` columns), the index of its best column.
fn argmax_rows(scores: &[f32], width: usize) -> Vec<usize> {
    scores
        .chunks_exact(width.max(1))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (j, &v)| {
                    if v > best.1 { (j, v) } else { best }
                })
                .0
        })
        .collect()
}

/// mmdetection's `multiclass_nms` over one image's RoIs: every (RoI, class) scoring above
/// `score_thr` with a non-empty box, class-wise NMS, the best `max_per_img`. `scores` and
/// `boxes` are `[R * C]`.
pub fn select_detections(
    scores: &[f32],
    boxes: &[Box2],
    num_classes: usize,
    t: &RcnnTestConfig,
) -> Detections {
    let (mut bx, mut sc, mut labels) = (vec![], vec![], vec![]);
    for (j, (&s, b)) in scores.iter().zip(boxes).enumerate() {
        if s.is_nan() || s <= t.score_thr || !(b[2] > b[0] && b[3] > b[1]) {
            continue;
        }
        bx.push(*b);
        sc.push(s);
        labels.push(j % num_classes);
    }
    let keep = batched_nms(&bx, &sc, &labels, t.nms_iou);
    let mut d = Detections::default();
    for k in keep.into_iter().take(t.max_per_img) {
        d.boxes.push(bx[k]);
        d.scores.push(sc[k]);
        d.labels.push(labels[k]);
    }
    d
}

/// Touches every float parameter, so that lazily initialised ones are drawn.
struct Materialize;

impl burn::module::ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let _ = param.val();
    }
}
