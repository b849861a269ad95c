//! Non-maximum suppression with torchvision's kept set and order, ties included: candidates are
//! visited by descending score, equal scores in index order (a stable sort), and a box is
//! suppressed when its IoU with a kept box is strictly above the threshold.

use super::Box2;
use super::boxes::area;

/// Indices of `scores` by descending score, ties by index (torch's stable descending sort).
fn order_by_score(scores: &[f32], among: &[usize]) -> Vec<usize> {
    let mut order = among.to_vec();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

fn nms_among(boxes: &[Box2], scores: &[f32], among: &[usize], iou_threshold: f32) -> Vec<usize> {
    let order = order_by_score(scores, among);
    let areas: Vec<f32> = boxes.iter().map(area).collect();
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = &boxes[i];
        for &j in &order[k + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = &boxes[j];
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
            let inter = w * h;
            if inter / (areas[i] + areas[j] - inter) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// torchvision `nms`: kept indices, by descending score. `boxes` and `scores` have one entry
/// per candidate.
pub fn nms(boxes: &[Box2], scores: &[f32], iou_threshold: f32) -> Vec<usize> {
    let all: Vec<usize> = (0..boxes.len().min(scores.len())).collect();
    nms_among(boxes, scores, &all, iou_threshold)
}

/// torchvision `batched_nms`: NMS within each class of `idxs`, kept indices by descending
/// score. Like torchvision, up to 1000 boxes run as one NMS on boxes offset per class (the
/// "coordinate trick", whose float rounding is part of the result); more run class by class.
pub fn batched_nms(
    boxes: &[Box2],
    scores: &[f32],
    idxs: &[usize],
    iou_threshold: f32,
) -> Vec<usize> {
    let n = boxes.len().min(scores.len()).min(idxs.len());
    if n == 0 {
        return Vec::new();
    }
    if n * 4 > 4000 {
        let mut classes: Vec<usize> = idxs[..n].to_vec();
        classes.sort_unstable();
        classes.dedup();
        let mut keep = Vec::new();
        for c in classes {
            let members: Vec<usize> = (0..n).filter(|&i| idxs[i] == c).collect();
            keep.extend(nms_among(boxes, scores, &members, iou_threshold));
        }
        keep.sort_unstable();
        return order_by_score(scores, &keep);
    }
    let max_coordinate = boxes[..n]
        .iter()
        .flat_map(|b| b.iter().copied())
        .fold(f32::NEG_INFINITY, f32::max);
    let shifted: Vec<Box2> = boxes[..n]
        .iter()
        .zip(idxs)
        .map(|(b, &c)| {
            let off = c as f32 * (max_coordinate + 1.0);
            [b[0] + off, b[1] + off, b[2] + off, b[3] + off]
        })
        .collect();
    nms(&shifted, &scores[..n], iou_threshold)
}
