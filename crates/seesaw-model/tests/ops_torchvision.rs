//! Box ops against torchvision 0.29.2 (fixtures made by tests/fixtures/ops/make_ops.py).

use seesaw_model::ops::Box2;
use seesaw_model::ops::boxes::box_iou;
use seesaw_model::ops::nms::{batched_nms, nms};
use serde_json::Value;

fn fixture() -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops/boxes.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn boxes(v: &Value) -> Vec<Box2> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let b: Vec<f32> = b
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            [b[0], b[1], b[2], b[3]]
        })
        .collect()
}

fn list<T>(v: &Value, f: impl Fn(&Value) -> T) -> Vec<T> {
    v.as_array().unwrap().iter().map(f).collect()
}

#[test]
fn box_iou_matches_torchvision() {
    let f = fixture();
    let c = &f["box_iou"];
    let got = box_iou(&boxes(&c["a"]), &boxes(&c["b"]));
    let want: Vec<f64> = c["iou"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| list(r, |x| x.as_f64().unwrap_or(f64::NAN)))
        .collect();
    assert_eq!(got.len(), want.len());
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        let g = f64::from(*g);
        assert!(
            (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-6,
            "[{k}]: {g} vs {w}"
        );
    }
}

#[test]
fn nms_and_batched_nms_keep_torchvisions_set_and_order() {
    let f = fixture();
    for (k, c) in f["nms"].as_array().unwrap().iter().enumerate() {
        let b = boxes(&c["boxes"]);
        let s: Vec<f32> = list(&c["scores"], |x| x.as_f64().unwrap() as f32);
        let idxs: Vec<usize> = list(&c["idxs"], |x| x.as_u64().unwrap() as usize);
        let thr = c["iou_threshold"].as_f64().unwrap() as f32;
        let want: Vec<usize> = list(&c["nms"], |x| x.as_u64().unwrap() as usize);
        assert_eq!(nms(&b, &s, thr), want, "case {k}: nms");
        let want: Vec<usize> = list(&c["batched_nms"], |x| x.as_u64().unwrap() as usize);
        let got = batched_nms(&b, &s, &idxs, thr);
        if b.len() <= 1000 {
            assert_eq!(got, want, "case {k}: batched_nms ({} boxes)", b.len());
        } else {
            // Above 1000 boxes torchvision runs class by class and orders the union with an
            // unstable sort: the kept set is the same, ties come in an unspecified order.
            let (mut g, mut w) = (got.clone(), want.clone());
            g.sort_unstable();
            w.sort_unstable();
            assert_eq!(g, w, "case {k}: batched_nms kept set ({} boxes)", b.len());
            let scores_of = |v: &[usize]| v.iter().map(|&i| s[i]).collect::<Vec<f32>>();
            assert_eq!(scores_of(&got), scores_of(&want), "case {k}: score order");
        }
    }
}

#[test]
fn empty_and_degenerate_inputs_are_defined() {
    assert!(nms(&[], &[], 0.5).is_empty());
    assert!(batched_nms(&[], &[], &[], 0.5).is_empty());
    // Zero-size and inverted boxes never suppress anything (their IoU is 0 or NaN).
    let b = [
        [1.0, 1.0, 1.0, 1.0],
        [1.0, 1.0, 1.0, 1.0],
        [5.0, 5.0, 2.0, 2.0],
    ];
    assert_eq!(nms(&b, &[0.9, 0.8, 0.7], 0.5), vec![0, 1, 2]);
    // NaN coordinates: kept, never suppressing.
    let b = [[f32::NAN, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]];
    assert_eq!(nms(&b, &[0.9, 0.8], 0.5), vec![0, 1]);
}

#[test]
fn mask_paste_matches_grid_sample() {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops/mask_paste.json");
    let f: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let (h, w, m) = (
        f["h"].as_u64().unwrap() as usize,
        f["w"].as_u64().unwrap() as usize,
        f["m"].as_u64().unwrap() as usize,
    );
    for (k, c) in f["cases"].as_array().unwrap().iter().enumerate() {
        let b: Vec<f32> = list(&c["box"], |x| x.as_f64().unwrap() as f32);
        let mask: Vec<f32> = list(&c["mask"], |x| x.as_f64().unwrap() as f32);
        let prob: Vec<f32> = list(&c["prob"], |x| x.as_f64().unwrap() as f32);
        let got = seesaw_model::ops::mask_paste::paste_mask(
            &mask,
            m,
            &[b[0], b[1], b[2], b[3]],
            h,
            w,
            0.5,
        );
        let mut set = 0;
        for (i, (&g, &p)) in got.iter().zip(&prob).enumerate() {
            // Probabilities within float rounding of the threshold may go either way.
            if (p - 0.5).abs() > 1e-5 {
                assert_eq!(g == 1, p >= 0.5, "case {k}, pixel {i}: prob {p}");
            }
            set += usize::from(g == 1);
        }
        assert!(k == 4 || set > 0, "case {k} pasted nothing");
    }
}

#[test]
fn torchvision_mask_paste_matches_paste_masks_in_image() {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops/mask_paste.json");
    let f: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let (h, w, m) = (
        f["h"].as_u64().unwrap() as usize,
        f["w"].as_u64().unwrap() as usize,
        f["m"].as_u64().unwrap() as usize,
    );
    for (k, c) in f["cases"].as_array().unwrap().iter().enumerate() {
        let b: Vec<f32> = list(&c["box"], |x| x.as_f64().unwrap() as f32);
        let mask: Vec<f32> = list(&c["mask"], |x| x.as_f64().unwrap() as f32);
        let want: Vec<f32> = list(&c["tv_prob"], |x| x.as_f64().unwrap() as f32);
        let got = seesaw_model::ops::mask_paste::paste_mask_torchvision(
            &mask,
            m,
            &[b[0], b[1], b[2], b[3]],
            h,
            w,
        );
        assert_eq!(got.len(), want.len());
        for (i, (g, p)) in got.iter().zip(&want).enumerate() {
            assert!((g - p).abs() < 1e-5, "case {k}, pixel {i}: {g} vs {p}");
        }
    }
}
