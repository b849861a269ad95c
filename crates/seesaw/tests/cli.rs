//! The `seesaw` binary end to end: what a user types, what it prints, what it writes.

use std::path::{Path, PathBuf};
mod common;
use common::{seesaw, text};

fn data_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../seesaw-data/tests/fixtures")
}

#[test]
fn stats_on_every_bad_file_fails_with_its_message_and_no_panic() {
    let table = std::fs::read_to_string(data_fixtures().join("expected.tsv")).unwrap();
    for line in table.lines().filter(|l| !l.is_empty()) {
        let (name, expected) = line.split_once('\t').unwrap();
        let path = data_fixtures().join("bad").join(name);
        let out = seesaw(&["data", "stats", path.to_str().unwrap()]);
        let err = text(&out.stderr);
        if name.starts_with("lvis_") {
            // An LVIS file without its category lists is described, with the error as a warning.
            assert!(out.status.success(), "{name}: {err}");
            assert!(
                err.contains("WARN") && err.contains(&format!("{}: {expected}", path.display())),
                "{name}: stderr lacks its warning:\n{err}"
            );
            continue;
        }
        assert!(!out.status.success(), "{name}: exit status 0");
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(&format!("{}: {expected}", path.display())),
            "{name}: stderr lacks its message:\n{err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{name}: {err}"
        );
    }
}

#[test]
fn synth_twice_with_one_seed_gives_identical_files() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [a.path(), b.path()] {
        let out = seesaw(&[
            "data",
            "synth",
            "--out",
            dir.to_str().unwrap(),
            "--classes",
            "10",
            "--train-images",
            "40",
            "--val-images",
            "8",
            "--size",
            "64",
            "--seed",
            "3",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("wrote 40 train + 8 val images"));
    }
    let mut files = 0;
    for sub in ["", "train", "val"] {
        for entry in std::fs::read_dir(a.path().join(sub)).unwrap() {
            let p = entry.unwrap().path();
            if p.is_file() {
                let rel = p.strip_prefix(a.path()).unwrap();
                let other = std::fs::read(b.path().join(rel)).unwrap();
                assert!(
                    std::fs::read(&p).unwrap() == other,
                    "{} differs",
                    rel.display()
                );
                files += 1;
            }
        }
    }
    assert_eq!(files, 2 + 40 + 8);
}

