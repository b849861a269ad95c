//! torchvision and detectron2 Mask R-CNNs from the CLI: `seesaw weights convert --from
//! torchvision | detectron2` turns the fixture models (crates/seesaw-model/tests/fixtures/
//! weights/make_torchvision_maskrcnn.py: torchvision's own MaskRCNN; make_detectron2_maskrcnn.py:
//! detectron2's R50-FPN layout as its model zoo's pickle; tiny widths, random weights) into
//! checkpoints of configs/mask_rcnn_r50_fpn_torchvision_coco.toml and
//! mask_rcnn_r50_fpn_detectron2_lvis.toml at the fixtures' size; `seesaw test` writes the
//! detections the reference made (boxes, scores, categories, masks) and evaluates them, `seesaw
//! infer` draws them, and `weights export --layout detectron2` gives back the pickle's arrays.

use std::path::{Path, PathBuf};
mod common;
use common::{seesaw, text};
use seesaw_data::Detection;
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

/// A converted fixture model run by `seesaw test --eval` on its two images.
struct Run {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    ckpt: String,
    results: Vec<Detection>,
    /// The reference's outputs.
    want: WeightsFile,
}

/// Converts fixture `model` (`--from from`, onto `config` with the fixture's widths and
/// `extra` keys) and tests it on its images `{stem}_img0/1.png`, made a COCO set of the
/// `categories` (of ids 1-5) with one box each (so that there is something to evaluate).
fn convert_and_test(
    (stem, model, from): (&str, &str, &str),
    config: &str,
    extra: &[&str],
    categories: &[u64],
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let images = d.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..2 {
        let name = format!("{stem}_img{i}.png");
        std::fs::copy(fixtures().join(&name), images.join(&name)).unwrap();
    }
    let json = serde_json::json!({
        "images": (0..2).map(|i| serde_json::json!({"id": i + 1,
            "file_name": format!("{stem}_img{i}.png"), "height": 96, "width": 128}))
            .collect::<Vec<_>>(),
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 10, 40, 30], "area": 1200,
             "iscrowd": 0, "segmentation": [[10, 10, 50, 10, 50, 40, 10, 40]]},
            {"id": 2, "image_id": 2, "category_id": 5, "bbox": [60, 20, 30, 50], "area": 1500,
             "iscrowd": 0, "segmentation": [[60, 20, 90, 20, 90, 70, 60, 70]]}
        ],
        "categories": categories.iter()
            .map(|i| serde_json::json!({"id": i, "name": format!("c{i}")}))
            .collect::<Vec<_>>()
    });
    let val = d.join("val.json");
    std::fs::write(&val, json.to_string()).unwrap();
    let arch = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs")
        .join(config)
        .display()
        .to_string();
    let (val, images) = (val.display(), images.display());
    // The fixtures' widths on the recipes' conventions.
    let mut keys: Vec<String> = [
        "model.num_classes=5",
        "model.backbone.depth=0",
        "model.backbone.layers=[1, 1, 1, 1]",
        "model.backbone.base_channels=8",
        "model.neck.out_channels=16",
        "model.bbox_head.fc_channels=32",
        "model.mask_head.conv_channels=16",
        "data.test_scale=[96, 128]",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    keys.extend([
        format!("data.train_json=\"{val}\""),
        format!("data.val_json=\"{val}\""),
        format!("data.train_images=\"{images}\""),
        format!("data.val_images=\"{images}\""),
    ]);
    let sets: Vec<String> = keys
        .iter()
        .flat_map(|k| ["--set".to_string(), k.clone()])
        .collect();
    let with = |args: &[&str]| -> String {
        let all: Vec<&str> = args
            .iter()
            .copied()
            .chain(sets.iter().map(String::as_str))
            .collect();
        ok(&all)
    };
    let ckpt = d.join("model.ckpt").display().to_string();
    let file = fixtures().join(model).display().to_string();
    let out = with(&[
        "weights", "convert", &file, "--from", from, "--arch", &arch, "--out", &ckpt,
    ]);
    assert!(out.contains("whole detector"), "{out}");
    let results = d.join("results.json").display().to_string();
    let out = with(&["test", &arch, &ckpt, "--out", &results, "--eval"]);
    assert!(out.contains("Average Precision"), "{out}");
    let image = d
        .join(format!("images/{stem}_img0.png"))
        .display()
        .to_string();
    let drawn = d.join("drawn").display().to_string();
    ok(&["infer", &ckpt, &image, "--out-dir", &drawn]);
    assert!(std::fs::read_dir(&drawn).unwrap().count() > 0, "infer drew");
    let out_file = format!(
        "{}_out.safetensors",
        model.trim_end_matches(".pth").trim_end_matches(".pkl")
    );
    Run {
        results: seesaw_data::load_results(Path::new(&results)).expect("results"),
        want: WeightsFile::open(&fixtures().join(out_file)).unwrap(),
        ckpt,
        dir: d,
        _dir: dir,
    }
}

