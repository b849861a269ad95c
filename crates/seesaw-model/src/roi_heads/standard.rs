//! Mask R-CNN's RoI head (He et al. 2017; mmdetection's `StandardRoIHead`, detectron2's
//! `StandardROIHeads`): RoIs sampled at one IoU, a Shared2FC box head on 7x7 RoIAlign
//! features, and an FCN mask head on 14x14 features of the positive RoIs.

use burn::module::Module;
use burn::tensor::Tensor;
use rand::RngCore;

use crate::error::Result;
use crate::heads::mask_head::MASK_ROI_SIZE;
use crate::heads::{BBoxHead, MaskHead};
use crate::ops::Box2;
use crate::roi_heads::cascade::{StageStep, train_box_stage};
use crate::roi_heads::inference::staged_box_predictions;
use crate::roi_heads::mask_branch::{mask_loss, mean_mask_probs};
use crate::roi_heads::{BOX_ROI_SIZE, RoiConfig, RoiHeadBuilder, RoiHeadOps, RoiLosses, Stage};
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
        rng: &mut dyn RngCore,
    ) -> Result<RoiLosses> {
        let mut out = RoiLosses::zeros(&feats[0].device());
        let StageStep { s, .. } = train_box_stage(
            &mut self.bbox_head,
            &self.stage,
            None,
            &self.roi,
            feats,
            &proposals,
            gts,
            None,
            rng,
            &mut out,
        )?;
        if self.mask_head.is_some() {
            let roi = &self.roi;
            let m = mask_loss(self.mask_head.as_slice(), 0, false, &s, gts, |r| {
                roi.pool(feats, r, MASK_ROI_SIZE)
            })?;
            out.mask = out.mask + m;
        }
        Ok(out)
    }

    fn box_predictions(
        &self,
        feats: &[Tensor<4>],
        rois: &[[f32; 5]],
        metas: &[ImageMeta],
    ) -> Result<(Vec<f32>, Vec<Box2>)> {
        staged_box_predictions(std::slice::from_ref(&self.bbox_head), rois, metas, |r| {
            self.roi.pool(feats, r, BOX_ROI_SIZE)
        })
    }

    fn mask_probs(&self, feats: &[Tensor<4>], rois: &[[f32; 5]]) -> Result<Option<Tensor<4>>> {
        if self.mask_head.is_none() {
            return Ok(None);
        }
        let pooled = self.roi.pool(feats, rois, MASK_ROI_SIZE)?;
        mean_mask_probs(self.mask_head.as_slice(), false, pooled).map(Some)
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
