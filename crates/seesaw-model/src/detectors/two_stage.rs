//! Two-stage detectors as mmdetection (`TwoStageDetector`) and detectron2 (`GeneralizedRCNN`)
//! compose them: backbone (ResNet) -> neck (FPN, ...) -> RPN -> RoI head. The RoI head is one of
//! the kinds of [`crate::roi_heads`] (`model.detector`), each in its own file; the heads own
//! their losses and the losses' state.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::backbones::{ResNet, ResNetConfig};
use crate::error::{ModelError, Result};
use crate::heads::global_context_head::GlobalContextConfig;
use crate::heads::rpn_head::{RpnOutput, level_anchors};
use crate::heads::{BBoxHeadConfig, MaskHeadConfig, MaskIouHeadConfig, RpnConfig, RpnHead};
use crate::losses::{ClassStats, LossKind, LossState, LossesConfig};
use crate::necks::{Neck, NeckConfig};
use crate::ops::Box2;
use crate::roi_heads::{
    CascadeConfig, ClassMasks, DetectorKind, RoiConfig, RoiHead, RoiHeadBuilder, Stage,
    select_detections,
};
use crate::structures::{Detections, GtInstances, ImageMeta, ImageRng};

/// Settings of [`Detector`]; defaults are mmdetection's Mask R-CNN R50-FPN on LVIS v1 with
/// Seesaw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// The RoI head: mask_rcnn, cascade, htc or htc_lite. Default mask_rcnn.
    pub detector: DetectorKind,
    /// Default 1203 (LVIS v1).
    pub num_classes: usize,
    /// Classification loss of the box heads: ce, bce, eql, eqlv2, federated or seesaw.
    /// Default seesaw.
    pub loss: LossKind,
    /// Every loss's hyper-parameters (`[model.losses.seesaw]`, ...), the published defaults.
    pub losses: LossesConfig,
    /// Train and predict masks. Default true.
    pub with_mask: bool,
    pub backbone: ResNetConfig,
    pub neck: NeckConfig,
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
    /// Mask Scoring's MaskIoU head (`enabled = true`), on mask_rcnn and htc_lite.
    pub mask_iou_head: MaskIouHeadConfig,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            detector: DetectorKind::MaskRcnn,
            num_classes: 1203,
            loss: LossKind::Seesaw,
            losses: LossesConfig::default(),
            with_mask: true,
            backbone: ResNetConfig::default(),
            neck: NeckConfig::default(),
            rpn: RpnConfig::default(),
            roi: RoiConfig::default(),
            bbox_head: BBoxHeadConfig {
                normed_classifier: true,
                ..Default::default()
            },
            mask_head: MaskHeadConfig::default(),
            cascade: CascadeConfig::default(),
            glbctx: GlobalContextConfig::default(),
            mask_iou_head: MaskIouHeadConfig::default(),
        }
    }
}

impl DetectorConfig {
    /// Box stages, hence classification losses, the detector trains.
    ///
    /// # Errors
    /// Cascade lists of different or zero lengths.
    pub fn num_stages(&self) -> Result<usize> {
        Ok(self.stages()?.len())
    }

