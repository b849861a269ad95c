//! The fields the evaluator reads, one decision each (same number as the official tools, or a
//! clear error where they crash or drop silently): the ones not already pinned by the official
//! fixtures or the data layer's tests. What pycocotools 2.0.11 / lvis-api 0.5.3 do with each
//! input below was run by hand with them; README, "What the evaluator reads", lists it.

use std::path::{Path, PathBuf};

use seesaw_data::{Dataset, Detection, RleCounts, Segmentation, load_results};
use seesaw_eval::{Evaluator, IouType};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../seesaw-data/tests/fixtures/eval")
        .join(name)
}

fn load(fmt: &str) -> (Dataset, Vec<Detection>) {
    (
        Dataset::load(&fixture(&format!("tiny/{fmt}_gt.json"))).unwrap(),
        load_results(&fixture(&format!("tiny/{fmt}_dt.json"))).unwrap(),
    )
}

fn stats(gt: &Dataset, dt: &[Detection], iou: IouType) -> Vec<(String, f64)> {
    Evaluator::new(gt, None)
        .unwrap()
        .evaluate(dt.to_vec(), iou)
        .unwrap()
        .stats
}

/// pycocotools and lvis-api stop with `KeyError: 'segmentation'`; we name the annotation.
#[test]
fn ground_truth_without_a_mask_is_refused_for_mask_evaluation() {
    for fmt in ["coco", "lvis"] {
        let (mut gt, dt) = load(fmt);
        gt.annotations[4].segmentation = None;
        let ev = Evaluator::new(&gt, None).unwrap();
        for iou in [IouType::Segm, IouType::Boundary] {
            let err = ev.evaluate(dt.clone(), iou).err().unwrap().to_string();
            assert_eq!(
                err,
                format!(
                    "annotations[4].segmentation: missing or an empty list: needed for {iou} evaluation"
                )
            );
            assert!(ev.check_ground_truth(iou).is_err());
        }
        assert!(ev.evaluate(dt.clone(), IouType::Bbox).is_ok());
        let err = ev
            .evaluate_fixed(dt.clone(), IouType::Segm, 10)
            .err()
            .map(|e| e.to_string());
        if fmt == "lvis" {
            assert!(err.unwrap().starts_with("annotations[4].segmentation"));
        }
    }
    // lvis-api never reads the mask of an annotation it drops for a zero area.
    let (mut gt, dt) = load("lvis");
    gt.annotations[4].segmentation = None;
    gt.annotations[4].area = 0.0;
    assert!(
        Evaluator::new(&gt, None)
            .unwrap()
            .evaluate(dt, IouType::Segm)
            .is_ok()
    );
}

/// pycocotools reads a missing `iscrowd` as 0 for its ignore rule, and then stops with
/// `KeyError: 'iscrowd'` in its IoU step; we read it as 0 throughout (COCO's meaning, and LVIS
/// files have no such field).
#[test]
fn a_missing_iscrowd_is_zero() {
    let (gt, dt) = load("coco");
    let mut without = gt.clone();
    for a in &mut without.annotations {
        if a.iscrowd == Some(0) {
            a.iscrowd = None;
        }
    }
    assert_ne!(gt, without);
    for iou in [IouType::Bbox, IouType::Segm] {
        assert_eq!(stats(&gt, &dt, iou), stats(&without, &dt, iou));
    }
}

/// pycocotools overwrites `ignore` with `iscrowd` before matching: in COCO the flag means
/// nothing (lvis-api honours it: `rule_b` in official.rs).
#[test]
fn the_ignore_flag_means_nothing_in_coco() {
    let (gt, dt) = load("coco");
    let mut flagged = gt.clone();
    for a in flagged.annotations.iter_mut().step_by(3) {
        a.ignore = Some(1);
    }
    assert_eq!(
        stats(&gt, &dt, IouType::Bbox),
        stats(&flagged, &dt, IouType::Bbox)
    );
}

