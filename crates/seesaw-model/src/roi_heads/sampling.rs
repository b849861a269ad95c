//! RoI sampling for training, as mmdetection's `StandardRoIHead` does it per image
//! (`bbox_assigner` + `bbox_sampler`): the proposals are assigned to ground truths at a stage's
//! IoU ([`MaxIouAssigner`]), the ground truths are added as proposals, and a fixed number are
//! drawn at random with at most a fraction positive ([`RandomSampler`]).

use rand::Rng;

use crate::ops::Box2;
use crate::ops::assigner::MaxIouAssigner;
use crate::ops::sampler::RandomSampler;
use crate::structures::GtInstances;

/// The sampled RoIs of a batch, positives of each image first.
#[derive(Debug, Clone, Default)]
pub struct SampledRois {
    /// `[image, x1, y1, x2, y2]` at input scale.
    pub rois: Vec<[f32; 5]>,
    /// Per RoI: its class, or C (background) for negatives.
    pub labels: Vec<usize>,
    /// Per RoI: whether it is a ground truth added as a proposal.
    pub is_gt: Vec<bool>,
    /// Rows of `rois` that are positive.
    pub pos_rows: Vec<usize>,
    /// Per positive: its image and ground-truth index.
    pub pos_gt: Vec<(usize, usize)>,
    /// Per positive: its ground truth's box (the regression target).
    pub pos_gt_boxes: Vec<Box2>,
}

impl SampledRois {
    /// The positive RoIs, in the order of `pos_rows`.
    pub fn pos_rois(&self) -> Vec<[f32; 5]> {
        self.pos_rows.iter().map(|&i| self.rois[i]).collect()
    }
}

/// One stage's sampling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiSampler {
    /// IoU of a positive (and below it, a negative).
    pub iou: f32,
    /// RoIs per image.
    pub num: usize,
    /// Largest fraction of positives.
    pub pos_fraction: f32,
}

impl RoiSampler {
    /// Samples the RoIs of every image, image i's from `rngs[i]` (one generator per image, so
    /// that an image's draws do not depend on the others in its batch); `num_classes` C is the
    /// label of negatives.
    ///
    /// # Panics
    /// Fewer generators than images.
    pub fn sample<R: Rng>(
        &self,
        proposals: &[Vec<Box2>],
        gts: &[GtInstances],
        num_classes: usize,
        rngs: &mut [R],
    ) -> SampledRois {
        let assigner = MaxIouAssigner {
            pos_iou_thr: self.iou,
            neg_iou_thr: (0.0, self.iou),
            min_pos_iou: self.iou,
            ..MaxIouAssigner::rcnn()
        };
        let sampler = RandomSampler {
            num: self.num,
            pos_fraction: self.pos_fraction,
            neg_pos_ub: -1.0,
            add_gt_as_proposals: true,
        };
        let mut s = SampledRois::default();
        for (i, (cands, gt)) in proposals.iter().zip(gts).enumerate() {
            let assign = assigner.assign(cands, &gt.boxes, &gt.labels, &gt.ignore);
            let res = sampler.sample(&assign, &gt.labels, &mut rngs[i]);
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
                s.pos_gt.push((i, g));
                s.pos_gt_boxes.push(gt.boxes[g]);
            }
            for &q in &res.neg {
                let bx = list(q);
                s.rois.push([i as f32, bx[0], bx[1], bx[2], bx[3]]);
                s.labels.push(num_classes);
                s.is_gt.push(q < res.num_gts_added);
            }
        }
        s
    }
}
