//! Category-agnostic evaluation (pycocotools' `useCats = 0`) and proposal recall (mmdetection's
//! proposal metric) against the official tools' numbers (fixtures made by
//! `crates/seesaw-data/tests/fixtures/eval/make_quirks.py`).

use std::path::{Path, PathBuf};

use seesaw_data::{Dataset, Format, load_results};
use seesaw_eval::{Evaluator, IouType, PROPOSAL_NUMS, proposal_recall};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../seesaw-data/tests/fixtures/eval")
        .join(name)
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn compare(got: &[(String, f64)], want: &Value, what: &str, failures: &mut Vec<String>) {
    let want = want.as_object().unwrap();
    let keys: Vec<&String> = got.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, want.keys().collect::<Vec<_>>(), "{what}");
    for (k, v) in got {
        let v_want = want[k].as_f64().unwrap();
        if v.to_bits() != v_want.to_bits() {
            failures.push(format!("{what} {k}: ours {v} official {v_want}"));
        }
    }
}

#[test]
fn without_categories_the_numbers_are_pycocotools_and_corrected_lvis_api() {
    let official = json("agnostic/official.json");
    let mut failures = Vec::new();
    for (name, case) in official["cases"].as_object().unwrap() {
        let gt = Dataset::load(&fixture(case["gt"].as_str().unwrap())).unwrap();
        let dt = load_results(&fixture(case["dt"].as_str().unwrap())).unwrap();
        let ev = Evaluator::new(&gt, None).unwrap().use_categories(false);
        assert!(!ev.uses_categories());
        let per_category = Evaluator::new(&gt, None).unwrap();
        for iou in [IouType::Bbox, IouType::Segm, IouType::Boundary] {
            let res = ev.evaluate(dt.clone(), iou).unwrap();
            assert!(!res.use_cats && res.per_class.is_empty(), "{name}");
            assert_eq!(res.to_json()["use_cats"], false);
            compare(
                &res.stats,
                &case[iou.to_string()],
                &format!("{name} {iou}"),
                &mut failures,
            );
            // Ignoring categories is another measure, not the per-category one (the two-class
            // field case happens to agree on AP).
            assert!(
                name.starts_with("id_zero")
                    || res.stat("AP") != per_category.evaluate(dt.clone(), iou).unwrap().stat("AP"),
                "{name} {iou}"
            );
            if ev.format() == Format::Lvis {
                for g in ["APr", "APc", "APf"] {
                    assert_eq!(res.stat(g), Some(-1.0), "{name} {iou} {g}");
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn lvis_without_categories_keeps_each_detection_s_own_federated_rules() {
    // A detection of a category neither annotated nor listed negative on its image is not
    // evaluated, with categories or without.
    let gt = Dataset::load(&fixture("tiny/lvis_gt.json")).unwrap();
    let dt = load_results(&fixture("tiny/lvis_dt.json")).unwrap();
    let im = &gt.images[0];
    let known: Vec<u64> = gt
        .annotations
        .iter()
        .filter(|a| a.image_id == im.id)
        .map(|a| a.category_id)
        .chain(im.neg_category_ids.iter().flatten().copied())
        .collect();
    let stray = gt
        .categories
        .iter()
        .map(|c| c.id)
        .find(|c| !known.contains(c))
        .unwrap();
    let mut more = dt.clone();
    more.push(seesaw_data::Detection {
        image_id: im.id,
        category_id: stray,
        bbox: Some([1.0, 1.0, 5.0, 5.0]),
        segmentation: None,
        score: 0.999,
    });
    let ev = Evaluator::new(&gt, None).unwrap().use_categories(false);
    assert_eq!(
        ev.evaluate(dt, IouType::Bbox).unwrap().stats,
        ev.evaluate(more, IouType::Bbox).unwrap().stats
    );
}

#[test]
fn proposal_recall_equals_pycocotools_proposal_evaluation() {
    let official = json("proposals/official.json");
    let mut failures = Vec::new();
    for (name, case) in official["cases"].as_object().unwrap() {
        let gt = Dataset::load(&fixture(case["gt"].as_str().unwrap())).unwrap();
        let props = load_results(&fixture(case["proposals"].as_str().unwrap())).unwrap();
        let res = proposal_recall(&gt, props, &PROPOSAL_NUMS).unwrap();
        assert!(!res.use_cats && res.per_class.is_empty());
        compare(&res.stats, &case["stats"], name, &mut failures);
        assert_eq!(
            res.table[2],
            format!(
                " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=1000 ] = {:.3}",
                res.stats[2].1
            )
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn what_needs_categories_or_caps_is_refused() {
    let gt = Dataset::load(&fixture("tiny/lvis_gt.json")).unwrap();
    let dt = load_results(&fixture("tiny/lvis_dt.json")).unwrap();
    let ev = Evaluator::new(&gt, None).unwrap().use_categories(false);
    let err = ev
        .evaluate_fixed(dt.clone(), IouType::Bbox, 10)
        .err()
        .unwrap();
    assert!(err.to_string().contains("per-category"), "{err}");
    let err = proposal_recall(&gt, dt, &[]).err().unwrap();
    assert!(err.to_string().contains("proposal numbers"), "{err}");
}
