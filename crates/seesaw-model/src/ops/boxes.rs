//! Pairwise box overlaps: IoU (torchvision `box_iou`) and IoF (mmdetection's `iof` mode).

use super::Box2;

/// Area of a box; negative extents count as given (torchvision does not clamp areas).
pub fn area(b: &Box2) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

fn intersection(a: &Box2, b: &Box2) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    w * h
}

/// IoU of every pair, `[A, B]` row-major; a pair whose union is 0 gives NaN, as torchvision.
pub fn box_iou(a: &[Box2], b: &[Box2]) -> Vec<f32> {
    let area_b: Vec<f32> = b.iter().map(area).collect();
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        let ax = area(x);
        for (y, &ay) in b.iter().zip(&area_b) {
            let inter = intersection(x, y);
            out.push(inter / (ax + ay - inter));
        }
    }
    out
}

/// Intersection over the area of the first box (mmdetection `bbox_overlaps(mode='iof')`, used
/// for ignore regions), `[A, B]` row-major; a zero area gives 0 (mmdetection's eps guard).
pub fn box_iof(a: &[Box2], b: &[Box2]) -> Vec<f32> {
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        let ax = area(x).max(f32::EPSILON);
        for y in b {
            out.push(intersection(x, y) / ax);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_and_iof_by_hand() {
        let a = [[0.0, 0.0, 2.0, 2.0]];
        let b = [
            [1.0, 1.0, 3.0, 3.0],
            [0.0, 0.0, 1.0, 1.0],
            [5.0, 5.0, 6.0, 6.0],
        ];
        let iou = box_iou(&a, &b);
        assert!((iou[0] - 1.0 / 7.0).abs() < 1e-7);
        assert!((iou[1] - 0.25).abs() < 1e-7);
        assert_eq!(iou[2], 0.0);
        let iof = box_iof(&b[..2], &a);
        assert!((iof[0] - 0.25).abs() < 1e-7 && (iof[1] - 1.0).abs() < 1e-7);
    }
}