/// The run's results are the reference's detections of the `categories` (of ids 1-5): box,
/// score, category (the reference's label plus `label_offset`) and mask (`mask_ok(ours,
/// reference pixel)`).
fn check_results(
    run: &Run,
    label_offset: i64,
    categories: &[u64],
    mask_ok: impl Fn(u8, f32) -> bool,
) {
    let want = &run.want;
    for (i, image_id) in [1u64, 2].into_iter().enumerate() {
        let ours: Vec<_> = run
            .results
            .iter()
            .filter(|r| r.image_id == image_id)
            .collect();
        let boxes = floats(want, &format!("det_boxes_{i}"));
        let scores = floats(want, &format!("det_scores_{i}"));
        let labels = floats(want, &format!("det_labels_{i}"));
        let masks = floats(want, &format!("det_masks_{i}"));
        let kept: Vec<usize> = (0..scores.len())
            .filter(|&k| categories.contains(&((labels[k] as i64 + label_offset) as u64)))
            .collect();
        assert_eq!(ours.len(), kept.len(), "image {image_id}: detections");
        for (r, &k) in ours.iter().zip(&kept) {
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
            assert_eq!(
                r.category_id as i64,
                labels[k] as i64 + label_offset,
                "category {k}"
            );
            let bitmap = decode(r.segmentation.as_ref().expect("mask"), 96, 128).expect("rle");
            let reference = &masks[k * 96 * 128..(k + 1) * 96 * 128];
            for (p, (&m, &w)) in bitmap.data.iter().zip(reference).enumerate() {
                assert!(
                    mask_ok(m, w),
                    "image {image_id} det {k} pixel {p}: {m} vs {w}"
                );
            }
        }
    }
}

#[test]
fn a_torchvision_mask_rcnn_converts_tests_and_infers_as_torchvision() {
    // All five categories annotated, then without id 4: as COCO's annotations lack some of
    // a torchvision model's ids, whose detections are then dropped.
    for categories in [&[1u64, 2, 3, 4, 5][..], &[1, 2, 3, 5]] {
        let run = convert_and_test(
            ("tv_maskrcnn", "tv_maskrcnn_tiny.pth", "torchvision"),
            "mask_rcnn_r50_fpn_torchvision_coco.toml",
            &["model.backbone.block=\"basic\""],
            categories,
        );
        // torchvision's labels are the category ids; its soft masks binarised at > 0.5 (a
        // pixel within float rounding of 0.5 may go either way).
        check_results(&run, 0, categories, |m, s| {
            (s - 0.5).abs() <= 1e-4 || (m == 1) == (s > 0.5)
        });
    }
}

#[test]
fn a_detectron2_mask_rcnn_converts_tests_infers_and_exports() {
    let all = [1u64, 2, 3, 4, 5];
    let run = convert_and_test(
        ("d2_maskrcnn", "d2_maskrcnn_tiny.pkl", "detectron2"),
        "mask_rcnn_r50_fpn_detectron2_lvis.toml",
        &[
            "model.backbone.block=\"bottleneck\"",
            "model.roi.test.score_thr=0.05",
            "model.roi.test.max_per_img=100",
        ],
        &all,
    );
    // detectron2's classes are 0-based (category id - 1); its masks are binary.
    check_results(&run, 1, &all, |m, w| f32::from(m) == w);
    // Back to detectron2's names and BGR stem: the pickle's own arrays.
    let back = run.dir.join("back.safetensors").display().to_string();
    ok(&[
        "weights",
        "export",
        &run.ckpt,
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

#[test]
fn the_wrong_from_is_named_and_an_empty_load_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.ckpt").display().to_string();
    let arch = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/mask_rcnn_r50_fpn_torchvision_coco.toml")
        .display()
        .to_string();
    let fail = |file: &str, from: &str, partial: bool| -> String {
        let file = fixtures().join(file).display().to_string();
        let mut args = vec!["weights", "convert", &file, "--from", from, "--arch", &arch];
        args.extend(["--out", &out]);
        if partial {
            args.push("--allow-partial");
        }
        let o = seesaw(&args);
        assert!(!o.status.success(), "{args:?} should fail");
        let err = text(&o.stderr);
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let err = fail("tv_maskrcnn_tiny.pth", "mmdet", false);
    assert!(
        err.contains("read as mmdet") && err.contains("try --from torchvision"),
        "{err}"
    );
    let err = fail("d2_maskrcnn_tiny.pkl", "mmdet", true);
    assert!(
        err.contains("none of its tensors fits the model read as mmdet")
            && err.contains("try --from detectron2"),
        "{err}"
    );
    assert!(!Path::new(&out).exists(), "no checkpoint written");
}
