//! `seesaw weights ...` end to end on the import fixtures (made by
//! crates/seesaw-model/tests/fixtures/weights/make_weights.py): inspect, convert an
//! mmdetection checkpoint and run it, export it back under mmdetection's names, start
//! training from a torchvision backbone or a converted model, and refuse what does not fit.

use std::path::Path;
mod common;
use common::{seesaw, text};

fn weights(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../seesaw-model/tests/fixtures/weights")
        .join(name)
        .display()
        .to_string()
}

fn arch() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/small_mask_rcnn_weights.toml")
        .display()
        .to_string()
}

fn ok(args: &[&str]) -> String {
    let out = seesaw(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

fn fails(args: &[&str]) -> String {
    let out = seesaw(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn names(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).expect("inspect --json");
    let mut n: Vec<String> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_string())
        .filter(|n| !n.ends_with("num_batches_tracked"))
        .collect();
    n.sort();
    n
}

/// Synthetic data with 5 classes, and the `--set`s pointing the fixture config at it.
fn data(d: &Path) -> Vec<String> {
    let data = d.join("data");
    ok(&[
        "data",
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--classes",
        "5",
        "--train-images",
        "4",
        "--val-images",
        "2",
        "--size",
        "64",
    ]);
    [
        format!("data.train_json={}", data.join("train.json").display()),
        format!("data.val_json={}", data.join("val.json").display()),
        format!("data.train_images={}", data.display()),
        format!("data.val_images={}", data.display()),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

/// `seesaw train ARCH --work-dir WORK --quiet --set SET` plus `sets`.
fn train<'a>(arch: &'a str, work: &'a Path, set: &'a str, sets: &'a [String]) -> Vec<&'a str> {
    let args = [
        "train",
        arch,
        "--work-dir",
        work.to_str().unwrap(),
        "--quiet",
        "--set",
        set,
    ];
    with(&args, sets)
}

fn with<'a>(args: &[&'a str], sets: &'a [String]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(sets.iter().map(String::as_str));
    v
}

#[test]
fn convert_run_and_export_an_mmdet_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sets = data(d);
    let arch = arch();
    let pth = weights("mmdet_mask_rcnn.pth");

    let table = ok(&["weights", "inspect", &pth]);
    assert!(
        table.contains("roi_head.bbox_head.fc_cls.weight"),
        "{table}"
    );
    assert!(table.contains("[7, 32]"), "Seesaw's C + 2 rows: {table}");
    assert!(table.contains("(under `state_dict`)"), "{table}");
    assert!(table.contains("mmdetection meta: 5 classes"), "{table}");

    let ckpt = d.join("converted.ckpt");
    let ckpt_s = ckpt.to_str().unwrap();
    let out = ok(&with(
        &[
            "weights", "convert", &pth, "--from", "mmdet", "--arch", &arch, "--out", ckpt_s,
        ],
        &sets,
    ));
    assert!(
        out.contains("tensors loaded into mask_rcnn (whole detector)"),
        "{out}"
    );

    // The converted model tests and draws like a trained one.
    let results = d.join("results.json");
    ok(&with(
        &[
            "test",
            &arch,
            ckpt_s,
            "--out",
            results.to_str().unwrap(),
            "--eval",
        ],
        &sets,
    ));
    assert!(seesaw_data::load_results(&results).is_ok());
    let image = d
        .join("data/val")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let pics = d.join("pics");
    ok(&[
        "infer",
        ckpt_s,
        image.to_str().unwrap(),
        "--out-dir",
        pics.to_str().unwrap(),
    ]);

    // Exported under mmdetection's names: exactly the names we read.
    let st = d.join("exported.safetensors");
    let out = ok(&["weights", "export", ckpt_s, "--out", st.to_str().unwrap()]);
    assert!(out.contains("Mmdet names"), "{out}");
    let ours = names(&ok(&["weights", "inspect", st.to_str().unwrap(), "--json"]));
    let theirs = names(&ok(&["weights", "inspect", &pth, "--json"]));
    assert_eq!(ours, theirs);
    let bb = d.join("backbone.safetensors");
    ok(&[
        "weights",
        "export",
        ckpt_s,
        "--out",
        bb.to_str().unwrap(),
        "--layout",
        "torchvision",
    ]);
    let bb_names = names(&ok(&["weights", "inspect", bb.to_str().unwrap(), "--json"]));
    assert!(
        bb_names.contains(&"layer1.0.downsample.0.weight".to_string()),
        "{bb_names:?}"
    );
    assert!(fails(&["weights", "export", ckpt_s, "--out", "x.pth"]).contains("*.safetensors"));

    // Fine-tuning from the converted checkpoint (mmdetection's load_from).
    let load_from = format!("train.load_from={ckpt_s}");
    let work = d.join("work");
    let out = ok(&train(&arch, &work, &load_from, &sets));
    assert!(out.contains("weights from"), "{out}");
}

#[test]
fn torchvision_backbones_convert_and_initialise_training() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sets = data(d);
    let arch = arch();
    let out = ok(&with(
        &[
            "weights",
            "convert",
            &weights("tv_resnet.pth"),
            "--from",
            "torchvision",
            "--arch",
            &arch,
            "--out",
            d.join("bb.ckpt").to_str().unwrap(),
        ],
        &sets,
    ));
    assert!(out.contains("backbone only"), "{out}");
    let init = format!("model.backbone.init={}", weights("tv_resnet.safetensors"));
    let work = d.join("work");
    let out = ok(&train(&arch, &work, &init, &sets));
    assert!(out.contains("backbone: "), "{out}");
    // The resolved config records where the backbone came from.
    let resolved = std::fs::read_to_string(work.join("config.toml")).unwrap();
    assert!(resolved.contains("tv_resnet.safetensors"), "{resolved}");
}

