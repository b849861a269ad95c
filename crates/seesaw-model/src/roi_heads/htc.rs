//! Hybrid Task Cascade's RoI head without the semantic branch (Chen et al. CVPR 2019;
//! mmdetection's `HybridTaskCascadeRoIHead` with `interleaved=True, mask_info_flow=True`):
//! the cascade's box stages, and per stage a mask head trained on RoIs re-sampled from the
//! boxes that stage has just refined (interleaved execution), each mask head taking the
//! features of the heads before it through a 1x1 conv (`conv_res`, the mask information
//! flow). At test time every stage's mask head runs on the final boxes, chained, and their
//! probabilities are averaged.

use crate::structures::ImageRng;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::error::Result;
use crate::heads::mask_head::MASK_ROI_SIZE;
use crate::heads::{BBoxHead, MaskHead};
use crate::ops::Box2;
use crate::roi_heads::cascade::{StageInputs, StageStep, train_box_stage};
use crate::roi_heads::mask_branch::mask_loss;
use crate::roi_heads::{LossPart, RoiConfig, RoiHeadBuilder, RoiHeadOps, RoiLosses, Stage};
use crate::structures::{GtInstances, ImageMeta};

/// HTC's RoI head (without the semantic branch).
#[derive(Module, Debug)]
pub struct HtcRoiHead {
    /// One per stage.
    pub bbox_head: Vec<BBoxHead>,
    /// One per stage (all but the first with `conv_res`); none when masks are off.
    pub mask_head: Vec<MaskHead>,
    #[module(skip)]
    roi: RoiConfig,
    #[module(skip)]
    stages: Vec<Stage>,
}

impl RoiHeadOps for HtcRoiHead {
    fn build(b: &RoiHeadBuilder) -> Result<Self> {
        let stages = b.stages()?;
        let bbox_head = b.bbox_heads(&stages)?;
        let masks = if b.cfg.with_mask { stages.len() } else { 0 };
        let mask_head = (0..masks)
            .map(|t| b.mask_head(t > 0))
            .collect::<Result<Vec<_>>>()?;
        Ok(HtcRoiHead {
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
            // Interleaved: the boxes this stage has just refined feed its mask head (re-sampled)
            // and the next stage.
            if !s.rois.is_empty() {
                proposals = head.refine(&s, cls_score, reg, decode_rois.as_deref(), metas)?;
            }
            if !self.mask_head.is_empty() {
                let c = head.spec.num_classes;
                let s2 = self.roi.sampler(stage.iou).sample(&proposals, gts, c, rngs);
                let roi = &self.roi;
                let (m, iou) = mask_loss(&self.mask_head, t, true, &s2, gts, |r| {
                    roi.pool(feats, r, MASK_ROI_SIZE)
                })?;
                out.add(LossPart::Mask, Some(t), m, stage.weight);
                out.add_mask_iou(iou);
            }
        }
        Ok(out)
    }

    fn roi_config(&self) -> &RoiConfig {
        &self.roi
    }

    fn mask_flow(&self) -> bool {
        true
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