/// The official tools overwrite a result's `id`, `area` and `iscrowd`: we never read them.
#[test]
fn a_result_s_own_id_area_and_iscrowd_are_not_read() {
    let (gt, dt) = load("coco");
    let mut raw: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(fixture("tiny/coco_dt.json")).unwrap()).unwrap();
    for d in &mut raw {
        let d = d.as_object_mut().unwrap();
        d.insert("id".into(), 0.into());
        d.insert("area".into(), 1e9.into());
        d.insert("iscrowd".into(), 1.into());
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dt.json");
    std::fs::write(&file, serde_json::to_vec(&raw).unwrap()).unwrap();
    let extra = load_results(&file).unwrap();
    for iou in [IouType::Bbox, IouType::Segm] {
        assert_eq!(stats(&gt, &dt, iou), stats(&gt, &extra, iou));
    }
}

/// Uncompressed RLE result masks: pycocotools and lvis-api read them when the first result has a
/// box (and stop with a TypeError computing mask areas when it has none); we read them as the
/// same masks compressed, either way.
#[test]
fn uncompressed_result_masks_are_the_same_masks() {
    for fmt in ["coco", "lvis"] {
        let (gt, dt) = load(fmt);
        let plain: Vec<Detection> = dt
            .iter()
            .map(|d| {
                let mut d = d.clone();
                if let Some(Segmentation::Rle(r)) = &mut d.segmentation
                    && let RleCounts::Compressed(s) = &r.counts
                {
                    let rle = hotcoco::mask::rle_from_string(s, r.size[0], r.size[1]).unwrap();
                    r.counts = RleCounts::Uncompressed(rle.counts);
                }
                d
            })
            .collect();
        assert_ne!(plain, dt);
        assert_eq!(
            stats(&gt, &dt, IouType::Segm),
            stats(&gt, &plain, IouType::Segm)
        );
        let (mut a, mut b) = (dt.clone(), plain.clone());
        a[0].bbox = None;
        b[0].bbox = None;
        assert_eq!(stats(&gt, &a, IouType::Segm), stats(&gt, &b, IouType::Segm));
    }
}

/// Only annotation ids are tested as truth values: an image or category whose id is 0 is
/// ordinary (pycocotools and lvis-api give the same numbers with every image and category id
/// shifted down to start at 0, as we do).
#[test]
fn image_and_category_id_zero_are_ordinary() {
    for fmt in ["coco", "lvis"] {
        let (gt, dt) = load(fmt);
        let mi = gt.images.iter().map(|i| i.id).min().unwrap();
        let mc = gt.categories.iter().map(|c| c.id).min().unwrap();
        let mut g = gt.clone();
        for im in &mut g.images {
            im.id -= mi;
            for list in [
                &mut im.neg_category_ids,
                &mut im.not_exhaustive_category_ids,
            ] {
                for c in list.iter_mut().flatten() {
                    *c -= mc;
                }
            }
        }
        for c in &mut g.categories {
            c.id -= mc;
        }
        for a in &mut g.annotations {
            a.image_id -= mi;
            a.category_id -= mc;
        }
        let mut d = dt.clone();
        for x in &mut d {
            x.image_id -= mi;
            x.category_id -= mc;
        }
        assert!(g.images.iter().any(|i| i.id == 0) && g.categories.iter().any(|c| c.id == 0));
        for iou in [IouType::Bbox, IouType::Segm] {
            assert_eq!(stats(&gt, &dt, iou), stats(&g, &d, iou), "{fmt} {iou}");
        }
    }
}

/// A result without `score`: the official tools stop with `KeyError: 'score'`; we name it.
#[test]
fn a_result_without_a_score_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dt.json");
    std::fs::write(
        &file,
        r#"[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5},
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]"#,
    )
    .unwrap();
    let err = load_results(&file).err().unwrap().to_string();
    assert!(
        err.contains("[1]") && err.contains("missing field `score`"),
        "{err}"
    );
}