#[test]
fn weights_that_do_not_fit_are_named_and_nothing_panics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let arch = arch();
    let out_ckpt = d.join("x.ckpt");
    let out_s = out_ckpt.to_str().unwrap();
    let pth = weights("mmdet_mask_rcnn.pth");
    let three = ["--set", "model.num_classes=3"];
    let mut args = vec![
        "weights", "convert", &pth, "--from", "mmdet", "--arch", &arch, "--out", out_s,
    ];
    args.extend(three);
    let err = fails(&args);
    assert!(
        err.contains("mis-shaped: roi_head.bbox_head.fc_cls.weight (model [5, 32], file [7, 32])"),
        "{err}"
    );
    assert!(!out_ckpt.exists(), "nothing written on failure");
    args.push("--allow-partial");
    let out = ok(&args);
    assert!(out.contains("6 problems"), "{out}");
    assert!(out_ckpt.exists());

    // An HTC checkpoint is not a Mask R-CNN; a torchvision file is not a detector.
    let err = fails(&[
        "weights",
        "convert",
        &weights("mmdet_htc.pth"),
        "--from",
        "mmdet",
        "--arch",
        &arch,
        "--out",
        out_s,
    ]);
    assert!(
        err.contains("unexpected: roi_head.bbox_head.0.fc_cls.weight"),
        "{err}"
    );
    let err = fails(&[
        "weights",
        "convert",
        &weights("tv_resnet.pth"),
        "--from",
        "mmdet",
        "--arch",
        &arch,
        "--out",
        out_s,
    ]);
    assert!(err.contains("missing: backbone.conv1.weight"), "{err}");
    let err = fails(&[
        "weights", "convert", &pth, "--from", "caffe", "--arch", &arch, "--out", out_s,
    ]);
    assert!(
        err.contains("expected torchvision, timm, mmdet or detectron2"),
        "{err}"
    );

    let missing = d.join("missing.pth");
    let err = fails(&["weights", "inspect", missing.to_str().unwrap()]);
    assert!(err.contains("missing.pth: no such file"), "{err}");
    let junk = d.join("junk.pth");
    std::fs::write(&junk, b"PK\x03\x04 not really a zip").unwrap();
    let err = fails(&["weights", "inspect", junk.to_str().unwrap()]);
    assert!(err.contains("junk.pth"), "{err}");
    let junk_st = d.join("junk.safetensors");
    std::fs::write(&junk_st, b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json").unwrap();
    let err = fails(&["weights", "inspect", junk_st.to_str().unwrap()]);
    assert!(err.contains("junk.safetensors"), "{err}");

    // A backbone init that does not exist stops training before it starts.
    let sets = data(d);
    let init = format!("model.backbone.init={}", missing.display());
    let work = d.join("work");
    let err = fails(&train(&arch, &work, &init, &sets));
    assert!(err.contains("missing.pth: no such file"), "{err}");
}

