//! HTC-Lite's RoI head, the MMDet team's LVIS 2020 entry (Wang et al., "Seesaw Loss for
//! Long-Tailed Instance Segmentation", challenge report; spec §4.2): the cascade's box stages,
//! one mask head after the last stage (trained on the last stage's RoIs, weighted by the sum
//! of the stage weights, SCNet's rule), and a global context encoder (SCNet's `glbctx_head`):
//! a feature of the whole image, trained to predict the classes present, added to every RoI
//! feature of the box and mask heads.

use crate::structures::ImageRng;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::error::Result;
use crate::heads::mask_head::MASK_ROI_SIZE;
use crate::heads::{BBoxHead, GlobalContextHead, MaskHead};
use crate::ops::Box2;
use crate::roi_heads::cascade::{StageInputs, StageStep, train_box_stage};
use crate::roi_heads::mask_branch::mask_loss;
use crate::roi_heads::{
    RoiConfig, RoiHeadBuilder, RoiHeadOps, RoiLosses, Stage, pool_with_context,
};
use crate::structures::{GtInstances, ImageMeta};

/// HTC-Lite's RoI head.
#[derive(Module, Debug)]
pub struct HtcLiteRoiHead {
    /// One per stage.
    pub bbox_head: Vec<BBoxHead>,
    /// After the last stage; None when masks are off.
    pub mask_head: Option<MaskHead>,
    /// The global context encoder.
    pub glbctx_head: GlobalContextHead,
    #[module(skip)]
    roi: RoiConfig,
    #[module(skip)]
    stages: Vec<Stage>,
    /// Weight of the mask loss.
    #[module(skip)]
    mask_loss_weight: f64,
}

impl HtcLiteRoiHead {
    /// The context encoder's logits `[B, K]` and feature `[B, C]` from the coarsest level.
    fn context_logits_and_feature(&self, feats: &[Tensor<4>]) -> Option<(Tensor<2>, Tensor<2>)> {
        feats.last().map(|x| self.glbctx_head.forward(x.clone()))
    }
}

impl RoiHeadOps for HtcLiteRoiHead {
    fn build(b: &RoiHeadBuilder) -> Result<Self> {
        let stages = b.stages()?;
        let bbox_head = b.bbox_heads(&stages)?;
        let mask_head = if b.cfg.with_mask {
            Some(b.mask_head(false)?)
        } else {
            None
        };
        let glbctx_head = b
            .cfg
            .glbctx
            .init(b.in_channels, b.cfg.num_classes, b.device)?;
        Ok(HtcLiteRoiHead {
            bbox_head,
            mask_head,
            glbctx_head,
            roi: b.cfg.roi.clone(),
            stages,
            mask_loss_weight: b.cfg.cascade.mask_loss_weight,
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
        let ctx = match self.context_logits_and_feature(feats) {
            Some((logits, g)) => {
                let labels: Vec<Vec<usize>> = gts.iter().map(|g| g.labels.clone()).collect();
                out.glbctx = self.glbctx_head.loss(logits, &labels)?;
                Some(g)
            }
            None => None,
        };
        let last = self.stages.len() - 1;
        let inputs = StageInputs {
            roi: &self.roi,
            feats,
            gts,
            ctx: ctx.as_ref(),
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
            if t == last && self.mask_head.is_some() {
                let (roi, ctx) = (&self.roi, ctx.as_ref());
                let (m, iou) = mask_loss(self.mask_head.as_slice(), 0, false, &s, gts, |r| {
                    pool_with_context(roi, feats, r, MASK_ROI_SIZE, ctx)
                })?;
                out.mask = out.mask + m.mul_scalar(self.mask_loss_weight);
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

    fn context(&self, feats: &[Tensor<4>]) -> Option<Tensor<2>> {
        self.context_logits_and_feature(feats).map(|(_, g)| g)
    }

    fn mask_heads(&self) -> &[MaskHead] {
        self.mask_head.as_slice()
    }

    fn glbctx_head(&self) -> Option<&GlobalContextHead> {
        Some(&self.glbctx_head)
    }

    fn bbox_heads(&self) -> &[BBoxHead] {
        &self.bbox_head
    }

    fn bbox_heads_mut(&mut self) -> &mut [BBoxHead] {
        &mut self.bbox_head
    }
}
