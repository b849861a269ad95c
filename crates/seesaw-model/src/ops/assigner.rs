//! mmdetection's `MaxIoUAssigner`: each candidate box is assigned to the ground truth it
//! overlaps most (positive), to background (negative), or ignored.

use super::Box2;
use super::boxes::{box_iof, box_iou};

/// Settings; mmdetection's RCNN defaults are 0.5 / 0.5 / 0.5 with low-quality matching off,
/// the RPN's 0.7 / 0.3 / 0.3 with it on.
#[derive(Debug, Clone, PartialEq)]
pub struct MaxIouAssigner {
    pub pos_iou_thr: f32,
    /// Negatives have a max IoU in `[neg_iou_thr.0, neg_iou_thr.1)`; mmdetection's scalar
    /// threshold t is `(0, t)`.
    pub neg_iou_thr: (f32, f32),
    pub min_pos_iou: f32,
    /// A ground truth's best candidates all get it, when several tie. Default true.
    pub gt_max_assign_all: bool,
    /// Candidates covered more than this (IoF) by an ignore region (a crowd) are ignored;
    /// negative turns it off. Default -1.
    pub ignore_iof_thr: f32,
    /// Give each ground truth its best candidate even below `pos_iou_thr`.
    pub match_low_quality: bool,
}

impl MaxIouAssigner {
    /// The RCNN stage's settings (0.5 / 0.5 / 0.5, no low-quality matches).
    pub fn rcnn() -> Self {
        Self {
            pos_iou_thr: 0.5,
            neg_iou_thr: (0.0, 0.5),
            min_pos_iou: 0.5,
            gt_max_assign_all: true,
            ignore_iof_thr: -1.0,
            match_low_quality: false,
        }
    }

    /// The RPN's settings (0.7 / 0.3 / 0.3, low-quality matches on).
    pub fn rpn() -> Self {
        Self {
            pos_iou_thr: 0.7,
            neg_iou_thr: (0.0, 0.3),
            min_pos_iou: 0.3,
            gt_max_assign_all: true,
            ignore_iof_thr: -1.0,
            match_low_quality: true,
        }
    }
}

/// The assignment of each candidate: 0 background, -1 ignored, k > 0 the (k-1)-th ground
/// truth; with its best IoU and label (`None` unless positive).
#[derive(Debug, Clone, PartialEq)]
pub struct AssignResult {
    pub gt_inds: Vec<i64>,
    pub max_overlaps: Vec<f32>,
    pub labels: Vec<Option<usize>>,
}

impl MaxIouAssigner {
    /// Assigns `candidates` to `gts` (with `gt_labels`); `ignore` are crowd regions.
    pub fn assign(
        &self,
        candidates: &[Box2],
        gts: &[Box2],
        gt_labels: &[usize],
        ignore: &[Box2],
    ) -> AssignResult {
        let (n, g) = (candidates.len(), gts.len());
        if g == 0 || n == 0 {
            return AssignResult {
                gt_inds: vec![if g == 0 { 0 } else { -1 }; n],
                max_overlaps: vec![0.0; n],
                labels: vec![None; n],
            };
        }
        // overlaps[gi][ci], as mmdetection's [G, N].
        let iou = box_iou(gts, candidates);
        let mut overlaps: Vec<f32> = iou
            .iter()
            .map(|v| if v.is_nan() { 0.0 } else { *v })
            .collect();
        let mut ignored = vec![false; n];
        if self.ignore_iof_thr > 0.0 && !ignore.is_empty() {
            let iof = box_iof(candidates, ignore);
            for c in 0..n {
                let best = (0..ignore.len())
                    .map(|k| iof[c * ignore.len() + k])
                    .fold(f32::MIN, f32::max);
                if best > self.ignore_iof_thr {
                    ignored[c] = true;
                    for gi in 0..g {
                        overlaps[gi * n + c] = -1.0;
                    }
                }
            }
        }
        let mut gt_inds = vec![-1i64; n];
        let mut max_overlaps = vec![0f32; n];
        for c in 0..n {
            let (mut best, mut arg) = (f32::MIN, 0);
            for gi in 0..g {
                if overlaps[gi * n + c] > best {
                    best = overlaps[gi * n + c];
                    arg = gi;
                }
            }
            max_overlaps[c] = best;
            if best >= self.neg_iou_thr.0 && best < self.neg_iou_thr.1 {
                gt_inds[c] = 0;
            }
            if best >= self.pos_iou_thr {
                gt_inds[c] = arg as i64 + 1;
            }
        }
        if self.match_low_quality {
            for gi in 0..g {
                let row = &overlaps[gi * n..(gi + 1) * n];
                let (mut best, mut arg) = (f32::MIN, 0);
                for (c, &v) in row.iter().enumerate() {
                    if v > best {
                        best = v;
                        arg = c;
                    }
                }
                if best >= self.min_pos_iou {
                    if self.gt_max_assign_all {
                        for (c, &v) in row.iter().enumerate() {
                            if v == best {
                                gt_inds[c] = gi as i64 + 1;
                            }
                        }
                    } else {
                        gt_inds[arg] = gi as i64 + 1;
                    }
                }
            }
        }
        for c in 0..n {
            if ignored[c] {
                gt_inds[c] = -1;
            }
        }
        let labels = gt_inds
            .iter()
            .map(|&k| (k > 0).then(|| gt_labels[(k - 1) as usize]))
            .collect();
        AssignResult {
            gt_inds,
            max_overlaps,
            labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positives_negatives_ignored_and_low_quality_by_hand() {
        let gts = [[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]];
        let cands = [
            [0.0, 0.0, 10.0, 10.0],   // IoU 1 with gt 0
            [0.0, 0.0, 10.0, 5.0],    // IoU 0.5 with gt 0
            [50.0, 50.0, 60.0, 60.0], // nothing: negative
            [20.0, 20.0, 30.0, 24.0], // IoU 0.4 with gt 1: between thresholds of the RPN
        ];
        let mut a = MaxIouAssigner::rpn();
        let r = a.assign(&cands, &gts, &[3, 7], &[]);
        // 0.5 is not >= 0.7 and not < 0.3: ignored; candidate 3 is gt 1's best: low quality.
        assert_eq!(r.gt_inds, vec![1, -1, 0, 2]);
        assert_eq!(r.labels, vec![Some(3), None, None, Some(7)]);
        a.match_low_quality = false;
        assert_eq!(
            a.assign(&cands, &gts, &[3, 7], &[]).gt_inds,
            vec![1, -1, 0, -1]
        );
        let r = MaxIouAssigner::rcnn().assign(&cands, &gts, &[3, 7], &[]);
        assert_eq!(r.gt_inds, vec![1, 1, 0, 0]);
        // A crowd region over candidate 2 makes it ignored.
        let mut crowd = MaxIouAssigner::rcnn();
        crowd.ignore_iof_thr = 0.5;
        let r = crowd.assign(&cands, &gts, &[3, 7], &[[45.0, 45.0, 65.0, 65.0]]);
        assert_eq!(r.gt_inds, vec![1, 1, -1, 0]);
        // No ground truth: all background; no candidates: nothing.
        assert_eq!(
            MaxIouAssigner::rcnn().assign(&cands, &[], &[], &[]).gt_inds,
            vec![0; 4]
        );
        assert!(
            MaxIouAssigner::rcnn()
                .assign(&[], &gts, &[3, 7], &[])
                .gt_inds
                .is_empty()
        );
    }
}