/// Backbone settings of each import fixture of the ResNet family (make_backbones.py), onto
/// the fixture architecture's bottlenecks [2, 1, 1, 1] at planes 8.
const FAMILY: [(&str, &[&str]); 4] = [
    (
        "tv_resnext.pth",
        &["type=\"resnext\"", "groups=4", "base_width=4"],
    ),
    ("timm_resnest.pth", &["type=\"resnest\"", "stem_channels=8"]),
    (
        "mmdet_resnest_dcn.pth",
        &["type=\"resnest\"", "stem_channels=8", "dcn.type=\"dcnv2\""],
    ),
    (
        "mmdet_resnext_dcn.pth",
        &[
            "type=\"resnext\"",
            "groups=4",
            "base_width=4",
            "dcn.type=\"dcnv2\"",
            "dcn.deform_groups=2",
        ],
    ),
];

#[test]
fn every_family_backbone_initialises_trains_reloads_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data_sets = data(d);
    let arch = arch();
    for (file, keys) in FAMILY {
        let mut sets = data_sets.clone();
        for k in keys {
            sets.extend(["--set".to_string(), format!("model.backbone.{k}")]);
        }
        // torchvision's and timm's files also convert to a checkpoint on their own.
        if let Some(from) = ["tv", "timm"].into_iter().find(|p| file.starts_with(p)) {
            let from = if from == "tv" { "torchvision" } else { "timm" };
            let out_ckpt = d.join(format!("{file}.ckpt"));
            let out = ok(&with(
                &[
                    "weights",
                    "convert",
                    &weights(file),
                    "--from",
                    from,
                    "--arch",
                    &arch,
                    "--out",
                    out_ckpt.to_str().unwrap(),
                ],
                &sets,
            ));
            assert!(out.contains("backbone only"), "{file}: {out}");
        }
        // ImageNet-style initialisation from the PyTorch file (timm, torchvision or
        // mmdetection names, told apart by the names themselves), then a training step.
        let init = format!("model.backbone.init={}", weights(file));
        let work = d.join(file.replace('.', "_"));
        let out = ok(&train(&arch, &work, &init, &sets));
        assert!(out.contains("backbone: "), "{file}: {out}");
        // The checkpoint reloads and tests.
        let ckpt = work.join("latest.ckpt");
        let results = work.join("results.json");
        ok(&with(
            &[
                "test",
                &arch,
                ckpt.to_str().unwrap(),
                "--out",
                results.to_str().unwrap(),
            ],
            &sets,
        ));
        assert!(seesaw_data::load_results(&results).is_ok(), "{file}");
        // Exported in mmdetection's names, the backbone is exactly the fixture's.
        let st = work.join("exported.safetensors");
        ok(&[
            "weights",
            "export",
            ckpt.to_str().unwrap(),
            "--out",
            st.to_str().unwrap(),
        ]);
        let exported: Vec<String> =
            names(&ok(&["weights", "inspect", st.to_str().unwrap(), "--json"]))
                .into_iter()
                .filter_map(|n| n.strip_prefix("backbone.").map(str::to_string))
                .collect();
        let source: Vec<String> = names(&ok(&["weights", "inspect", &weights(file), "--json"]))
            .into_iter()
            .map(|n| n.strip_prefix("backbone.").map(str::to_string).unwrap_or(n))
            .filter(|n| !n.starts_with("fc."))
            .map(|n| {
                // timm's deep stem is mmdetection's `stem.*`.
                match n.split_once('.') {
                    Some(("conv1", rest)) if rest.starts_with(char::is_numeric) => {
                        let (i, p) = rest.split_once('.').unwrap();
                        format!("stem.{i}.{p}")
                    }
                    Some(("bn1", p)) if file.starts_with("timm") => format!("stem.7.{p}"),
                    _ => n,
                }
            })
            .collect();
        let mut source = source;
        source.sort();
        assert_eq!(exported, source, "{file}");
    }
}

/// The tiny basic-block network whose stage widths (8, 16, 32, 64) are the neck fixtures'
/// inputs (make_pafpn.py, make_fpn_carafe.py, make_fpg.py, make_nasfpn.py), onto the fixture
/// architecture.
const TINY_BACKBONE: [&str; 4] = [
    "model.backbone.block=\"basic\"",
    "model.backbone.layers=[1, 1, 1, 1]",
    "model.backbone.stem=\"small\"",
    "model.neck.out_channels=16",
];

