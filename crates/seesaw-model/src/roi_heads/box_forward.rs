//! A box head's forward on RoIs: pooling from the pyramid with HTC-Lite's image context, the
//! Double Head's enlarged regression RoIs, TSD's deformable pooling and translated proposals
//! (mmdetection's `_bbox_forward` in `standard_roi_head.py` and its variants).

use burn::tensor::Tensor;

use crate::error::Result;
use crate::heads::BBoxHead;
use crate::heads::global_context_head::fuse_context;
use crate::roi_heads::{BOX_ROI_SIZE, RoiConfig};

/// RoI features `x` (`[R, C, s, s]`) with the image context `ctx` (`[B, C]`, HTC-Lite's) of
/// each RoI's image added; `x` as it is without a context.
fn add_context(x: Tensor<4>, ctx: Option<&Tensor<2>>, rois: &[[f32; 5]]) -> Tensor<4> {
    match ctx {
        Some(g) => fuse_context(x, g, rois),
        None => x,
    }
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
        let x = self
            .roi
            .pool_scaled(self.feats, rois, BOX_ROI_SIZE, scale)?;
        Ok(add_context(x, self.ctx, rois))
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
        Ok(add_context(x, self.ctx, rois))
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
    Ok(add_context(roi.pool(feats, rois, size)?, ctx, rois))
}
