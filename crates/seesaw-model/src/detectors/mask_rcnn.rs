//! Mask R-CNN (He et al. 2017) as mmdetection composes it: ResNet -> FPN -> RPN -> RoI heads
//! (a Shared2FC box head and an FCN mask head on RoIAlign features). The classification loss
//! is any of [`crate::losses::AnyLoss`]; with Seesaw the classifier has C + 2 outputs.

use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::backbones::{ResNet, ResNetConfig};
use crate::error::{ModelError, Result};
use crate::heads::rpn_head::{RpnOutput, level_anchors};
use crate::heads::{BBoxHead, BBoxHeadConfig, MaskHead, MaskHeadConfig, RpnConfig, RpnHead};
use crate::losses::LossKind;
use crate::losses::any::AnyLoss;
use crate::losses::common::{bce_with_logits, float_tensor, host_f32, index_tensor};
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

/// Settings of [`MaskRcnn`]; defaults are mmdetection's R50-FPN on LVIS v1 with Seesaw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskRcnnConfig {
    /// Default 1203 (LVIS v1).
    pub num_classes: usize,
    /// Classification loss of the box head: ce, bce, eql, eqlv2, federated or seesaw.
    pub loss: String,
    /// Train and predict masks. Default true.
    pub with_mask: bool,
    pub backbone: ResNetConfig,
    pub neck: FpnConfig,
    pub rpn: RpnConfig,
    pub roi: RoiConfig,
    pub bbox_head: BBoxHeadConfig,
    pub mask_head: MaskHeadConfig,
}

impl Default for MaskRcnnConfig {
    fn default() -> Self {
        Self {
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
        }
    }
}

impl MaskRcnnConfig {
    /// The classification loss named by `loss`.
    pub fn loss_kind(&self) -> Result<LossKind> {
        self.loss.parse()
    }