/// Each neck's and head's mmdetection fixture, the prefix of its tensors and the settings that
/// build it; the CARAFE mask upsampler has no file (it round-trips through its own export).
const PARTS: [(Option<&str>, &str, &[&str]); 8] = [
    (
        Some("mmdet_pafpn.pth"),
        "neck.",
        &["model.neck.type=\"pafpn\""],
    ),
    (
        Some("mmdet_fpn_carafe.pth"),
        "neck.",
        &["model.neck.type=\"fpn_carafe\""],
    ),
    (
        Some("mmdet_fpg.pth"),
        "neck.",
        &[
            "model.neck.type=\"fpg\"",
            "model.neck.inter_channels=8",
            "model.neck.norm.type=\"bn\"",
        ],
    ),
    (
        Some("mmdet_nasfpn.pth"),
        "neck.",
        &[
            "model.neck.type=\"nas_fpn\"",
            "model.neck.start_level=1",
            "model.neck.norm.type=\"bn\"",
            "model.rpn.anchor_strides=[8.0, 16.0, 32.0, 64.0, 128.0]",
            "model.roi.strides=[8.0, 16.0, 32.0, 64.0]",
            "data.size_divisor=128",
        ],
    ),
    (
        None,
        "roi_head.mask_head.",
        &["model.mask_head.upsample.type=\"carafe\""],
    ),
    (
        Some("mmdet_mask_iou_head.pth"),
        "roi_head.mask_iou_head.",
        &[
            "model.mask_iou_head.enabled=true",
            "model.mask_iou_head.conv_out_channels=8",
            "model.mask_iou_head.fc_out_channels=32",
        ],
    ),
    (
        Some("mmdet_double_head.pth"),
        "roi_head.bbox_head.",
        &[
            "model.bbox_head.type=\"double\"",
            "model.bbox_head.num_convs=2",
            "model.bbox_head.conv_out_channels=24",
            "model.bbox_head.normed_classifier=false",
            "model.loss=\"ce\"",
        ],
    ),
    (
        Some("mmdet_tsd.pth"),
        "roi_head.bbox_head.",
        &[
            "model.bbox_head.type=\"tsd\"",
            "model.bbox_head.offset_channels=24",
            "model.bbox_head.loss_bbox=\"smooth_l1\"",
            "model.bbox_head.normed_classifier=false",
            "model.loss=\"ce\"",
        ],
    ),
];

#[test]
fn every_neck_and_head_converts_trains_reloads_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data_sets = data(d);
    let arch = arch();
    for (i, (file, prefix, keys)) in PARTS.iter().enumerate() {
        let mut sets = data_sets.clone();
        for k in TINY_BACKBONE.iter().chain(keys.iter()) {
            sets.extend(["--set".to_string(), k.to_string()]);
        }
        let work = d.join(format!("neck{i}"));
        // mmdetection's neck converts into the detector (the rest keeps its initialisation),
        // and training starts from it.
        let start = match file {
            Some(f) => {
                let ckpt = d.join(format!("neck{i}.ckpt"));
                let out = ok(&with(
                    &[
                        "weights",
                        "convert",
                        &weights(f),
                        "--from",
                        "mmdet",
                        "--arch",
                        &arch,
                        "--out",
                        ckpt.to_str().unwrap(),
                        "--allow-partial",
                    ],
                    &sets,
                ));
                assert!(out.contains("tensors loaded"), "{f}: {out}");
                let stray: Vec<&str> = out
                    .lines()
                    .filter(|l| l.contains(prefix) || l.contains("unexpected"))
                    .collect();
                assert!(
                    stray.is_empty(),
                    "{f}: every tensor of the part fits: {stray:?}"
                );
                format!("train.load_from={}", ckpt.display())
            }
            None => "train.seed=1".to_string(),
        };
        let out = ok(&train(&arch, &work, &start, &sets));
        assert!(file.is_none() || out.contains("weights from"), "{out}");
        // The trained checkpoint reloads and tests.
        let ckpt = work.join("latest.ckpt");
        let results = work.join("results.json");
        ok(&with(
            &[
                "test",
                &arch,
                ckpt.to_str().unwrap(),
                "--out",
                results.to_str().unwrap(),
            ],
            &sets,
        ));
        assert!(seesaw_data::load_results(&results).is_ok(), "{keys:?}");
        // Exported under mmdetection's names: the fixture's neck names exactly, and the export
        // converts back whole.
        let st = work.join("exported.safetensors");
        ok(&[
            "weights",
            "export",
            ckpt.to_str().unwrap(),
            "--out",
            st.to_str().unwrap(),
        ]);
        let exported = names(&ok(&["weights", "inspect", st.to_str().unwrap(), "--json"]));
        match file {
            Some(f) => {
                let part = |v: Vec<String>| -> Vec<String> {
                    v.into_iter().filter(|n| n.starts_with(prefix)).collect()
                };
                let source = names(&ok(&["weights", "inspect", &weights(f), "--json"]));
                assert_eq!(part(exported), part(source), "{f}");
            }
            None => assert!(
                exported
                    .iter()
                    .any(|n| n == "roi_head.mask_head.upsample.content_encoder.weight"),
                "{exported:?}"
            ),
        }
        let back = work.join("back.ckpt");
        let out = ok(&with(
            &[
                "weights",
                "convert",
                st.to_str().unwrap(),
                "--from",
                "mmdet",
                "--arch",
                &arch,
                "--out",
                back.to_str().unwrap(),
            ],
            &sets,
        ));
        assert!(out.contains("(whole detector)\n"), "{keys:?}: {out}");
    }
}

