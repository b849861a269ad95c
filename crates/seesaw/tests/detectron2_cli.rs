//! A detectron2 Mask R-CNN from the CLI: `seesaw weights convert --from detectron2` turns the
//! fixture model (crates/seesaw-model/tests/fixtures/weights/make_detectron2_maskrcnn.py:
//! detectron2's R50-FPN layout with tiny widths and random weights, as its model zoo's pickle)
//! into a checkpoint of configs/mask_rcnn_r50_fpn_detectron2_lvis.toml at the fixture's size,
//! `seesaw test` writes the detections detectron2 makes (boxes, scores, categories, masks) and
//! evaluates them, `seesaw infer` draws them, and `weights export --layout detectron2` gives
//! back the file's own tensors.

use std::path::{Path, PathBuf};
mod common;
use common::{seesaw, text};
use seesaw_data::mask::decode;
use seesaw_model::weights::WeightsFile;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../seesaw-model/tests/fixtures/weights")
}

fn ok(args: &[&str]) -> String {
    let out = seesaw(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

fn floats(f: &WeightsFile, name: &str) -> Vec<f32> {
    f.data(name)
        .expect(name)
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32")
}

/// The two fixture images as a COCO set of categories 1-5, one box each (so that there is
/// something to evaluate against).
fn coco_set(d: &Path) -> PathBuf {
    let images = d.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..2 {
        let name = format!("d2_maskrcnn_img{i}.png");
        std::fs::copy(fixtures().join(&name), images.join(&name)).unwrap();
    }
    let json = serde_json::json!({
        "images": [
            {"id": 1, "file_name": "d2_maskrcnn_img0.png", "height": 96, "width": 128},
            {"id": 2, "file_name": "d2_maskrcnn_img1.png", "height": 96, "width": 128}
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 10, 40, 30], "area": 1200,
             "iscrowd": 0, "segmentation": [[10, 10, 50, 10, 50, 40, 10, 40]]},
            {"id": 2, "image_id": 2, "category_id": 5, "bbox": [60, 20, 30, 50], "area": 1500,
             "iscrowd": 0, "segmentation": [[60, 20, 90, 20, 90, 70, 60, 70]]}
        ],
        "categories": (1..=5).map(|i| serde_json::json!({"id": i, "name": format!("c{i}")}))
            .collect::<Vec<_>>()
    });
    let file = d.join("val.json");
    std::fs::write(&file, json.to_string()).unwrap();
    file
}

#[test]
fn a_detectron2_mask_rcnn_converts_tests_infers_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let val = coco_set(d);
    let arch = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/mask_rcnn_r50_fpn_detectron2_lvis.toml")
        .display()
        .to_string();
    let images = d.join("images").display().to_string();
    let val = val.display().to_string();
    // The fixture's widths on the recipe's conventions.
    let keys = [
        "model.num_classes=5".to_string(),
        "model.backbone.depth=0".into(),
        "model.backbone.block=\"bottleneck\"".into(),
        "model.backbone.layers=[1, 1, 1, 1]".into(),
        "model.backbone.base_channels=8".into(),
        "model.neck.out_channels=16".into(),
        "model.bbox_head.fc_channels=32".into(),
        "model.mask_head.conv_channels=16".into(),
        "data.test_scale=[96, 128]".into(),
        "model.roi.test.score_thr=0.05".into(),
        "model.roi.test.max_per_img=100".into(),
        format!("data.train_json=\"{val}\""),
        format!("data.val_json=\"{val}\""),
        format!("data.train_images=\"{images}\""),
        format!("data.val_images=\"{images}\""),
    ];
    let mut sets = Vec::new();
    for k in &keys {
        sets.extend(["--set".to_string(), k.clone()]);
    }
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|s| s.to_string())
            .chain(sets.iter().cloned())
            .collect()
    };
    let ckpt = d.join("d2.ckpt").display().to_string();
    let model = fixtures()
        .join("d2_maskrcnn_tiny.pkl")
        .display()
        .to_string();
    let args = with(&[
        "weights",
        "convert",
        &model,
        "--from",
        "detectron2",
        "--arch",
        &arch,
        "--out",
        &ckpt,
    ]);
    let out = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("whole detector"), "{out}");
    let results = d.join("results.json").display().to_string();
    let args = with(&["test", &arch, &ckpt, "--out", &results, "--eval"]);
    let out = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("Average Precision"), "{out}");
    let dets = seesaw_data::load_results(Path::new(&results)).expect("results");
    let want = WeightsFile::open(&fixtures().join("d2_maskrcnn_tiny_out.safetensors")).unwrap();
    for (i, image_id) in [1u64, 2].into_iter().enumerate() {
        let ours: Vec<_> = dets.iter().filter(|r| r.image_id == image_id).collect();
        let boxes = floats(&want, &format!("det_boxes_{i}"));
        let scores = floats(&want, &format!("det_scores_{i}"));
        let labels = want
            .data(&format!("det_labels_{i}"))
            .unwrap()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        let masks = floats(&want, &format!("det_masks_{i}"));
        assert_eq!(ours.len(), scores.len(), "image {image_id}: detections");
        for (k, r) in ours.iter().enumerate() {
            let b = r.bbox.expect("bbox");
            let tb = &boxes[4 * k..4 * k + 4];
            let expect = [tb[0], tb[1], tb[2] - tb[0], tb[3] - tb[1]];
            for (g, w) in b.iter().zip(expect) {
                assert!(
                    (*g as f32 - w).abs() < 1e-3,
                    "image {image_id} det {k}: {b:?}"
                );
            }
            assert!((r.score as f32 - scores[k]).abs() < 1e-4, "score {k}");
            assert_eq!(r.category_id as i64, labels[k] + 1, "category {k}");
            let bitmap = decode(r.segmentation.as_ref().expect("mask"), 96, 128).expect("rle");
            let want = &masks[k * 96 * 128..(k + 1) * 96 * 128];
            for (p, (&m, &w)) in bitmap.data.iter().zip(want).enumerate() {
                assert_eq!(f32::from(m), w, "image {image_id} det {k} pixel {p}");
            }
        }
    }
    let drawn = d.join("drawn");
    let image = d.join("images/d2_maskrcnn_img0.png").display().to_string();
    let drawn_dir = drawn.display().to_string();
    ok(&["infer", &ckpt, &image, "--out-dir", &drawn_dir]);
    assert!(std::fs::read_dir(&drawn).unwrap().count() > 0, "infer drew");
    // Back to detectron2's names and BGR stem: the pickle's own arrays.
    let back = d.join("back.safetensors").display().to_string();
    ok(&[
        "weights",
        "export",
        &ckpt,
        "--layout",
        "detectron2",
        "--out",
        &back,
    ]);
    let exported = WeightsFile::open(Path::new(&back)).unwrap();
    let source = WeightsFile::open(&fixtures().join("d2_maskrcnn_tiny.pkl")).unwrap();
    let mut names: Vec<String> = source.infos().into_iter().map(|t| t.name).collect();
    names.sort();
    let mut got: Vec<String> = exported
        .infos()
        .into_iter()
        .map(|t| t.name)
        .filter(|n| !n.ends_with("num_batches_tracked"))
        .collect();
    got.sort();
    assert_eq!(got, names);
    for n in &names {
        assert_eq!(floats(&exported, n), floats(&source, n), "{n}");
    }
}