    /// Builds the network; parameters are drawn from the device's generator (seed it first).
    pub fn init(&self, device: &Device) -> Result<MaskRcnn> {
        let kind = self.loss_kind()?;
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
        let backbone = self.backbone.init(device)?;
        let neck = self.neck.init(&self.backbone.out_channels()?, device)?;
        let c = self.neck.out_channels;
        let rpn_head = self.rpn.init(c, device)?;
        let bbox_head = self.bbox_head.init(
            c * 49,
            self.num_classes,
            kind.cls_channels(self.num_classes),
            device,
        )?;
        let mask_head = if self.with_mask {
            Some(self.mask_head.init(c, self.num_classes, device)?)
        } else {
            None
        };
        Ok(MaskRcnn {
            backbone,
            neck,
            rpn_head,
            bbox_head,
            mask_head,
            config: self.clone(),
        })
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

/// The parts of the training loss, each a scalar `[1]`.
#[derive(Debug, Clone)]
pub struct LossParts {
    pub rpn_cls: Tensor<1>,
    pub rpn_bbox: Tensor<1>,
    pub cls: Tensor<1>,
    pub bbox: Tensor<1>,
    /// Zero when masks are off.
    pub mask: Tensor<1>,
}

impl LossParts {
    /// Names, in the order of [`LossParts::to_vec`].
    pub const NAMES: [&'static str; 5] = ["rpn_cls", "rpn_bbox", "cls", "bbox", "mask"];

    pub fn total(&self) -> Tensor<1> {
        self.rpn_cls.clone()
            + self.rpn_bbox.clone()
            + self.cls.clone()
            + self.bbox.clone()
            + self.mask.clone()
    }

    pub fn to_vec(&self) -> Vec<Tensor<1>> {
        vec![
            self.rpn_cls.clone(),
            self.rpn_bbox.clone(),
            self.cls.clone(),
            self.bbox.clone(),
            self.mask.clone(),
        ]
    }
}

/// Mask R-CNN.
#[derive(Module, Debug)]
pub struct MaskRcnn {
    pub backbone: ResNet,
    pub neck: Fpn,
    pub rpn_head: RpnHead,
    pub bbox_head: BBoxHead,
    pub mask_head: Option<MaskHead>,
    #[module(skip)]
    pub config: MaskRcnnConfig,
}

/// The sampled RoIs of a batch, positives of each image first.
struct Sampled {
    rois: Vec<[f32; 5]>,
    labels: Vec<usize>,
    /// Rows of `rois` that are positive, with their box targets.
    pos_rows: Vec<usize>,
    targets: Vec<f64>,
    /// Per positive: its image and ground-truth index.
    pos_gt: Vec<(usize, usize)>,
}

impl MaskRcnn {
    pub fn config(&self) -> &MaskRcnnConfig {
        &self.config
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
    /// set per image. `loss` is the box classifier's loss (it keeps Seesaw's counts); `rng`
    /// draws the sampled anchors and RoIs.
    pub fn forward_train<R: Rng>(
        &self,
        images: Tensor<4>,
        metas: &[ImageMeta],
        gts: &[GtInstances],
        loss: &mut AnyLoss,
        rng: &mut R,
    ) -> Result<LossParts> {
        let cfg = self.config();
        let device = images.device();
        let [b, _, _, _] = images.dims();
        if metas.len() != b || gts.len() != b {
            return Err(ModelError::Input(format!(
                "{b} images with {} metas and {} ground-truth sets",
                metas.len(),
                gts.len()
            )));
        }
        let feats = self.features(images);
        let (out, anchors, starts) = self.rpn(&feats);
        let (rpn_cls, rpn_bbox) = cfg.rpn.loss(&out, &anchors, gts, rng)?;
        let proposals = cfg
            .rpn
            .proposals(&out, &anchors, &starts, metas, &cfg.rpn.train)?;
        let s = self.sample_rois(&proposals, gts, rng);
        let roi_feats = &feats[..cfg.roi.strides.len()];
        let pooled = cfg.extractor(7).extract(roi_feats, &s.rois)?;
        let (cls_score, reg) = self.bbox_head.forward(pooled);
        let r = s.rois.len();
        let cls = loss.forward(cls_score, &s.labels, Some(r.max(1) as f64))?;
        let bbox = if s.pos_rows.is_empty() {
            reg.sum().mul_scalar(0.0)
        } else {
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
            (pred - float_tensor(s.targets.clone(), [p, 4], &device))
                .abs()
                .sum()
                .div_scalar(r as f64)
        };
        let mask = match &self.mask_head {
            Some(head) if !s.pos_rows.is_empty() => {
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
                let pooled = cfg.extractor(14).extract(roi_feats, &pos_rois)?;
                let logits = head.forward(pooled);
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
                bce_with_logits(chosen, float_tensor(targets, [p, m * m], &device)).mean()
            }
            _ => Tensor::zeros([1], &device),
        };
        Ok(LossParts {
            rpn_cls,
            rpn_bbox,
            cls,
            bbox,
            mask,
        })
    }

    fn sample_rois<R: Rng>(
        &self,
        proposals: &[Vec<(Box2, f32)>],
        gts: &[GtInstances],
        rng: &mut R,
    ) -> Sampled {
        let cfg = self.config();
        let assigner = MaxIouAssigner {
            pos_iou_thr: cfg.roi.pos_iou,
            neg_iou_thr: (0.0, cfg.roi.pos_iou),
            min_pos_iou: cfg.roi.pos_iou,
            ..MaxIouAssigner::rcnn()
        };
        let sampler = RandomSampler {
            num: cfg.roi.sampler_num,
            pos_fraction: cfg.roi.sampler_pos_fraction,
            neg_pos_ub: -1.0,
            add_gt_as_proposals: true,
        };
        let coder = DeltaXywhCoder {
            stds: cfg.bbox_head.target_stds,
            ..Default::default()
        };
        let bg = cfg.num_classes;
        let mut s = Sampled {
            rois: vec![],
            labels: vec![],
            pos_rows: vec![],
            targets: vec![],
            pos_gt: vec![],
        };
        for (i, (props, gt)) in proposals.iter().zip(gts).enumerate() {
            let cands: Vec<Box2> = props.iter().map(|p| p.0).collect();
            let assign = assigner.assign(&cands, &gt.boxes, &gt.labels, &gt.ignore);
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
                s.targets
                    .extend(coder.encode(&bx, &gt.boxes[g]).map(f64::from));
                s.pos_gt.push((i, g));
            }
            for &q in &res.neg {
                let bx = list(q);
                s.rois.push([i as f32, bx[0], bx[1], bx[2], bx[3]]);
                s.labels.push(bg);
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

    /// The box head on `rois` (`[image, x1, y1, x2, y2]` at input scale): class scores
    /// (`[R * C]`, row-major) and, per RoI and class, the decoded box clipped to its image
    /// (`[R * C]`; the same box for every class when regression is class-agnostic).
    pub fn box_predictions(
        &self,
        feats: &[Tensor<4>],
        rois: &[[f32; 5]],
        metas: &[ImageMeta],
        loss: &AnyLoss,
    ) -> Result<(Vec<f32>, Vec<Box2>)> {
        let cfg = self.config();
        let c = cfg.num_classes;
        if rois.is_empty() {
            return Ok((vec![], vec![]));
        }
        let pooled = cfg
            .extractor(7)
            .extract(&feats[..cfg.roi.strides.len()], rois)?;
        let (cls_score, reg) = self.bbox_head.forward(pooled);
        let scores = host_f32(loss.class_scores(cls_score, c)?)?;
        let deltas = host_f32(reg)?;
        let per_roi = if cfg.bbox_head.class_agnostic { 1 } else { c };
        let coder = DeltaXywhCoder {
            stds: cfg.bbox_head.target_stds,
            ..Default::default()
        };
        let mut boxes = Vec::with_capacity(rois.len() * c);
        for (r, roi) in rois.iter().enumerate() {
            let meta = metas.get(roi[0] as usize).ok_or_else(|| {
                ModelError::Input(format!(
                    "rois[{r}] names image {} of {}",
                    roi[0],
                    metas.len()
                ))
            })?;
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

    /// Mask probabilities (`m x m`, row-major) of each `(image, box at input scale, class)`.
    pub fn mask_probs(
        &self,
        feats: &[Tensor<4>],
        dets: &[(usize, Box2, usize)],
    ) -> Result<(Vec<Vec<f32>>, usize)> {
        let cfg = self.config();
        let Some(head) = &self.mask_head else {
            return Ok((vec![], 0));
        };
        if dets.is_empty() {
            return Ok((vec![], 28));
        }
        let rois: Vec<[f32; 5]> = dets
            .iter()
            .map(|(i, b, _)| [*i as f32, b[0], b[1], b[2], b[3]])
            .collect();
        let pooled = cfg
            .extractor(14)
            .extract(&feats[..cfg.roi.strides.len()], &rois)?;
        let logits = head.forward(pooled);
        let [n, cc, m, _] = logits.dims();
        let idx: Vec<usize> = dets.iter().enumerate().map(|(k, d)| k * cc + d.2).collect();
        let device = logits.device();
        let probs = host_f32(sigmoid(
            logits
                .reshape([n * cc, m * m])
                .select(0, index_tensor(&idx, &device)),
        ))?;
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
