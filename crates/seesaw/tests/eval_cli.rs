//! `seesaw eval` and `seesaw test` on the official tools' quirks and the category-agnostic modes:
//! what a user types, what it prints and writes (numbers from
//! `crates/seesaw-data/tests/fixtures/eval/make_quirks.py`).

use std::path::{Path, PathBuf};
mod common;
use common::{seesaw, text};
use serde_json::Value;

fn eval_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../seesaw-data/tests/fixtures/eval")
        .join(name)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Runs `seesaw eval --gt GT --results DT ARGS... --json OUT` and returns (stdout, stderr, the
/// JSON written, when the command succeeded).
fn eval(gt: &Path, dt: &Path, args: &[&str], out: &Path) -> (String, String, Option<Value>) {
    let mut all = vec![
        "eval",
        "--gt",
        gt.to_str().unwrap(),
        "--results",
        dt.to_str().unwrap(),
        "--json",
        out.to_str().unwrap(),
    ];
    all.extend(args);
    let _ = std::fs::remove_file(out);
    let o = seesaw(&all);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(!stderr.contains("panicked"), "{stderr}");
    let json = o.status.success().then(|| read_json(out));
    (stdout, stderr, json)
}

#[test]
fn annotation_id_zero_gives_the_official_numbers_and_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stats.json");
    let official = read_json(&eval_fixture("id-zero/official.json"));
    for (case, fmt) in [("field_coco", "coco"), ("field_lvis", "lvis")] {
        let gt = eval_fixture(&format!("id-zero/{fmt}_gt.json"));
        let dt = eval_fixture(&format!("id-zero/{fmt}_dt.json"));
        for iou in ["bbox", "segm", "boundary"] {
            let (_, stderr, json) = eval(&gt, &dt, &["--iou-type", iou], &out);
            let json = json.unwrap_or_else(|| panic!("{case} {iou}: {stderr}"));
            assert_eq!(json["stats"], official["cases"][case][iou], "{case} {iou}");
            assert!(
                stderr.contains(&format!(
                    "{}: annotations[0] has id 0: pycocotools and lvis-api never match an \
                     annotation whose id is 0",
                    gt.display()
                )) && stderr.contains("1 annotation affected"),
                "{stderr}"
            );
        }
    }
    // Ids from 1: no warning.
    let case = eval_fixture("tiny");
    let (_, stderr, json) = eval(
        &case.join("coco_gt.json"),
        &case.join("coco_dt.json"),
        &["--iou-type", "bbox"],
        &out,
    );
    assert!(json.is_some() && !stderr.contains("id 0"), "{stderr}");
}

#[test]
fn a_result_without_the_box_the_first_one_has_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stats.json");
    for fmt in ["coco", "lvis"] {
        let case = eval_fixture("tiny");
        let mut dets: Vec<Value> =
            serde_json::from_slice(&std::fs::read(case.join(format!("{fmt}_dt.json"))).unwrap())
                .unwrap();
        dets[5].as_object_mut().unwrap().remove("bbox");
        let dt = dir.path().join(format!("{fmt}_later_no_box.json"));
        std::fs::write(&dt, serde_json::to_vec(&dets).unwrap()).unwrap();
        let gt = case.join(format!("{fmt}_gt.json"));
        let (_, stderr, json) = eval(&gt, &dt, &["--iou-type", "segm"], &out);
        assert!(json.is_none());
        assert!(
            stderr.contains(&format!(
                "{}: [5].bbox: missing, while the first result ([0]) has one: pycocotools and \
                 lvis-api take every result's area from its box",
                dt.display()
            )),
            "{fmt}: {stderr}"
        );
        // Without a box on the first result either, masks give every area: the official numbers.
        dets[0].as_object_mut().unwrap().remove("bbox");
        std::fs::write(&dt, serde_json::to_vec(&dets).unwrap()).unwrap();
        let (_, stderr, json) = eval(&gt, &dt, &["--iou-type", "segm"], &out);
        let json = json.unwrap_or_else(|| panic!("{fmt}: {stderr}"));
        let mut none = dets.clone();
        for d in &mut none {
            d.as_object_mut().unwrap().remove("bbox");
        }
        std::fs::write(&dt, serde_json::to_vec(&none).unwrap()).unwrap();
        let (_, _, all_masks) = eval(&gt, &dt, &["--iou-type", "segm"], &out);
        assert_eq!(json["stats"], all_masks.unwrap()["stats"], "{fmt}");
    }
}

