//! What the commands do with data files that the official tools refuse or read differently:
//! LVIS images without their category lists, images that do not decode as their JSON says.

use std::path::{Path, PathBuf};
mod common;
use common::{seesaw, text};

fn case() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lvis-missing-neg-ids")
}

#[test]
fn lvis_images_without_their_lists_are_refused_except_to_describe() {
    let gt = case().join("gt_no_neg_lists.json");
    let g = gt.to_str().unwrap();
    let dt = case().join("dt.json");
    let want = format!(
        "{}: images[0].neg_category_ids: missing (2 of 2 images lack it)",
        gt.display()
    );
    // Evaluation: lvis-api refuses the file (KeyError); so do we, saying what the list means.
    let out = seesaw(&[
        "eval",
        "--gt",
        g,
        "--results",
        dt.to_str().unwrap(),
        "--iou-type",
        "bbox",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&want), "{err}");
    assert!(
        err.contains("verified absent from the image") && err.contains("lvis-api refuses"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // RFS describes a training set, and training refuses the file: an error too.
    let out = seesaw(&["data", "rfs", g]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&want), "{}", text(&out.stderr));
    // Statistics describe it, with the problem as a warning.
    let out = seesaw(&["data", "stats", g]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("WARN") && err.contains(&want), "{err}");
    assert!(
        text(&out.stdout).contains("LVIS format, 2 images"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn lvis_with_full_lists_gives_lvis_api_numbers() {
    // The same file with both lists on every image: lvis-api's stats (made by
    // make_full_lists.py), where the false positives on absent categories count (AP 0.4).
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats.json");
    let out = seesaw(&[
        "eval",
        "--gt",
        case().join("gt_full_lists.json").to_str().unwrap(),
        "--results",
        case().join("dt.json").to_str().unwrap(),
        "--iou-type",
        "bbox",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ours: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let official: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case().join("lvis_api_bbox.json")).unwrap()).unwrap();
    assert_eq!(ours["stats"]["AP"], 0.4);
    assert_eq!(ours["stats"], official["stats"]);
}

#[test]
fn data_show_reads_images_turned_and_checks_their_size() {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../seesaw-data/tests/fixtures/images");
    let dir = tempfile::tempdir().unwrap();
    let show = |w: u32, h: u32| {
        let json = dir.path().join("gt.json");
        std::fs::write(
            &json,
            format!(
                r#"{{"images": [{{"id": 1, "width": {w}, "height": {h}, "file_name": "orient6.png"}}],
                    "annotations": [], "categories": [{{"id": 1, "name": "a"}}]}}"#
            ),
        )
        .unwrap();
        let out = seesaw(&[
            "data",
            "show",
            json.to_str().unwrap(),
            "--image-id",
            "1",
            "--image-root",
            images.to_str().unwrap(),
            "--out",
            dir.path().join("show.png").to_str().unwrap(),
        ]);
        (out.status.code(), text(&out.stderr))
    };
    // The record describes the turned view, as mmcv and detectron2 read the file.
    let (code, err) = show(30, 40);
    assert_eq!(code, Some(0), "{err}");
    let (w, h) = image::image_dimensions(dir.path().join("show.png")).unwrap();
    assert!(h > w, "{w}x{h}");
    // The record describes the stored pixels: the image, both sizes and the cause are named.
    let (code, err) = show(40, 30);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "orient6.png: the image is 30x40 after its EXIF orientation (6) but images[0] (id 1)"
        ) && err.contains("says 40x30")
            && err.contains("EXIF orientation tag (6) turns it"),
        "{err}"
    );
}

/// `seesaw eval --json` on `gt` and `dt` for `iou`: the exit code, stderr and the stats.
fn eval(gt: &Path, dt: &Path, iou: &str) -> (Option<i32>, String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stats.json");
    let out = seesaw(&[
        "eval",
        "--gt",
        gt.to_str().unwrap(),
        "--results",
        dt.to_str().unwrap(),
        "--iou-type",
        iou,
        "--json",
        json.to_str().unwrap(),
    ]);
    let stats = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .map_or(serde_json::Value::Null, |v| v["stats"].clone());
    (out.status.code(), text(&out.stderr), stats)
}

#[test]
fn coco_ground_truth_fields_the_official_tools_need() {
    let case =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../seesaw-data/tests/fixtures/eval/tiny");
    let (gt, dt) = (case.join("coco_gt.json"), case.join("coco_dt.json"));
    let dir = tempfile::tempdir().unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&gt).unwrap()).unwrap();
    let (code, err, official) = eval(&gt, &dt, "segm");
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("iscrowd"), "{err}");

    // No iscrowd where it is 0: pycocotools fails (KeyError), mmdetection and detectron2 read
    // 0; so do we, with a warning, and the numbers are those of the file with the zeros.
    let anns = doc["annotations"].as_array_mut().unwrap();
    let mut dropped = 0;
    for a in anns.iter_mut() {
        if a["iscrowd"] == 0 {
            a.as_object_mut().unwrap().remove("iscrowd");
            dropped += 1;
        }
    }
    let no_crowd_flag = dir.path().join("no_iscrowd.json");
    std::fs::write(&no_crowd_flag, doc.to_string()).unwrap();
    let (code, err, stats) = eval(&no_crowd_flag, &dt, "segm");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(stats, official);
    assert!(
        err.contains("WARN")
            && err.contains(&format!("{dropped} annotations have no iscrowd"))
            && err.contains("KeyError: 'iscrowd'"),
        "{err}"
    );

    // A ground truth without a mask, or with an empty list of polygons: mask evaluation fails
    // in pycocotools (KeyError, IndexError); here it is an error naming the annotation, and
    // box evaluation, which reads no mask, is unchanged.
    let (_, _, official_bbox) = eval(&gt, &dt, "bbox");
    for (name, seg) in [
        ("no_mask.json", None),
        ("empty_mask.json", Some(serde_json::json!([]))),
    ] {
        let mut doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&gt).unwrap()).unwrap();
        let a = doc["annotations"][4].as_object_mut().unwrap();
        match &seg {
            None => a.remove("segmentation"),
            Some(v) => a.insert("segmentation".into(), v.clone()),
        };
        let file = dir.path().join(name);
        std::fs::write(&file, doc.to_string()).unwrap();
        for iou in ["segm", "boundary"] {
            let (code, err, _) = eval(&file, &dt, iou);
            assert_eq!(code, Some(1), "{name} {iou}: {err}");
            assert!(
                err.contains(&format!(
                    "{}: annotations[4].segmentation: missing or an empty list: needed for {iou} evaluation",
                    file.display()
                )),
                "{name} {iou}: {err}"
            );
        }
        let (code, err, stats) = eval(&file, &dt, "bbox");
        assert_eq!(code, Some(0), "{name}: {err}");
        assert_eq!(stats, official_bbox, "{name}");
    }
}
