//! Mask R-CNN's RoI head (He et al. 2017; mmdetection's `StandardRoIHead`, detectron2's
//! `StandardROIHeads`): RoIs sampled at one IoU, a Shared2FC box head on 7x7 RoIAlign
//! features, and an FCN mask head on 14x14 features of the positive RoIs.

use crate::structures::ImageRng;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::error::Result;
use crate::heads::mask_head::MASK_ROI_SIZE;
use crate::heads::{BBoxHead, MaskHead};
use crate::ops::Box2;
use crate::roi_heads::cascade::{StageInputs, StageStep, train_box_stage};
use crate::roi_heads::mask_branch::mask_loss;
use crate::roi_heads::{RoiConfig, RoiHeadBuilder, RoiHeadOps, RoiLosses, Stage};
use crate::structures::{GtInstances, ImageMeta};

/// Mask R-CNN's RoI head.
#[derive(Module, Debug)]
pub struct StandardRoiHead {
    pub bbox_head: BBoxHead,
    /// None when masks are off.
    pub mask_head: Option<MaskHead>,
    #[module(skip)]
    roi: RoiConfig,
    #[module(skip)]
    stage: Stage,
}

impl RoiHeadOps for StandardRoiHead {
    fn build(b: &RoiHeadBuilder) -> Result<Self> {
        let stage = b.stages()?[0];
        let bbox_head = b.bbox_head(&stage)?;
        let mask_head = if b.cfg.with_mask {
            Some(b.mask_head(false)?)
        } else {
            None
        };
        Ok(StandardRoiHead {
            bbox_head,
            mask_head,
            roi: b.cfg.roi.clone(),
            stage,
        })
    }

    fn forward_train(
        &mut self,
        feats: &[Tensor<4>],
        proposals: Vec<Vec<Box2>>,
        _metas: &[ImageMeta],
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
        let head = &mut self.bbox_head;
        let StageStep { s, .. } = train_box_stage(
            head,
            (&self.stage, None),
            &inputs,
            &proposals,
            rngs,
            &mut out,
        )?;
        if self.mask_head.is_some() {
            let roi = &self.roi;
            let (m, iou) = mask_loss(self.mask_head.as_slice(), 0, false, &s, gts, |r| {
                roi.pool(feats, r, MASK_ROI_SIZE)
            })?;
            out.mask = out.mask + m;
            out.add_mask_iou(iou);
        }
        Ok(out)
    }

    fn roi_config(&self) -> &RoiConfig {
        &self.roi
    }

    fn mask_heads(&self) -> &[MaskHead] {
        self.mask_head.as_slice()
    }

    fn bbox_heads(&self) -> &[BBoxHead] {
        std::slice::from_ref(&self.bbox_head)
    }

    fn bbox_heads_mut(&mut self) -> &mut [BBoxHead] {
        std::slice::from_mut(&mut self.bbox_head)
    }
}