#[test]
fn no_categories_and_proposals_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stats.json");
    let agnostic = read_json(&eval_fixture("agnostic/official.json"));
    for fmt in ["coco", "lvis"] {
        let gt = eval_fixture(&format!("edge/{fmt}_gt.json"));
        let dt = eval_fixture(&format!("edge/{fmt}_dt.json"));
        let (stdout, stderr, json) =
            eval(&gt, &dt, &["--iou-type", "segm", "--no-categories"], &out);
        let json = json.unwrap_or_else(|| panic!("{fmt}: {stderr}"));
        assert!(
            stdout.contains("segm evaluation, categories ignored:"),
            "{stdout}"
        );
        assert_eq!(json["use_cats"], false);
        assert_eq!(
            json["stats"],
            agnostic["cases"][format!("edge_{fmt}")]["segm"]
        );
    }
    let proposals = read_json(&eval_fixture("proposals/official.json"));
    for fmt in ["coco", "lvis"] {
        let gt = eval_fixture(&format!("tiny/{fmt}_gt.json"));
        let dt = eval_fixture(&format!("proposals/{fmt}_proposals.json"));
        let (stdout, stderr, json) = eval(&gt, &dt, &["--proposals"], &out);
        let json = json.unwrap_or_else(|| panic!("{fmt}: {stderr}"));
        assert!(stdout.contains("proposal recall"), "{stdout}");
        assert_eq!(json["stats"], proposals["cases"][fmt]["stats"], "{fmt}");
    }
    // What needs categories is refused with a reason.
    let case = eval_fixture("tiny");
    let (gt, dt) = (case.join("lvis_gt.json"), case.join("lvis_dt.json"));
    let csv = dir.path().join("per_class.csv");
    for (args, want) in [
        (
            vec!["--iou-type", "bbox", "--no-categories", "--fixed-ap"],
            "--fixed-ap is a per-category measure: not with --no-categories",
        ),
        (
            vec![
                "--iou-type",
                "bbox",
                "--no-categories",
                "--per-class",
                csv.to_str().unwrap(),
            ],
            "--per-class and --plot report categories",
        ),
        (
            vec!["--proposals", "--iou-type", "segm"],
            "cannot be used with",
        ),
    ] {
        let (_, stderr, json) = eval(&gt, &dt, &args, &out);
        assert!(
            json.is_none() && stderr.contains(want),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn test_writes_proposals_and_their_recall() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let out = seesaw(&[
        "data",
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--classes",
        "3",
        "--train-images",
        "4",
        "--val-images",
        "2",
        "--size",
        "64",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/demo_mask_rcnn_seesaw.toml");
    let sets: Vec<String> = [
        "model.num_classes=3".to_string(),
        format!("data.train_json={}", data.join("train.json").display()),
        format!("data.val_json={}", data.join("val.json").display()),
        format!("data.train_images={}", data.display()),
        format!("data.val_images={}", data.display()),
        "data.train_scales=[[64, 64]]".into(),
        "data.test_scale=[64, 64]".into(),
        "train.batch_size=2".into(),
        "train.iters=1".into(),
        "model.rpn.test.nms_pre=1000".into(),
        "model.rpn.test.max_per_img=1000".into(),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect();
    let work = d.join("work");
    let mut args = vec![
        "train",
        config.to_str().unwrap(),
        "--work-dir",
        work.to_str().unwrap(),
    ];
    args.extend(sets.iter().map(String::as_str));
    let out = seesaw(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let ckpt = work.join("latest.ckpt");
    let props = d.join("proposals.json");
    let stats = d.join("stats.json");
    let mut args = vec![
        "test",
        config.to_str().unwrap(),
        ckpt.to_str().unwrap(),
        "--out",
        props.to_str().unwrap(),
        "--proposals",
        "--eval",
        "--json",
        stats.to_str().unwrap(),
    ];
    args.extend(sets.iter().map(String::as_str));
    let out = seesaw(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("proposals on 2 images") && stdout.contains("COCO proposal recall"),
        "{stdout}"
    );
    let v = read_json(&stats);
    let keys: Vec<&String> = v[0]["stats"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "AR@100", "AR@300", "AR@1000", "ARs@1000", "ARm@1000", "ARl@1000"
        ]
    );
    // Class-agnostic boxes on the original image, up to the RPN's 1000 per image.
    let dets = seesaw_data::load_results(&props).unwrap();
    assert!(!dets.is_empty());
    let mut per_image = std::collections::HashMap::new();
    for det in &dets {
        assert!(det.segmentation.is_none() && det.category_id == 1);
        *per_image.entry(det.image_id).or_insert(0) += 1;
    }
    assert!(per_image.values().all(|&n| n <= 1000), "{per_image:?}");
    // The same recall from `seesaw eval --proposals` on the file written.
    let again = d.join("again.json");
    let (_, stderr, json) = eval(&data.join("val.json"), &props, &["--proposals"], &again);
    assert_eq!(
        json.unwrap_or_else(|| panic!("{stderr}"))["stats"],
        v[0]["stats"]
    );
    // Proposals and test-time augmentation do not go together.
    let mut args = vec![
        "test",
        config.to_str().unwrap(),
        ckpt.to_str().unwrap(),
        "--out",
        props.to_str().unwrap(),
        "--proposals",
        "--tta",
        "flip",
    ];
    args.extend(sets.iter().map(String::as_str));
    let out = seesaw(&args);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
}
