//! Every stat on the reference cases equals the official tools' (lvis-api 0.5.3 for LVIS,
//! pycocotools 2.0.11 for COCO), and each corrected LVIS rule matters on its own.

use std::path::{Path, PathBuf};

use seesaw_data::{Dataset, Detection, Format, load_results};
use seesaw_eval::{Evaluator, IouType};

fn fixture(case: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../seesaw-data/tests/fixtures/eval")
        .join(case)
        .join(name)
}

fn official(case: &str, tool: &str, iou: &str) -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(fixture(case, &format!("{tool}_{iou}.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let stats = if tool == "lvis-api" {
        &v["stats"]
    } else {
        &v["stats_named"]
    };
    stats
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect()
}

/// pycocotools names its recalls AR@1 / ARs@100; `seesaw eval --json` uses AR1 / ARs.
fn our_key(k: &str) -> String {
    match k {
        "AR@1" => "AR1".into(),
        "AR@10" => "AR10".into(),
        "AR@100" => "AR100".into(),
        "ARs@100" => "ARs".into(),
        "ARm@100" => "ARm".into(),
        "ARl@100" => "ARl".into(),
        k => k.into(),
    }
}

fn load(case: &str, fmt: &str) -> (Dataset, Vec<Detection>) {
    let gt = Dataset::load(&fixture(case, &format!("{fmt}_gt.json"))).unwrap();
    let dt = load_results(&fixture(case, &format!("{fmt}_dt.json"))).unwrap();
    (gt, dt)
}

#[test]
fn every_stat_equals_the_official_tools() {
    let mut failures = Vec::new();
    for case in ["tiny", "edge"] {
        for (fmt, tool, format) in [
            ("lvis", "lvis-api", Format::Lvis),
            ("coco", "pycocotools", Format::Coco),
        ] {
            let (gt, dt) = load(case, fmt);
            let ev = Evaluator::new(&gt, None).unwrap();
            assert_eq!(ev.format(), format);
            for iou in ["bbox", "segm"] {
                let res = ev.evaluate(dt.clone(), iou.parse().unwrap()).unwrap();
                let want = official(case, tool, iou);
                assert_eq!(res.stats.len(), want.len(), "{case} {fmt} {iou}");
                for (k, v) in &want {
                    let got = res.stat(&our_key(k)).unwrap_or(f64::NAN);
                    if got.to_bits() != v.to_bits() {
                        failures.push(format!("{case} {fmt} {iou} {k}: ours {got} official {v}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Evaluates `gt` and `dt` (LVIS edge case) and returns AP for bbox.
fn lvis_ap(gt: &Dataset, dt: Vec<Detection>) -> f64 {
    let ev = Evaluator::new(gt, None).unwrap();
    ev.evaluate(dt, IouType::Bbox).unwrap().stat("AP").unwrap()
}

#[test]
fn rule_a_zero_area_detections_are_dropped() {
    let (gt, dt) = load("edge", "lvis");
    let zero: Vec<usize> = dt
        .iter()
        .enumerate()
        .filter(|(_, d)| d.bbox.is_some_and(|b| b[2] * b[3] == 0.0))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        zero,
        vec![5, 12, 19, 26],
        "the planted zero-area detections"
    );
    // Dropped, so removing them by hand changes nothing.
    let without: Vec<Detection> = dt
        .iter()
        .enumerate()
        .filter(|(i, _)| !zero.contains(i))
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(lvis_ap(&gt, dt.clone()), lvis_ap(&gt, without));
    // And they would matter if kept: as false positives with a positive area they lower AP.
    let mut widened = dt.clone();
    for &i in &zero {
        if let Some(b) = widened[i].bbox.as_mut() {
            b[2] = b[2].max(1.0);
            b[3] = b[3].max(1.0);
        }
    }
    assert_ne!(lvis_ap(&gt, dt), lvis_ap(&gt, widened));
}

#[test]
fn rule_b_ground_truth_ignore_flag_is_honoured() {
    let (gt, dt) = load("edge", "lvis");
    let ignored: Vec<u64> = gt
        .annotations
        .iter()
        .filter(|a| a.ignore == Some(1))
        .map(|a| a.id)
        .collect();
    assert_eq!(ignored, vec![715, 740]);
    let mut unflagged = gt.clone();
    for a in &mut unflagged.annotations {
        a.ignore = None;
    }
    assert_ne!(lvis_ap(&gt, dt.clone()), lvis_ap(&unflagged, dt));
}

#[test]
fn rule_c_zero_area_ground_truth_is_dropped() {
    let (gt, dt) = load("edge", "lvis");
    let zero: Vec<u64> = gt
        .annotations
        .iter()
        .filter(|a| a.area == 0.0)
        .map(|a| a.id)
        .collect();
    assert_eq!(zero, vec![775]);
    let mut removed = gt.clone();
    removed.annotations.retain(|a| a.area != 0.0);
    assert_eq!(lvis_ap(&gt, dt.clone()), lvis_ap(&removed, dt.clone()));
    let mut kept = gt.clone();
    for a in &mut kept.annotations {
        if a.area == 0.0 {
            a.area = a.bbox[2] * a.bbox[3];
        }
    }
    assert_ne!(lvis_ap(&gt, dt.clone()), lvis_ap(&kept, dt));
}

#[test]
fn rule_d_iscrowd_means_nothing_in_lvis() {
    let (gt, dt) = load("tiny", "lvis");
    let mut crowded = gt.clone();
    for a in crowded.annotations.iter_mut().step_by(3) {
        a.iscrowd = Some(1);
    }
    assert_eq!(lvis_ap(&gt, dt.clone()), lvis_ap(&crowded, dt.clone()));
    // Under COCO rules the same flags do change the result.
    let coco = |g: &Dataset| {
        Evaluator::new(g, Some(Format::Coco))
            .unwrap()
            .evaluate(dt.clone(), IouType::Bbox)
            .unwrap()
            .stat("AP")
            .unwrap()
    };
    assert_ne!(coco(&gt), coco(&crowded));
}

#[test]
fn coco_rules_ignore_the_ignore_flag_as_pycocotools() {
    // pycocotools overwrites a ground truth's `ignore` with its `iscrowd` before matching.
    let (gt, dt) = load("tiny", "coco");
    let mut flagged = gt.clone();
    for a in flagged.annotations.iter_mut().step_by(2) {
        a.ignore = Some(1);
    }
    let stats = |g: &Dataset| {
        Evaluator::new(g, None)
            .unwrap()
            .evaluate(dt.clone(), IouType::Bbox)
            .unwrap()
            .stats
    };
    assert_eq!(stats(&gt), stats(&flagged));
}

#[test]
fn lvis_ground_truth_built_without_an_image_list_is_refused() {
    // A file is refused when loaded; ground truth built in memory is refused here, not read
    // as if its lists were empty.
    let (mut gt, _) = load("tiny", "lvis");
    gt.images[2].not_exhaustive_category_ids = None;
    let err = Evaluator::new(&gt, None).err().unwrap().to_string();
    assert!(
        err.starts_with("ground truth: images[2].not_exhaustive_category_ids: missing"),
        "{err}"
    );
    // COCO rules read no list.
    assert!(Evaluator::new(&gt, Some(Format::Coco)).is_ok());
}

#[test]
fn empty_results_give_zero_or_minus_one() {
    let (gt, _) = load("tiny", "lvis");
    let res = Evaluator::new(&gt, None)
        .unwrap()
        .evaluate(Vec::new(), IouType::Segm)
        .unwrap();
    for (k, v) in &res.stats {
        assert!(*v == 0.0 || *v == -1.0, "{k} = {v}");
    }
}

#[test]
fn detections_missing_the_evaluated_geometry_are_named() {
    let (gt, mut dt) = load("tiny", "lvis");
    dt[3].segmentation = None;
    let err = Evaluator::new(&gt, None)
        .unwrap()
        .evaluate(dt, IouType::Segm)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "[3].segmentation: missing: needed for segm evaluation"
    );
}

#[test]
fn json_csv_and_table_have_the_official_shape() {
    let (gt, dt) = load("tiny", "lvis");
    let res = Evaluator::new(&gt, None)
        .unwrap()
        .evaluate(dt, IouType::Bbox)
        .unwrap();
    let keys: Vec<&str> = res.stats.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR@300", "ARs@300",
            "ARm@300", "ARl@300"
        ]
    );
    let j = res.to_json();
    assert_eq!(j["format"], "lvis");
    assert_eq!(j["iou_type"], "bbox");
    assert_eq!(j["stats"]["APr"].as_f64(), res.stat("APr"));
    assert_eq!(res.table.len(), 13);
    assert!(
        res.table[6].starts_with(
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=300 catIds=  r] = "
        ),
        "{}",
        res.table[6]
    );
    let csv = res.per_class_csv();
    assert_eq!(csv.lines().count(), 1 + gt.categories.len());
    // The mean of the per-class APs that exist is the AP.
    let aps: Vec<f64> = res
        .per_class
        .iter()
        .map(|c| c.ap)
        .filter(|&a| a >= 0.0)
        .collect();
    let mean = aps.iter().sum::<f64>() / aps.len() as f64;
    assert!((mean - res.stat("AP").unwrap()).abs() < 1e-12);
}

#[test]
fn fixed_and_pooled_ap_equal_the_reference_code() {
    let mut failures = Vec::new();
    for case in ["tiny", "edge"] {
        let (gt, dt) = load(case, "lvis");
        let ev = Evaluator::new(&gt, None).unwrap();
        for iou in ["bbox", "segm"] {
            let text =
                std::fs::read_to_string(fixture(case, &format!("fixed_ap_{iou}.json"))).unwrap();
            let want: serde_json::Value = serde_json::from_str(&text).unwrap();
            let res = ev
                .evaluate_fixed(
                    dt.clone(),
                    iou.parse().unwrap(),
                    seesaw_eval::fixed_ap::DEFAULT_DETS_PER_CLASS,
                )
                .unwrap();
            for part in ["fixed", "pooled"] {
                for (k, v) in want[part].as_object().unwrap() {
                    let v = v.as_f64().unwrap();
                    let got = res.stat(k).unwrap_or(f64::NAN);
                    if got.is_nan() || (got - v).abs() > 1e-12 {
                        failures.push(format!("{case} {iou} {part} {k}: ours {got} reference {v}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn malformed_result_masks_are_named_when_masks_are_evaluated() {
    let (gt, mut dt) = load("tiny", "lvis");
    if let Some(seesaw_data::Segmentation::Rle(r)) = dt[7].segmentation.as_mut() {
        // A single run longer than the whole mask.
        r.counts = seesaw_data::RleCounts::Compressed("oooooooo0".into());
    }
    let ev = Evaluator::new(&gt, None).unwrap();
    let err = ev
        .evaluate(dt.clone(), IouType::Segm)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("[7].segmentation.counts: malformed compressed RLE"),
        "{err}"
    );
    // Box evaluation never reads the masks.
    assert!(ev.evaluate(dt, IouType::Bbox).is_ok());
}

/// Our boundary masks equal OpenCV's erosion as boundary-iou-api uses it, pixel for pixel.
#[test]
fn boundaries_equal_opencv() {
    let path = fixture(".", "boundary_vectors.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let vectors = v["vectors"].as_array().unwrap();
    assert!(vectors.len() > 100);
    let mut failures = Vec::new();
    for (i, case) in vectors.iter().enumerate() {
        let (h, w) = (
            case["h"].as_u64().unwrap() as u32,
            case["w"].as_u64().unwrap() as u32,
        );
        let rle =
            |key: &str| hotcoco::mask::rle_from_string(case[key].as_str().unwrap(), h, w).unwrap();
        let d = case["dilation"].as_u64().unwrap() as u32;
        let got = seesaw_eval::boundary::mask_boundary(&rle("mask"), d);
        if got.counts != rle("boundary").counts {
            failures.push(format!("[{i}] {} ({h}x{w}, d={d})", case["what"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Boundary AP: the official protocols with boundary-iou-api's similarity, every stat bit for bit.
#[test]
fn boundary_ap_equals_the_official_tools_with_boundary_iou() {
    let mut failures = Vec::new();
    for case in ["tiny", "edge"] {
        for (fmt, tool) in [("lvis", "lvis-api"), ("coco", "pycocotools")] {
            let (gt, dt) = load(case, fmt);
            let ev = Evaluator::new(&gt, None).unwrap();
            let res = ev.evaluate(dt.clone(), IouType::Boundary).unwrap();
            assert_eq!(res.iou_type, IouType::Boundary);
            let text =
                std::fs::read_to_string(fixture(case, &format!("boundary_{tool}.json"))).unwrap();
            let want: serde_json::Value = serde_json::from_str(&text).unwrap();
            let want = want["stats"].as_object().unwrap();
            assert_eq!(res.stats.len(), want.len(), "{case} {fmt}");
            for (k, v) in want {
                let v = v.as_f64().unwrap();
                let got = res.stat(k).unwrap_or(f64::NAN);
                if got.to_bits() != v.to_bits() {
                    failures.push(format!(
                        "{case} {fmt} boundary {k}: ours {got} official {v}"
                    ));
                }
            }
            // Boundary IoU never exceeds mask IoU, so no stat can beat the mask one.
            let segm = ev.evaluate(dt, IouType::Segm).unwrap();
            for (k, v) in &res.stats {
                assert!(*v <= segm.stat(k).unwrap() + 1e-12, "{case} {fmt} {k}");
            }
            assert_eq!(res.per_class.len(), gt.categories.len());
            let aps: Vec<f64> = res
                .per_class
                .iter()
                .map(|c| c.ap)
                .filter(|&a| a > -1.0)
                .collect();
            let mean = aps.iter().sum::<f64>() / aps.len() as f64;
            assert!(
                (mean - res.stat("AP").unwrap()).abs() < 1e-12,
                "{case} {fmt}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn boundary_ap_refuses_what_it_cannot_evaluate() {
    let (gt, dt) = load("tiny", "lvis");
    let ev = Evaluator::new(&gt, None).unwrap();
    let err = ev
        .evaluate_boundary(dt.clone(), 0.0)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("dilation ratio"), "{err}");
    let err = ev
        .evaluate_fixed(dt.clone(), IouType::Boundary, 10)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not boundary"), "{err}");
    let mut no_masks = dt;
    no_masks[3].segmentation = None;
    let err = ev
        .evaluate(no_masks, IouType::Boundary)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[3]") && err.contains("segmentation"), "{err}");
    assert!("boundary".parse::<IouType>().is_ok());
}
