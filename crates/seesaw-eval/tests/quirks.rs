//! The official tools' quirks that we keep, and what we decide where they crash: every number
//! against pycocotools 2.0.11 / lvis-api 0.5.3 (fixtures made by
//! `crates/seesaw-data/tests/fixtures/eval/make_quirks.py`).

use std::path::{Path, PathBuf};

use seesaw_data::{Dataset, Detection, Format, load_results};
use seesaw_eval::{Evaluator, IouType};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../seesaw-data/tests/fixtures/eval")
        .join(name)
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// Every official stat equals ours, bit for bit; differences listed in `failures`.
fn compare(ours: &seesaw_eval::Evaluation, want: &Value, what: &str, failures: &mut Vec<String>) {
    let want = want.as_object().unwrap();
    assert_eq!(ours.stats.len(), want.len(), "{what}");
    for (k, v) in want {
        let v = v.as_f64().unwrap();
        let got = ours.stat(k).unwrap_or(f64::NAN);
        if got.to_bits() != v.to_bits() {
            failures.push(format!("{what} {k}: ours {got} official {v}"));
        }
    }
}

fn format_of(name: &str) -> Format {
    if name.ends_with("lvis") {
        Format::Lvis
    } else {
        Format::Coco
    }
}

#[test]
fn annotation_id_zero_is_never_matched_as_in_the_official_tools() {
    let official = json("id-zero/official.json");
    let mut failures = Vec::new();
    for (name, case) in official["cases"].as_object().unwrap() {
        let gt = Dataset::load(&fixture(case["gt"].as_str().unwrap())).unwrap();
        let dt = load_results(&fixture(case["dt"].as_str().unwrap())).unwrap();
        assert_eq!(
            seesaw_eval::quirks::annotations_with_id_zero(&gt).len(),
            1,
            "{name}"
        );
        let ev = Evaluator::new(&gt, None).unwrap();
        assert_eq!(ev.format(), format_of(name), "{name}");
        // The same file with the annotation renumbered: it is matched, and the numbers move.
        let mut renumbered = gt.clone();
        let top = gt.annotations.iter().map(|a| a.id).max().unwrap();
        for a in &mut renumbered.annotations {
            if a.id == 0 {
                a.id = top + 1;
            }
        }
        let plain = Evaluator::new(&renumbered, None).unwrap();
        let mut moved = false;
        for iou in [IouType::Bbox, IouType::Segm, IouType::Boundary] {
            let res = ev.evaluate(dt.clone(), iou).unwrap();
            compare(
                &res,
                &case[iou.to_string()],
                &format!("{name} {iou}"),
                &mut failures,
            );
            moved |= plain.evaluate(dt.clone(), iou).unwrap().stats != res.stats;
        }
        assert!(moved, "{name}: the annotation with id 0 changes nothing");
        // Fixed AP and pooled AP: the reference code sits on lvis-api, quirk included.
        for (iou, want) in case
            .get("fixed_ap")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let res = ev
                .evaluate_fixed(
                    dt.clone(),
                    iou.parse().unwrap(),
                    seesaw_eval::fixed_ap::DEFAULT_DETS_PER_CLASS,
                )
                .unwrap();
            for part in ["fixed", "pooled"] {
                for (k, v) in want[part].as_object().unwrap() {
                    let (v, got) = (v.as_f64().unwrap(), res.stat(k).unwrap_or(f64::NAN));
                    if got.is_nan() || (got - v).abs() > 1e-12 {
                        failures.push(format!("{name} fixed {iou} {k}: ours {got} reference {v}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The field case's own number.
    let field = &official["cases"]["field_coco"]["bbox"]["AP"];
    assert_eq!(field.as_f64(), Some(0.6014851485148515));
}

/// The detections of a `mixed-bbox` case, derived from the tiny case's as `make_quirks.py` does.
fn mixed_dets(name: &str) -> Vec<Detection> {
    let fmt = if name.ends_with("lvis") || name.starts_with("capped") {
        "lvis"
    } else {
        "coco"
    };
    let mut dets = load_results(&fixture(&format!("tiny/{fmt}_dt.json"))).unwrap();
    if name.starts_with("first_no_box") {
        for i in [0, 3, 10] {
            dets[i].bbox = None;
        }
    } else if name.starts_with("later_no_box") {
        dets[5].bbox = None;
    } else {
        let mut count = std::collections::HashMap::new();
        for d in &dets {
            *count.entry(d.image_id).or_insert(0usize) += 1;
        }
        let burst = dets.iter().map(|d| d.image_id).find(|i| count[i] > 300);
        let burst = burst.unwrap();
        let (mut first, rest): (Vec<_>, Vec<_>) =
            dets.into_iter().partition(|d| d.image_id == burst);
        let best = (0..first.len())
            .reduce(|b, k| {
                if first[k].score > first[b].score {
                    k
                } else {
                    b
                }
            })
            .unwrap();
        first[best].bbox = None;
        first.extend(rest);
        dets = first;
    }
    dets
}

#[test]
fn results_without_a_box_follow_the_first_result_in_both_formats() {
    let official = json("mixed-bbox/official.json");
    let mut failures = Vec::new();
    for (name, case) in official["cases"].as_object().unwrap() {
        let gt = Dataset::load(&fixture(case["gt"].as_str().unwrap())).unwrap();
        let dets = mixed_dets(name);
        assert!(case["derived"].is_string());
        let ev = Evaluator::new(&gt, Some(format_of(name))).unwrap();
        for iou in [IouType::Segm, IouType::Boundary] {
            let want = &case[iou.to_string()];
            let got = ev.evaluate(dets.clone(), iou);
            match (want.get("stats"), got) {
                (Some(stats), Ok(res)) => {
                    compare(&res, stats, &format!("{name} {iou}"), &mut failures)
                }
                (None, Err(e)) => {
                    // The official tool stopped (KeyError: 'bbox'); we name the result.
                    assert!(want["error"].as_str().unwrap().contains("KeyError"));
                    let index = dets.iter().position(|d| d.bbox.is_none()).unwrap();
                    let msg = e.to_string();
                    assert!(
                        msg.starts_with(&format!(
                            "[{index}].bbox: missing, while the first result"
                        )),
                        "{name} {iou}: {msg}"
                    );
                }
                (want, got) => {
                    failures.push(format!("{name} {iou}: official {want:?}, ours {got:?}"))
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn masks_give_every_area_when_the_first_result_has_no_box() {
    // Boxes on the later results would move the area ranges (APs, APm, APl) if they were read.
    let (gt, mut dets) = (
        Dataset::load(&fixture("tiny/lvis_gt.json")).unwrap(),
        load_results(&fixture("tiny/lvis_dt.json")).unwrap(),
    );
    let ev = Evaluator::new(&gt, None).unwrap();
    let boxed = ev.evaluate(dets.clone(), IouType::Segm).unwrap();
    dets[0].bbox = None;
    let masked = ev.evaluate(dets.clone(), IouType::Segm).unwrap();
    assert_ne!(boxed.stat("APs"), masked.stat("APs"));
    let mut none = dets.clone();
    for d in &mut none {
        d.bbox = None;
    }
    assert_eq!(
        masked.stats,
        ev.evaluate(none, IouType::Segm).unwrap().stats
    );
    // Box evaluation needs a box on every result.
    let err = ev.evaluate(dets, IouType::Bbox).err().unwrap().to_string();
    assert_eq!(err, "[0].bbox: missing: needed for bbox evaluation");
}

/// lvis-api reads only what its 300-per-image cap keeps: a boxless result that the cap drops is
/// never read (lvis-api gives the plain numbers, checked by hand), while pycocotools, which has
/// no cap, stops at it.
#[test]
fn a_boxless_result_the_lvis_cap_drops_is_never_read() {
    let gt = Dataset::load(&fixture("tiny/lvis_gt.json")).unwrap();
    let mut dets = load_results(&fixture("tiny/lvis_dt.json")).unwrap();
    let mut count = std::collections::HashMap::new();
    for d in &dets {
        *count.entry(d.image_id).or_insert(0usize) += 1;
    }
    let burst = dets
        .iter()
        .map(|d| d.image_id)
        .find(|i| count[i] > 300)
        .unwrap();
    // The lowest score, the latest on a tie: what a stable sort by score puts last.
    let worst = (0..dets.len())
        .filter(|&i| dets[i].image_id == burst)
        .reduce(|w, i| if dets[i].score <= dets[w].score { i } else { w })
        .unwrap();
    dets[worst].bbox = None;
    let res = Evaluator::new(&gt, None)
        .unwrap()
        .evaluate(dets.clone(), IouType::Segm)
        .unwrap();
    let mut failures = Vec::new();
    compare(
        &res,
        &json("tiny/lvis-api_segm.json")["stats"],
        "capped away",
        &mut failures,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let err = Evaluator::new(&gt, Some(Format::Coco))
        .unwrap()
        .evaluate(dets, IouType::Segm)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with(&format!("[{worst}].bbox: missing")),
        "{err}"
    );
}