#[test]
fn dual_cls_finetune_trains_a_new_branch_on_a_trained_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sets = data(d);
    let arch = arch();
    // The trained model.
    let first = d.join("first");
    ok(&train(&arch, &first, "train.seed=0", &sets));
    let ckpt = first.join("latest.ckpt");
    // A checkpoint of another model is named by the config keys that differ.
    let mut other = sets.clone();
    other.extend(["--set".into(), "model.neck.type=\"pafpn\"".into()]);
    let results = d.join("other.json");
    let err = fails(&with(
        &[
            "test",
            &arch,
            ckpt.to_str().unwrap(),
            "--out",
            results.to_str().unwrap(),
        ],
        &other,
    ));
    assert!(
        err.contains("model.neck.type: checkpoint \"fpn\", this run \"pafpn\""),
        "{err}"
    );
    // Refused without a checkpoint to fine-tune.
    let second = d.join("second");
    let err = fails(&train(
        &arch,
        &second,
        "model.bbox_head.dual_cls=true",
        &sets,
    ));
    assert!(err.contains("train.load_from"), "{err}");
    // The fine-tuning step: the new branch from the trained weights, the rest frozen.
    let mut more = sets.clone();
    more.extend(["--set".into(), "model.bbox_head.dual_cls=true".into()]);
    let load = format!("train.load_from={}", ckpt.display());
    let out = ok(&train(&arch, &second, &load, &more));
    assert!(out.contains("second classification branch"), "{out}");
    // The fine-tuned checkpoint reloads, tests and exports its branch under `dual_cls.`.
    let tuned = second.join("latest.ckpt");
    let results = second.join("results.json");
    ok(&with(
        &[
            "test",
            &arch,
            tuned.to_str().unwrap(),
            "--out",
            results.to_str().unwrap(),
        ],
        &more,
    ));
    assert!(seesaw_data::load_results(&results).is_ok());
    let st = second.join("exported.safetensors");
    ok(&[
        "weights",
        "export",
        tuned.to_str().unwrap(),
        "--out",
        st.to_str().unwrap(),
    ]);
    let exported = names(&ok(&["weights", "inspect", st.to_str().unwrap(), "--json"]));
    assert!(
        exported
            .iter()
            .any(|n| n == "roi_head.bbox_head.dual_cls.fc_cls.weight"),
        "{exported:?}"
    );
}

#[test]
fn an_official_tsd_checkpoint_of_mmdetection_1x_converts() {
    // The TSD fork saves mmdetection 1.x checkpoints (`bbox_head.*` at the top level,
    // background first); convert upgrades them as upgrade_model_version.py and every tensor of
    // the box head fits.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut sets = data(d);
    let (_, _, keys) = PARTS
        .iter()
        .find(|(f, _, _)| *f == Some("mmdet_tsd.pth"))
        .expect("the TSD part");
    for k in TINY_BACKBONE.iter().chain(keys.iter()) {
        sets.extend(["--set".to_string(), k.to_string()]);
    }
    let arch = arch();
    let ckpt = d.join("tsd.ckpt");
    let out = ok(&with(
        &[
            "weights",
            "convert",
            &weights("tsd_official_v1.pth"),
            "--from",
            "mmdet",
            "--arch",
            &arch,
            "--out",
            ckpt.to_str().unwrap(),
            "--allow-partial",
        ],
        &sets,
    ));
    assert!(
        out.contains("mmdetection 1.x checkpoint, upgraded"),
        "{out}"
    );
    assert!(out.contains("tensors loaded"), "{out}");
    let stray: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("roi_head.bbox_head.") && !l.contains("->"))
        .collect();
    assert!(stray.is_empty(), "every box head tensor fits: {stray:?}");
    assert!(ckpt.is_file());
}