#[test]
fn stats_plot_and_show_draw_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = seesaw(&[
        "data",
        "synth",
        "--out",
        d.to_str().unwrap(),
        "--classes",
        "12",
        "--train-images",
        "60",
        "--size",
        "64",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let train = d.join("train.json");
    let plot = d.join("plot.png");
    let out = seesaw(&[
        "data",
        "stats",
        train.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("LVIS format, 60 images"), "{stdout}");
    for g in [
        "rare (r)",
        "common (c)",
        "frequent (f)",
        "instances per image: mean",
    ] {
        assert!(stdout.contains(g), "{stdout}");
    }
    assert_eq!(image::image_dimensions(&plot).unwrap(), (1000, 560));

    let pic = d.join("show.png");
    let out = seesaw(&[
        "data",
        "show",
        train.to_str().unwrap(),
        "--image-id",
        "1",
        "--out",
        pic.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // 64 px images are enlarged 8x so that names are readable.
    assert_eq!(image::image_dimensions(&pic).unwrap(), (512, 512));

    let out = seesaw(&[
        "data",
        "show",
        train.to_str().unwrap(),
        "--image-id",
        "999",
        "--out",
        pic.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no image with id 999"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn stats_reads_a_reference_coco_file() {
    let gt = data_fixtures().join("eval/tiny/coco_gt.json");
    let out = seesaw(&["data", "stats", gt.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("COCO format, 20 images"),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains("groups counted from this file's images per class"));
}

#[test]
fn quick_demo_trains_both_losses_and_writes_summary_plots_and_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("demo");
    let out = seesaw(&[
        "demo",
        "--quick",
        "--iters",
        "3",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("wrote 200 train +"), "{stdout}");
    assert!(out_dir.join("data/train.json").is_file());
    assert!(out_dir.join("train_classes.png").is_file());
    assert_eq!(
        std::fs::read_dir(out_dir.join("samples")).unwrap().count(),
        4
    );
    // One table row per loss, and summary.json with the stats of `seesaw eval --json`.
    assert!(
        stdout.contains("\nce     |") && stdout.contains("\nseesaw |"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["loss"], "ce");
    assert_eq!(runs[1]["loss"], "seesaw");
    assert_eq!(runs[1]["detector"], "mask_rcnn");
    for r in runs {
        for iou in ["bbox", "segm"] {
            for k in ["AP", "APr", "APc", "APf", "AR@300"] {
                assert!(r[iou][k].is_number(), "{iou} {k}: {r}");
            }
        }
    }
    assert!(out_dir.join("ap_vs_frequency_bbox.png").is_file());
    assert!(out_dir.join("ap_vs_frequency_segm.png").is_file());
    assert_eq!(
        std::fs::read_dir(out_dir.join("predictions"))
            .unwrap()
            .count(),
        8
    );
    assert!(out_dir.join("work/seesaw/latest.ckpt").is_file());
    assert!(out_dir.join("work/ce/metrics.jsonl").is_file());
    // `seesaw plot` draws both runs' curves, a panel per key.
    let (ce, ss) = (out_dir.join("work/ce"), out_dir.join("work/seesaw"));
    let png = out_dir.join("curves.png");
    let out = seesaw(&[
        "plot",
        ce.to_str().unwrap(),
        ss.to_str().unwrap(),
        "--keys",
        "loss,cls,lr",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (w, h) = image::image_dimensions(&png).expect("a PNG");
    assert_eq!((w, h), (1000, 3 * 330 + 40));
    let out = seesaw(&["plot", ce.to_str().unwrap(), "--keys", "bogus"]);
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("rpn_cls"), "{err}");
    let out = seesaw(&["plot", ce.to_str().unwrap(), "--legend", "a,b"]);
    assert!(text(&out.stderr).contains("--legend names 2 runs but 1"));
    // The confusion matrix of the Seesaw run's results: every class in the CSV.
    let cm = out_dir.join("cm");
    let out = seesaw(&[
        "confusion-matrix",
        "--gt",
        out_dir.join("data/val.json").to_str().unwrap(),
        "--results",
        ss.join("results.json").to_str().unwrap(),
        "--out-dir",
        cm.to_str().unwrap(),
        "--score-thr",
        "0.0",
        "--top-k",
        "10",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = std::fs::read_to_string(cm.join("confusion_matrix.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 40 + 1,
        "a header, 40 classes and background"
    );
    assert!(csv.lines().all(|l| l.split(',').count() == 42), "{csv}");
    assert!(cm.join("confusion_matrix.png").is_file());
}

#[test]
fn train_test_and_infer_from_the_cli() {
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
        "train.iters=2".into(),
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
    assert!(
        text(&out.stdout).contains("trained 2 iterations"),
        "{}",
        text(&out.stdout)
    );
    let resolved = std::fs::read_to_string(work.join("config.toml")).unwrap();
    assert!(resolved.contains("num_classes = 3"), "{resolved}");
    assert_eq!(
        std::fs::read_to_string(work.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );

    let ckpt = work.join("latest.ckpt");
    let results = d.join("results.json");
    let stats = d.join("stats.json");
    let mut args = vec![
        "test",
        config.to_str().unwrap(),
        ckpt.to_str().unwrap(),
        "--out",
        results.to_str().unwrap(),
        "--eval",
        "--json",
        stats.to_str().unwrap(),
    ];
    args.extend(sets.iter().map(String::as_str));
    let out = seesaw(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("LVIS bbox evaluation") && stdout.contains("LVIS segm evaluation"),
        "{stdout}"
    );
    let dets = seesaw_data::load_results(&results).unwrap();
    assert!(
        dets.iter()
            .all(|d| d.segmentation.is_some() && d.score > 1e-4)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(v[1]["iou_type"], "segm");

    let mut args = vec![
        "test",
        config.to_str().unwrap(),
        ckpt.to_str().unwrap(),
        "--out",
        results.to_str().unwrap(),
        "--tta",
        "flip,scales=64,80",
    ];
    args.extend(sets.iter().map(String::as_str));
    let out = seesaw(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(seesaw_data::load_results(&results).is_ok());

    let pics = d.join("pics");
    let image = data
        .join("val")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = seesaw(&[
        "infer",
        ckpt.to_str().unwrap(),
        image.to_str().unwrap(),
        "--out-dir",
        pics.to_str().unwrap(),
        "--score-thr",
        "0",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let png = pics.join(format!(
        "{}.png",
        image.file_stem().unwrap().to_string_lossy()
    ));
    assert!(image::open(&png).is_ok(), "{}", png.display());
    // A photo cut short is refused, naming it; one with an EXIF orientation is drawn turned.
    let images = data_fixtures().join("images");
    let cut = images.join("no_eoi.jpg");
    let out = seesaw(&[
        "infer",
        ckpt.to_str().unwrap(),
        cut.to_str().unwrap(),
        "--out-dir",
        pics.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}: the JPEG file is truncated", cut.display())),
        "{err}"
    );
    let out = seesaw(&[
        "infer",
        ckpt.to_str().unwrap(),
        images.join("orient6.png").to_str().unwrap(),
        "--out-dir",
        pics.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (w, h) = image::image_dimensions(pics.join("orient6.png")).unwrap();
    assert!(
        h > w,
        "drawn {w}x{h}: the 40x30 pixels turned by their tag are 30x40"
    );

    // Resuming a finished run trains nothing more; a longer schedule continues it.
    let mut args = vec![
        "train",
        config.to_str().unwrap(),
        "--work-dir",
        work.to_str().unwrap(),
        "--resume",
    ];
    args.extend(sets.iter().map(String::as_str));
    args.extend(["--set", "train.iters=3"]);
    let out = seesaw(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("trained 1 iterations"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn rfs_reports_epoch_size_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = seesaw(&[
        "data",
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--train-images",
        "200",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let train = data.join("train.json");
    let out = seesaw(&["data", "rfs", train.to_str().unwrap(), "--thr", "0.1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("200 images -> epoch of"), "{stdout}");
    for g in ["rare", "common", "frequent"] {
        assert!(stdout.contains(g), "{stdout}");
    }
    let out = seesaw(&[
        "bench",
        "data",
        "--json",
        train.to_str().unwrap(),
        "--images",
        data.to_str().unwrap(),
        "--batches",
        "2",
        "--batch",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("4 training samples"),
        "{}",
        text(&out.stdout)
    );
    let out = seesaw(&["data", "rfs", train.to_str().unwrap(), "--thr", "0"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn rfs_drops_unannotated_images_before_taking_f() {
    // 10 images, 4 without annotations; class 1 on image 1, class 2 on 2-3, class 3 on 4-6.
    // mmdetection and detectron2 drop the 4 first: at t = 0.3 the ceil epoch is 7.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("train.json");
    let images: Vec<String> = (1..=10)
        .map(|i| format!(r#"{{"id": {i}, "width": 10, "height": 10, "file_name": "{i}.png"}}"#))
        .collect();
    let anns: Vec<String> = [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 3)]
        .iter()
        .enumerate()
        .map(|(k, (im, c))| {
            format!(
                r#"{{"id": {}, "image_id": {im}, "category_id": {c}, "bbox": [0, 0, 5, 5], "area": 25}}"#,
                k + 1
            )
        })
        .collect();
    let cats: Vec<String> = (1..=3)
        .map(|c| format!(r#"{{"id": {c}, "name": "c{c}"}}"#))
        .collect();
    std::fs::write(
        &file,
        format!(
            r#"{{"images": [{}], "annotations": [{}], "categories": [{}]}}"#,
            images.join(","),
            anns.join(","),
            cats.join(",")
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let out = seesaw(&["data", "rfs", f, "--thr", "0.3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "6 of 10 images (data.filter_empty_gt dropped 4 for having no annotations) -> epoch of 7 (ceil"
        ),
        "{stdout}"
    );
    // Kept, as mmdetection with filter_empty_gt=False: a background class of 4 images.
    let out = seesaw(&[
        "data",
        "rfs",
        f,
        "--thr",
        "0.3",
        "--filter-empty-gt",
        "false",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("10 images -> epoch of 13 (ceil"),
        "{stdout}"
    );
    assert!(
        stdout.contains("4 images without annotations kept as a background class"),
        "{stdout}"
    );
}

#[test]
fn bad_configs_and_checkpoints_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[train]\nlearning_rate = 0.1\n").unwrap();
    let out = seesaw(&["train", bad.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("unknown key `train.learning_rate`"),
        "{err}"
    );
    assert!(err.contains("train.lr"), "valid keys listed: {err}");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/demo_mask_rcnn_ce.toml");
    let out = seesaw(&[
        "train",
        config.to_str().unwrap(),
        "--set",
        "train.schedule=linear",
    ]);
    let err = text(&out.stderr);
    assert!(err.contains("train.schedule"), "{err}");
    let garbage = dir.path().join("model.ckpt");
    std::fs::write(&garbage, b"not a checkpoint at all").unwrap();
    let out = seesaw(&[
        "infer",
        garbage.to_str().unwrap(),
        "x.png",
        "--out-dir",
        "/tmp",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("model.ckpt: not a Seesaw checkpoint"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn eval_writes_the_official_stats_and_names_bad_results() {
    let dir = tempfile::tempdir().unwrap();
    let case = data_fixtures().join("eval/edge");
    let gt = case.join("lvis_gt.json");
    let json = dir.path().join("stats.json");
    let csv = dir.path().join("per_class.csv");
    let plot = dir.path().join("ap.png");
    let out = seesaw(&[
        "eval",
        "--gt",
        gt.to_str().unwrap(),
        "--results",
        case.join("lvis_dt.json").to_str().unwrap(),
        "--iou-type",
        "segm",
        "--json",
        json.to_str().unwrap(),
        "--per-class",
        csv.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("catIds=  r] = "),
        "{}",
        text(&out.stdout)
    );
    let ours: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let official: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.join("lvis-api_segm.json")).unwrap()).unwrap();
    assert_eq!(ours["format"], "lvis");
    assert_eq!(ours["stats"], official["stats"]);
    assert!(
        std::fs::read_to_string(&csv)
            .unwrap()
            .starts_with("category_id,name,frequency,train_images,ap\n")
    );
    assert!(plot.is_file());

    // Results naming an image the ground truth lacks: file, index and field in one line.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"image_id": 424242, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]"#,
    )
    .unwrap();
    let out = seesaw(&[
        "eval",
        "--gt",
        gt.to_str().unwrap(),
        "--results",
        bad.to_str().unwrap(),
        "--iou-type",
        "bbox",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "{}: [0].image_id: image id 424242 is not in the ground truth",
            bad.display()
        )),
        "{}",
        text(&out.stderr)
    );

    // An empty result list is valid: AP 0 or -1, as the official tools give.
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "[]").unwrap();
    let out = seesaw(&[
        "eval",
        "--gt",
        gt.to_str().unwrap(),
        "--results",
        empty.to_str().unwrap(),
        "--iou-type",
        "bbox",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for (k, x) in v["stats"].as_object().unwrap() {
        let x = x.as_f64().unwrap();
        assert!(x == 0.0 || x == -1.0, "{k} = {x}");
    }
}

#[test]
fn eval_boundary_ap_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let case = data_fixtures().join("eval/tiny");
    let json = dir.path().join("boundary.json");
    let args = |extra: &[&str]| {
        let mut v = vec![
            "eval".to_string(),
            "--gt".into(),
            case.join("coco_gt.json").to_str().unwrap().into(),
            "--results".into(),
            case.join("coco_dt.json").to_str().unwrap().into(),
            "--iou-type".into(),
            "boundary".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        seesaw(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = run(&["--json", json.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("COCO boundary evaluation:"),
        "{}",
        text(&out.stdout)
    );
    let ours: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let official: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.join("boundary_pycocotools.json")).unwrap())
            .unwrap();
    assert_eq!(ours["iou_type"], "boundary");
    assert_eq!(ours["stats"], official["stats"]);

    // A wider boundary is closer to the whole mask: AP moves, and differs from the default.
    let out = run(&["--dilation-ratio", "0.2", "--json", json.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wide: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_ne!(wide["stats"]["AP"], official["stats"]["AP"]);

    for (extra, want) in [
        (
            &["--dilation-ratio", "0"][..],
            "dilation ratio must be a positive number",
        ),
        (
            &["--fixed-ap"][..],
            "--fixed-ap is computed for --iou-type bbox and segm",
        ),
    ] {
        let out = run(extra);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        assert!(text(&out.stderr).contains(want), "{}", text(&out.stderr));
        assert!(!text(&out.stderr).contains("panicked"));
    }
}

/// The `| loss | rare | common | frequent | all |` rows of `bench long-tail-classify`.
fn accuracy_rows(stdout: &str) -> std::collections::HashMap<String, Vec<f64>> {
    stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| loss"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let values = cells[1..]
                .iter()
                .map(|v| v.parse::<f64>().unwrap())
                .collect();
            (cells[0].to_string(), values)
        })
        .collect()
}

#[test]
fn long_tail_classify_shows_seesaw_lifting_rare_classes() {
    let out = seesaw(&[
        "bench",
        "long-tail-classify",
        "--iters",
        "300",
        "--losses",
        "ce,seesaw",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows = accuracy_rows(&text(&out.stdout));
    let (ce, ss) = (&rows["ce"], &rows["seesaw"]);
    assert!(
        ss[0] > ce[0] + 5.0,
        "rare: seesaw {} vs ce {}",
        ss[0],
        ce[0]
    );
    assert!(ss[3] > ce[3], "all: seesaw {} vs ce {}", ss[3], ce[3]);

    let out = seesaw(&["bench", "long-tail-classify", "--losses", "ce,nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown loss \"nope\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bench_loss_prints_one_row_per_class_count() {
    let out = seesaw(&[
        "bench",
        "loss",
        "--iters",
        "2",
        "--rows",
        "64",
        "--classes",
        "5,9",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("| 64 | 5 |") && stdout.contains("| 64 | 9 |"),
        "{stdout}"
    );
}

#[test]
fn a_missing_file_names_itself_and_its_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no_such.json");
    let m = missing.to_str().unwrap();
    // A data file (seesaw-data's error) and a config (seesaw-engine's error).
    for args in [vec!["data", "stats", m], vec!["train", m]] {
        let out = seesaw(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(m), "{args:?}: the file is not named:\n{err}");
        // The OS's message for ENOENT (Linux, where CI runs).
        assert_eq!(
            err.matches("No such file or directory").count(),
            1,
            "{args:?}: the OS error should appear once:\n{err}"
        );
    }
}