    /// The box stages: one (`roi.pos_iou`, `bbox_head.target_stds`) for mask_rcnn, those of
    /// `cascade` for the cascade kinds.
    ///
    /// # Errors
    /// Cascade lists of different or zero lengths.
    pub fn stages(&self) -> Result<Vec<Stage>> {
        if !self.detector.is_cascade() {
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

    /// Builds the network for prediction (losses with uniform class statistics; their state
    /// comes with a checkpoint). Its parameters are drawn from the device's generator as it
    /// stands (unseeded): they are for a checkpoint to replace. Holds
    /// [`crate::init::generator_lock`] while drawing.
    ///
    /// # Errors
    /// Inconsistent settings.
    pub fn init(&self, device: &Device) -> Result<Detector> {
        let _guard = crate::init::generator_lock();
        self.build(&ClassStats::uniform(self.num_classes), 0, device)
    }

    /// Builds the network for training: seeds the device's generator with `seed` and draws
    /// every parameter, within one hold of [`crate::init::generator_lock`] (the weights
    /// depend on `seed` alone, whatever other threads build); the losses see the training
    /// set's class statistics (`stats`, EQL's frequencies and the federated loss's weights)
    /// and the federated loss draws its classes from `seed`. The weights are drawn on flex and
    /// moved to `device` as new leaves (the same seed, the same model on every backend).
    ///
    /// # Errors
    /// Inconsistent settings, or statistics of another number of classes.
    pub fn init_with(&self, stats: &ClassStats, seed: u64, device: &Device) -> Result<Detector> {
        let _guard = crate::init::generator_lock();
        let host = crate::init::drawing_device(device);
        host.seed(seed);
        let det = self.build(stats, seed, &host)?;
        Ok(if &host == device {
            det
        } else {
            det.fork(device)
        })
    }

    /// Builds and draws every parameter; the caller holds the generator lock.
    fn build(&self, stats: &ClassStats, seed: u64, device: &Device) -> Result<Detector> {
        if self.num_classes == 0 {
            return Err(ModelError::Input("num_classes must be positive".into()));
        }
        if stats.image_counts.len() != self.num_classes {
            return Err(ModelError::Input(format!(
                "class statistics of {} classes for a model of {}",
                stats.image_counts.len(),
                self.num_classes
            )));
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
        let off = MaskIouHeadConfig::default();
        let m = &self.mask_iou_head;
        if !m.enabled && *m != off {
            let set: Vec<&str> = [
                ("num_convs", m.num_convs != off.num_convs),
                ("num_fcs", m.num_fcs != off.num_fcs),
                (
                    "conv_out_channels",
                    m.conv_out_channels != off.conv_out_channels,
                ),
                ("fc_out_channels", m.fc_out_channels != off.fc_out_channels),
                ("loss_weight", m.loss_weight != off.loss_weight),
                ("mask_thr_binary", m.mask_thr_binary != off.mask_thr_binary),
            ]
            .into_iter()
            .filter_map(|(k, s)| s.then_some(k))
            .collect();
            return Err(ModelError::Input(format!(
                "model.mask_iou_head.{}: set while Mask Scoring is off (set enabled = true)",
                set.join(", ")
            )));
        }
        if self.mask_iou_head.enabled
            && (!self.with_mask
                || !matches!(
                    self.detector,
                    DetectorKind::MaskRcnn | DetectorKind::HtcLite
                ))
        {
            return Err(ModelError::Input(format!(
                "model.mask_iou_head: Mask Scoring needs masks and one mask head (detector \
                 mask_rcnn or htc_lite; mmdetection builds it for Mask R-CNN), not {}{}",
                self.detector.name(),
                if self.with_mask { "" } else { " without masks" }
            )));
        }
        let backbone = self.backbone.init(device)?;
        let neck = self.neck.init(&self.backbone.out_channels()?, device)?;
        let c = self.neck.out_channels;
        let rpn_head = self.rpn.init(c, device)?;
        let builder = RoiHeadBuilder {
            cfg: self,
            in_channels: c,
            stats,
            seed,
            device,
        };
        let roi_head = RoiHead::build(self.detector, &builder)?;
        let det = Detector {
            backbone,
            neck,
            rpn_head,
            roi_head,
            config: self.clone(),
        };
        // burn draws a parameter at its first use; draw them all now, while the lock is held.
        crate::init::materialize_locked(&det);
        Ok(det)
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
    /// Per-stage parts of multi-stage RoI heads, weighted and detached, for logging
    /// (`s0.loss_cls`, ...); already in the sums above.
    pub stages: Vec<(String, Tensor<1>)>,
}

impl LossParts {
    /// Names, in the order of [`LossParts::to_vec`].
    pub const NAMES: [&'static str; 6] = ["rpn_cls", "rpn_bbox", "cls", "bbox", "mask", "glbctx"];

    /// The sum of the parts, what training minimises.
    pub fn total(&self) -> Tensor<1> {
        self.to_vec()
            .into_iter()
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| self.cls.clone())
    }

    /// The parts in the order of [`LossParts::NAMES`].
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
    pub neck: Neck,
    pub rpn_head: RpnHead,
    pub roi_head: RoiHead,
    #[module(skip)]
    config: DetectorConfig,
}

impl Detector {
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// The fine-tuning step of dual head classification ([`crate::heads::dual_cls`]): this
    /// trained model (built without the second branches) with a new classification branch on
    /// every box head, drawn from the device's generator seeded with `seed` (under
    /// [`crate::init::generator_lock`]), and everything else frozen (no gradients, batch
    /// norms on their running statistics); the config becomes `cfg` (which must be this
    /// model's with `bbox_head.dual_cls` on).
    ///
    /// # Errors
    /// A `cfg` that is not this model's with the dual branch on.
    pub fn into_dual_cls_finetune(self, cfg: &DetectorConfig, seed: u64) -> Result<Self> {
        let mut without = cfg.clone();
        without.bbox_head.dual_cls = false;
        if !cfg.bbox_head.dual_cls || without != self.config {
            return Err(ModelError::Input(
                "model.bbox_head.dual_cls: the fine-tuning step needs the trained model's \
                 config with dual_cls = true and nothing else changed"
                    .into(),
            ));
        }
        let mut det = self.freeze();
        let _guard = crate::init::generator_lock();
        let host = crate::init::drawing_device(&det.device());
        host.seed(seed);
        let b = &cfg.bbox_head;
        let cls_channels = cfg.loss.cls_channels(cfg.num_classes);
        for head in det.roi_head.ops_mut().bbox_heads_mut() {
            let [fc_in, _] = head.fc1.weight.dims();
            let device = head.fc1.weight.device();
            let branch = crate::heads::dual_cls::DualClsBranch::new(
                fc_in,
                b.fc_channels,
                b.num_shared_fcs,
                cls_channels,
                b.normed_classifier.then_some(b.tau),
                &host,
            );
            crate::init::materialize_locked(&branch);
            head.dual_cls = Some(if host == device {
                branch
            } else {
                branch.fork(&device)
            });
        }
        det.config = cfg.clone();
        Ok(det)
    }

    /// The RoI head's kind.
    pub fn kind(&self) -> DetectorKind {
        self.roi_head.kind()
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.backbone.device()
    }

    /// Every stateful part's loss state, by name (`roi_head.bbox_head.0.loss_cls`, ...).
    pub fn loss_states(&self) -> Vec<(String, LossState)> {
        self.roi_head.loss_states()
    }

    /// Restores what [`Detector::loss_states`] gave.
    ///
    /// # Errors
    /// States of another model or loss.
    pub fn load_loss_states(
        &mut self,
        states: &std::collections::BTreeMap<String, LossState>,
    ) -> Result<()> {
        self.roi_head.load_loss_states(states)
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

    /// The training loss of a batch: `images` `[B, 3, H, W]`, one meta and one ground-truth
    /// set per image; `rngs[i]` draws image i's sampled anchors and RoIs (one generator per
    /// image: its draws do not depend on which images share its batch or replica). Updates
    /// the losses' state (Seesaw's counts, ...), hence `&mut self`.
    ///
    /// # Errors
    /// Inputs that do not fit the model.
    pub fn forward_train(
        &mut self,
        images: Tensor<4>,
        metas: &[ImageMeta],
        gts: &[GtInstances],
        rngs: &mut [ImageRng],
    ) -> Result<LossParts> {
        let [b, _, _, _] = images.dims();
        if metas.len() != b || gts.len() != b || rngs.len() != b {
            return Err(ModelError::Input(format!(
                "{b} images with {} metas, {} ground-truth sets and {} generators",
                metas.len(),
                gts.len(),
                rngs.len()
            )));
        }
        let feats = self.features(images);
        let (out, anchors, starts) = self.rpn(&feats);
        let rpn = &self.config.rpn;
        let (rpn_cls, rpn_bbox) = rpn.loss(&out, &anchors, gts, rngs)?;
        let proposals: Vec<Vec<Box2>> = rpn
            .proposals(&out, &anchors, &starts, metas, &rpn.train)?
            .into_iter()
            .map(|p| p.into_iter().map(|(bx, _)| bx).collect())
            .collect();
        let roi = self
            .roi_head
            .ops_mut()
            .forward_train(&feats, proposals, metas, gts, rngs)?;
        Ok(LossParts {
            rpn_cls,
            rpn_bbox,
            cls: roi.cls,
            bbox: roi.bbox,
            mask: roi.mask,
            glbctx: roi.glbctx,
            stages: roi.stages,
        })
    }

    /// Test-time proposals of each image (at input scale), best first.
    ///
    /// # Errors
    /// Metas that do not fit the features.
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
    /// decoded by the last stage, clipped to its image (`[R * C]`).
    ///
    /// # Errors
    /// RoIs naming missing images.
    pub fn box_predictions(
        &self,
        feats: &[Tensor<4>],
        rois: &[[f32; 5]],
        metas: &[ImageMeta],
    ) -> Result<(Vec<f32>, Vec<Box2>)> {
        self.roi_head.ops().box_predictions(feats, rois, metas)
    }

    /// Mask probabilities (`m x m`, row-major) of each `(image, box at input scale, class)`:
    /// the sigmoid of the mask head, averaged over the stages' heads for cascade and htc; with
    /// Mask Scoring also each one's predicted mask IoU.
    ///
    /// # Errors
    /// Detections naming missing images.
    pub fn mask_probs(
        &self,
        feats: &[Tensor<4>],
        dets: &[(usize, Box2, usize)],
    ) -> Result<ClassMasks> {
        self.roi_head.class_mask_probs(feats, dets)
    }

    /// Detections of a batch (boxes at input scale), best first per image: `score_thr`,
    /// class-wise NMS and `max_per_img` of `roi.test`; with masks, each detection's mask
    /// probabilities (28 x 28) of its class.
    ///
    /// # Errors
    /// Metas that do not fit the images.
    pub fn predict(&self, images: Tensor<4>, metas: &[ImageMeta]) -> Result<Vec<Detections>> {
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
        let (scores, boxes) = self.box_predictions(&feats, &rois, metas)?;
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
        let class_masks = self.mask_probs(&feats, &wanted)?;
        let mut masks = class_masks.masks.clone().into_iter();
        let mut start = 0;
        for d in &mut dets {
            d.mask_size = class_masks.size;
            d.masks = masks.by_ref().take(d.boxes.len()).collect();
            // Mask Scoring: the score is the classification score times the mask's IoU.
            if let Some(ious) = &class_masks.ious {
                let n = d.scores.len();
                for (s, i) in d.scores.iter_mut().zip(&ious[start..start + n]) {
                    *s *= i;
                }
            }
            start += d.boxes.len();
        }
        Ok(dets)
    }
}
