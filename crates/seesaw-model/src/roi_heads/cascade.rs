//! Cascade Mask R-CNN's RoI head (Cai & Vasconcelos 2019; mmdetection's `CascadeRoIHead`):
//! box stages trained at rising IoU (0.5, 0.6, 0.7), each on the boxes the previous stage
//! refined, with a mask head per stage; at test time the stages run in sequence, scores are
//! their mean and masks the mean of every stage's head.
//!
//! [`train_box_stage`] is the box step every multi-stage kind (this, HTC, HTC-Lite) shares.

use crate::structures::ImageRng;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::error::Result;
use crate::heads::mask_head::MASK_ROI_SIZE;
use crate::heads::{BBoxHead, MaskHead};
use crate::ops::Box2;
use crate::roi_heads::mask_branch::mask_loss;
use crate::roi_heads::sampling::SampledRois;
use crate::roi_heads::{
    LossPart, RoiConfig, RoiHeadBuilder, RoiHeadOps, RoiLosses, RoiPooler, Stage, box_head_forward,
};
use crate::structures::{GtInstances, ImageMeta};

/// What one box stage's training step leaves for the rest of the head.
pub struct StageStep {
    /// The RoIs the stage sampled.
    pub s: SampledRois,
    /// Its class logits `[R, cls_channels]` and deltas `[R, 4 or 4 C]` (TSD's, for a TSD
    /// head).
    pub cls_score: Tensor<2>,
    pub reg: Tensor<2>,
    /// What the deltas are relative to when not the sampled RoIs (TSD's translated
    /// proposals).
    pub decode_rois: Option<Vec<[f32; 5]>>,
}

/// What every box stage of a training step sees: the RoI settings, the pyramid features, the
/// ground truths and HTC-Lite's image context.
pub struct StageInputs<'a> {
    pub roi: &'a RoiConfig,
    pub feats: &'a [Tensor<4>],
    pub gts: &'a [GtInstances],
    /// The global context feature `[B, C]` added to every RoI feature (HTC-Lite).
    pub ctx: Option<&'a Tensor<2>>,
}

/// One box stage's training step: RoIs sampled from `proposals` at the stage's IoU, pooled
/// (with the context, if any), the head's losses added to `out` with the stage's weight
/// (logged as `s{t}.*` when `t` is given).
///
/// # Errors
/// Inputs that do not fit the head.
pub fn train_box_stage(
    head: &mut BBoxHead,
    (stage, t): (&Stage, Option<usize>),
    inputs: &StageInputs,
    proposals: &[Vec<Box2>],
    rngs: &mut [ImageRng],
    out: &mut RoiLosses,
) -> Result<StageStep> {
    let c = head.spec.num_classes;
    let s = inputs
        .roi
        .sampler(stage.iou)
        .sample(proposals, inputs.gts, c, rngs);
    let pooler = RoiPooler {
        roi: inputs.roi,
        feats: inputs.feats,
        ctx: inputs.ctx,
    };
    let out_fwd = box_head_forward(head, &s.rois, &pooler, true)?;
    let (cls_score, reg) = (out_fwd.cls, out_fwd.reg);
    if let Some(tsd) = out_fwd.tsd {
        // TSD: the sibling head's losses, TSD's, and the progressive constraint.
        let (sib_cls, sib_reg) = tsd.sibling;
        let l = head.tsd_loss(
            &tsd.out,
            sib_cls.clone(),
            sib_reg.clone(),
            &s,
            inputs.gts.len(),
        )?;
        let (cls, bbox) = head.loss(sib_cls, sib_reg, &s)?;
        out.add(LossPart::Cls, t, cls, stage.weight);
        out.add(LossPart::Bbox, t, bbox, stage.weight);
        for (part, name, value) in [
            (LossPart::Cls, "loss_tsd_cls", l.cls),
            (LossPart::Bbox, "loss_tsd_bbox", l.bbox),
            (LossPart::Cls, "loss_pc_cls", l.pc_cls),
            (LossPart::Bbox, "loss_pc_loc", l.pc_loc),
        ] {
            out.add_named(part, t, name, value, stage.weight);
        }
        return Ok(StageStep {
            s,
            cls_score,
            reg,
            decode_rois: out_fwd.decode_rois,
        });
    }
    // The fine-tuning step trains the second classification branch (the rest is frozen).
    let trained_cls = out_fwd.dual.unwrap_or_else(|| cls_score.clone());
    let (cls, bbox) = head.loss(trained_cls, reg.clone(), &s)?;
    out.add(LossPart::Cls, t, cls, stage.weight);
    out.add(LossPart::Bbox, t, bbox, stage.weight);
    Ok(StageStep {
        s,
        cls_score,
        reg,
        decode_rois: None,
    })
}

/// Cascade Mask R-CNN's RoI head.
#[derive(Module, Debug)]
pub struct CascadeRoiHead {
    /// One per stage.
    pub bbox_head: Vec<BBoxHead>,
    /// One per stage; none when masks are off.
    pub mask_head: Vec<MaskHead>,
    #[module(skip)]
    roi: RoiConfig,
    #[module(skip)]
    stages: Vec<Stage>,
}

impl RoiHeadOps for CascadeRoiHead {
    fn build(b: &RoiHeadBuilder) -> Result<Self> {
        let stages = b.stages()?;
        let bbox_head = b.bbox_heads(&stages)?;
        let masks = if b.cfg.with_mask { stages.len() } else { 0 };
        let mask_head = (0..masks)
            .map(|_| b.mask_head(false))
            .collect::<Result<Vec<_>>>()?;
        Ok(CascadeRoiHead {
            bbox_head,
            mask_head,
            roi: b.cfg.roi.clone(),
            stages,
        })
    }

    fn forward_train(
        &mut self,
        feats: &[Tensor<4>],
        mut proposals: Vec<Vec<Box2>>,
        metas: &[ImageMeta],
        gts: &[GtInstances],
        rngs: &mut [ImageRng],
    ) -> Result<RoiLosses> {
        let mut out = RoiLosses::zeros(&feats[0].device());
        let last = self.stages.len() - 1;
        let inputs = StageInputs {
            roi: &self.roi,
            feats,
            gts,
            ctx: None,
        };
        for (t, stage) in self.stages.iter().enumerate() {
            let head = &mut self.bbox_head[t];
            let step =
                train_box_stage(head, (stage, Some(t)), &inputs, &proposals, rngs, &mut out)?;
            let StageStep {
                s,
                cls_score,
                reg,
                decode_rois,
            } = step;
            let refined = if t < last && !s.rois.is_empty() {
                Some(head.refine(&s, cls_score, reg, decode_rois.as_deref(), metas)?)
            } else {
                None
            };
            if !self.mask_head.is_empty() {
                let roi = &self.roi;
                let (m, iou) = mask_loss(&self.mask_head, t, false, &s, gts, |r| {
                    roi.pool(feats, r, MASK_ROI_SIZE)
                })?;
                out.add(LossPart::Mask, Some(t), m, stage.weight);
                out.add_mask_iou(iou);
            }
            if let Some(p) = refined {
                proposals = p;
            }
        }
        Ok(out)
    }

    fn roi_config(&self) -> &RoiConfig {
        &self.roi
    }

    fn mask_heads(&self) -> &[MaskHead] {
        &self.mask_head
    }

    fn bbox_heads(&self) -> &[BBoxHead] {
        &self.bbox_head
    }

    fn bbox_heads_mut(&mut self) -> &mut [BBoxHead] {
        &mut self.bbox_head
    }
}
