//! Training end to end on tiny built-in datasets: the loss falls and a few memorised images
//! are found again; an interrupted and resumed run has exactly the losses of an uninterrupted
//! one; bad checkpoints are refused clearly.

use std::path::Path;

use seesaw_data::synth::{SynthConfig, generate};
use seesaw_engine::Config;
use seesaw_engine::checkpoint::Checkpoint;
use seesaw_engine::data::{SamplerKind, ScaleMode, Split};
use seesaw_engine::predict::{Tta, evaluate, predict_split, predict_split_tta};
use seesaw_engine::train::{TrainOptions, load_for_inference, train};
use seesaw_model::detectors::{DetectorKind, RoiHead};
use seesaw_model::heads::BoxLossKind;
use seesaw_model::losses::{AnyLoss, LossKind, LossState};

const DEMO: &str = include_str!("../../../configs/demo_mask_rcnn_seesaw.toml");

/// A tiny dataset and a tiny model that trains in seconds.
fn setup(dir: &Path, images: usize, size: u32, loss: &str) -> Config {
    let out = generate(
        &SynthConfig {
            classes: 3,
            train_images: images,
            val_images: Some(2),
            size,
            seed: 7,
            max_count_frac: 0.9,
            min_count: 1,
            val_min_images: 1,
        },
        &dir.join("data"),
    )
    .expect("synth");
    let mut cfg = Config::from_toml(
        DEMO,
        Path::new("demo.toml"),
        &[
            "model.num_classes=3".into(),
            "model.backbone.base_channels=16".into(),
            "model.neck.out_channels=32".into(),
            "model.bbox_head.fc_channels=64".into(),
            "model.mask_head.conv_channels=32".into(),
            "model.mask_head.num_convs=1".into(),
            "model.rpn.anchor_scales=[2.0, 4.0]".into(),
            "train.batch_size=2".into(),
            "train.warmup_iters=10".into(),
            "train.lr=0.02".into(),
            "train.log_every=1".into(),
            format!("data.train_scales=[[{size}, {size}]]"),
            format!("data.test_scale=[{size}, {size}]"),
            format!("model.loss={loss}"),
            format!("model.bbox_head.normed_classifier={}", loss == "seesaw"),
        ],
    )
    .expect("config");
    cfg.data.train_json = out.train_json.clone();
    cfg.data.val_json = out.train_json;
    cfg.data.train_images = dir.join("data");
    cfg.data.val_images = dir.join("data");
    cfg
}

fn opts(dir: &Path, stop_at: Option<usize>, resume: bool) -> TrainOptions {
    TrainOptions {
        work_dir: dir.to_path_buf(),
        resume,
        progress: false,
        stop_at,
        device: Default::default(),
    }
}

#[test]
fn overfitting_a_few_images_drives_the_loss_down_and_finds_them_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = setup(tmp.path(), 3, 128, "seesaw");
    cfg.train.iters = 120;
    cfg.train.batch_size = 3;
    cfg.data.flip_ratio = 0.0;
    let out = train(&cfg, &opts(&tmp.path().join("work"), None, false)).expect("train");
    let first: f64 = out.losses[..5].iter().map(|l| l.1).sum::<f64>() / 5.0;
    let last: f64 = out.losses[out.losses.len() - 5..]
        .iter()
        .map(|l| l.1)
        .sum::<f64>()
        / 5.0;
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    let loaded = load_for_inference(&out.checkpoint, Some(&cfg)).expect("load");
    let split = Split::load(&cfg.data.val_json, &cfg.data.val_images).expect("split");
    let dets = predict_split(&loaded.model, &split, &cfg, false).expect("predict");
    let (bbox, segm) = evaluate(&split.dataset, dets, true).expect("eval");
    let segm = segm.expect("segm");
    let (b, m) = (
        bbox.stat("AP").unwrap_or(0.0),
        segm.stat("AP").unwrap_or(0.0),
    );
    eprintln!("memorised images: box AP {b:.3}, mask AP {m:.3}");
    assert!(b > 0.7 && m > 0.7, "box AP {b}, mask AP {m}");
}

#[test]
fn resume_repeats_the_uninterrupted_loss_sequence_exactly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = setup(tmp.path(), 6, 64, "seesaw");
    cfg.train.iters = 6;
    cfg.train.checkpoint_every = 1;
    let whole = train(&cfg, &opts(&tmp.path().join("a"), None, false)).expect("whole");
    let b = tmp.path().join("b");
    let head = train(&cfg, &opts(&b, Some(3), false)).expect("head");
    let ck = Checkpoint::load(&b.join("latest.ckpt")).expect("checkpoint");
    assert_eq!(ck.meta.iter, 3);
    assert_eq!(ck.meta.loss_states.len(), 1, "one box stage");
    let Some(LossState::Seesaw { cum_samples }) =
        ck.meta.loss_states.get("roi_head.bbox_head.loss_cls")
    else {
        panic!("{:?}", ck.meta.loss_states);
    };
    assert_eq!(cum_samples.len(), 4);
    assert!(cum_samples.iter().sum::<u64>() > 0);
    let tail = train(&cfg, &opts(&b, None, true)).expect("resumed");
    let joined: Vec<(usize, f64)> = head.losses.into_iter().chain(tail.losses).collect();
    assert_eq!(joined.len(), whole.losses.len());
    for (x, y) in joined.iter().zip(&whole.losses) {
        assert_eq!(x.0, y.0);
        assert_eq!(
            x.1.to_bits(),
            y.1.to_bits(),
            "iteration {}: {} vs {}",
            x.0,
            x.1,
            y.1
        );
    }
    // Test-time augmentation with only the identity equals plain testing; with flips and a
    // second scale it still gives valid detections.
    let loaded = load_for_inference(&whole.checkpoint, Some(&cfg)).expect("load");
    let split = Split::load(&cfg.data.val_json, &cfg.data.val_images).expect("split");
    let plain = predict_split(&loaded.model, &split, &cfg, false).expect("plain");
    let identity = Tta::parse("", cfg.data.test_scale).expect("tta");
    let same = predict_split_tta(&loaded.model, &split, &cfg, &identity, false).expect("tta");
    assert!(!plain.is_empty());
    assert_eq!(plain, same);
    let tta = Tta::parse("flip,scales=64,80", cfg.data.test_scale).expect("tta");
    assert_eq!(tta.scales, vec![[64, 64], [80, 80]]);
    let aug = predict_split_tta(&loaded.model, &split, &cfg, &tta, false).expect("tta");
    assert!(!aug.is_empty());
    for d in &aug {
        let b = d.bbox.expect("box");
        assert!(b[0] >= 0.0 && b[1] >= 0.0 && b[0] + b[2] <= 64.0 + 1e-3 && b[3] > 0.0);
        assert!(d.segmentation.is_some());
    }
    assert!(Tta::parse("flip,sideways", [64, 64]).is_err());
    assert!(Tta::parse("scales=0", [64, 64]).is_err());
    // The metrics of the resumed run continue the first part's.
    let metrics = std::fs::read_to_string(b.join("metrics.jsonl")).expect("metrics");
    let iters: Vec<u64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["iter"].as_u64())
        .collect();
    assert_eq!(iters, vec![1, 2, 3, 4, 5, 6]);
    assert!(b.join("config.toml").exists());
}

/// The cascade kinds on the tiny setup: the demo's own overrides.
fn cascade(cfg: &mut Config, detector: DetectorKind) {
    cfg.model.detector = detector;
    cfg.model.bbox_head.class_agnostic = true;
    cfg.model.bbox_head.loss_bbox = BoxLossKind::SmoothL1;
}

#[test]
fn htc_lite_memorises_a_few_images_and_its_checkpoints_round_trip() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = setup(tmp.path(), 3, 128, "seesaw");
    cascade(&mut cfg, DetectorKind::HtcLite);
    cfg.train.iters = 120;
    cfg.train.batch_size = 3;
    cfg.data.flip_ratio = 0.0;
    let out = train(&cfg, &opts(&tmp.path().join("work"), None, false)).expect("train");
    let ck = Checkpoint::load(&out.checkpoint).expect("checkpoint");
    assert_eq!(ck.meta.loss_states.len(), 3, "a Seesaw count per box stage");
    let loaded = load_for_inference(&out.checkpoint, Some(&cfg)).expect("load");
    assert!(matches!(loaded.model.roi_head, RoiHead::HtcLite(_)));
    let split = Split::load(&cfg.data.val_json, &cfg.data.val_images).expect("split");
    let dets = predict_split(&loaded.model, &split, &cfg, false).expect("predict");
    let (bbox, segm) = evaluate(&split.dataset, dets.clone(), true).expect("eval");
    let (b, m) = (
        bbox.stat("AP").unwrap_or(0.0),
        segm.expect("segm").stat("AP").unwrap_or(0.0),
    );
    eprintln!("HTC-Lite, memorised images: box AP {b:.3}, mask AP {m:.3}");
    assert!(b > 0.7 && m > 0.7, "box AP {b}, mask AP {m}");
    // Loading again gives the same predictions; a Mask R-CNN config cannot take the weights.
    let again = load_for_inference(&out.checkpoint, Some(&cfg)).expect("load");
    let dets2 = predict_split(&again.model, &split, &cfg, false).expect("predict");
    assert_eq!(dets, dets2);
    let plain = setup(&tmp.path().join("other"), 3, 128, "seesaw");
    let e = load_for_inference(&out.checkpoint, Some(&plain))
        .err()
        .expect("a Mask R-CNN cannot load HTC-Lite weights")
        .to_string();
    assert!(e.contains(&out.checkpoint.display().to_string()), "{e}");
}

/// Whether a saved loss state has moved from where a fresh loss starts.
fn has_accumulated(state: &LossState) -> bool {
    match state {
        LossState::Stateless => true,
        LossState::Seesaw { cum_samples } => cum_samples.iter().sum::<u64>() > 0,
        LossState::Eqlv2 { pos_grad, .. } => pos_grad.iter().any(|&b| f64::from_bits(b) > 0.0),
        LossState::Federated { word_pos, .. } => word_pos != "0",
    }
}

#[test]
fn every_loss_and_every_detector_kind_resumes_bit_for_bit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = setup(tmp.path(), 6, 64, "ce");
    for kind in DetectorKind::ALL {
        for loss in LossKind::ALL {
            let name = format!("{}-{}", kind.name(), loss.name());
            let mut cfg = base.clone();
            cfg.model.loss = loss;
            cfg.model.bbox_head.normed_classifier = loss == LossKind::Seesaw;
            cfg.model.detector = kind;
            if kind.is_cascade() {
                cascade(&mut cfg, kind);
            }
            cfg.train.iters = 4;
            cfg.train.checkpoint_every = 1;
            let whole = train(
                &cfg,
                &opts(&tmp.path().join(format!("{name}-a")), None, false),
            )
            .expect("whole");
            let b = tmp.path().join(format!("{name}-b"));
            let head = train(&cfg, &opts(&b, Some(2), false)).expect("head");
            let ck = Checkpoint::load(&b.join("latest.ckpt")).expect("checkpoint");
            let stages = if kind.is_cascade() { 3 } else { 1 };
            assert_eq!(ck.meta.loss_states.len(), stages, "{name}");
            for (part, state) in &ck.meta.loss_states {
                let fresh = AnyLoss::new(loss, &[1, 1, 1], 1, 0).state();
                let stateless = fresh == LossState::Stateless;
                assert_eq!(
                    state.name(),
                    if stateless { "stateless" } else { loss.name() },
                    "{name} {part}"
                );
                assert!(has_accumulated(state), "{name} {part}: {state:?}");
            }
            let tail = train(&cfg, &opts(&b, None, true)).expect("resumed");
            let joined: Vec<(usize, f64)> = head.losses.into_iter().chain(tail.losses).collect();
            assert_eq!(joined.len(), whole.losses.len(), "{name}");
            for (x, y) in joined.iter().zip(&whole.losses) {
                assert_eq!(x.1.to_bits(), y.1.to_bits(), "{name}: iteration {}", x.0);
            }
            // Multi-stage heads log each stage's weighted losses, as mmdetection does.
            let metrics = std::fs::read_to_string(b.join("metrics.jsonl")).expect("metrics");
            let first: serde_json::Value =
                serde_json::from_str(metrics.lines().next().expect("a line")).expect("json");
            if !kind.is_cascade() {
                assert!(first.get("s0.loss_cls").is_none(), "{name}: {first}");
            } else {
                assert!(first["s2.loss_bbox"].is_number(), "{name}: {first}");
                let sum: f64 = (0..3)
                    .map(|t| first[format!("s{t}.loss_cls")].as_f64().unwrap_or(f64::NAN))
                    .sum();
                let cls = first["cls"].as_f64().unwrap_or(0.0);
                assert!((sum - cls).abs() <= 1e-5 * cls.abs().max(1.0), "{name}");
            }
            // Cascade and HTC have a mask head per stage; HTC-Lite one after the last.
            let per_stage_masks = matches!(kind, DetectorKind::Cascade | DetectorKind::Htc);
            assert_eq!(first["s2.loss_mask"].is_number(), per_stage_masks, "{name}");
            let glbctx = first["glbctx"].as_f64().unwrap_or(-1.0);
            assert_eq!(
                glbctx > 0.0,
                kind == DetectorKind::HtcLite,
                "{name}: {glbctx}"
            );
        }
    }
}

#[test]
fn cross_entropy_trains_too_and_a_nan_stops_the_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = setup(tmp.path(), 4, 64, "ce");
    cfg.train.iters = 2;
    cfg.train.eval_every = 2;
    // The other samplers and augmentations run end to end too.
    cfg.data.sampler = SamplerKind::ClassAware;
    cfg.data.train_scale_mode = ScaleMode::Range;
    cfg.data.train_scales = vec![[56, 56], [72, 72]];
    cfg.data.crop_size = [48, 48];
    cfg.data.photometric = true;
    cfg.data.instaboost.aug_ratio = 0.5;
    let out = train(&cfg, &opts(&tmp.path().join("ce"), None, false)).expect("ce");
    assert!(out.losses.iter().all(|l| l.1.is_finite()));
    // Periodic validation writes the evaluator's stats into the metrics.
    let metrics = std::fs::read_to_string(tmp.path().join("ce/metrics.jsonl")).expect("metrics");
    let val: serde_json::Value = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("val").is_some())
        .expect("a validation line");
    assert_eq!(val["iter"], 2);
    assert!(val["val"]["bbox"]["APr"].is_number() && val["val"]["segm"]["AP"].is_number());
    cfg.train.eval_every = 0;
    // A learning rate this large overflows within a few steps.
    cfg.train.lr = 1e30;
    cfg.train.warmup_iters = 0;
    cfg.train.iters = 20;
    cfg.train.checkpoint_every = 1;
    let err = train(&cfg, &opts(&tmp.path().join("nan"), None, false))
        .expect_err("diverges")
        .to_string();
    assert!(
        err.contains("the loss is") && err.contains("last good checkpoint"),
        "{err}"
    );
    assert!(tmp.path().join("nan/latest.ckpt").exists());
    Checkpoint::load(&tmp.path().join("nan/latest.ckpt")).expect("last good checkpoint readable");
}

#[test]
fn bad_checkpoints_are_refused_with_the_file_and_the_reason() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = setup(tmp.path(), 4, 64, "seesaw");
    cfg.train.iters = 1;
    let out = train(&cfg, &opts(&tmp.path().join("w"), None, false)).expect("train");
    let good = std::fs::read(&out.checkpoint).expect("read");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage.ckpt",
            b"PK\x03\x04 not ours".to_vec(),
            "not a Seesaw checkpoint",
        ),
        ("short.ckpt", good[..good.len() / 2].to_vec(), "truncated"),
        ("long.ckpt", [&good[..], b"xx"].concat(), "unexpected bytes"),
        (
            "meta.ckpt",
            {
                let mut b = good.clone();
                b[20] = b'#';
                b
            },
            "meta section",
        ),
    ];
    for (name, bytes, want) in cases {
        let f = tmp.path().join(name);
        std::fs::write(&f, bytes).expect("write");
        let e = match load_for_inference(&f, Some(&cfg)) {
            Ok(_) => panic!("{name} loaded"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(name) && e.contains(want), "{name}: {e}");
    }
    // A checkpoint of another model shape is refused by the model section.
    let mut other = cfg.clone();
    other.model.bbox_head.fc_channels = 32;
    let e = match load_for_inference(&out.checkpoint, Some(&other)) {
        Ok(_) => panic!("loaded into another shape"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("model section"), "{e}");
    // No temporary file is left beside the checkpoints.
    for e in std::fs::read_dir(tmp.path().join("w")).expect("dir") {
        let name = e.expect("entry").file_name().to_string_lossy().to_string();
        assert!(!name.contains("tmp"), "{name} left behind");
    }
}

#[test]
fn a_config_error_leaves_an_earlier_runs_config_as_it_was() {
    let tmp = tempfile::tempdir().expect("tmp");
    let work = tmp.path().join("w");
    std::fs::create_dir_all(&work).expect("dir");
    std::fs::write(work.join("config.toml"), "# the earlier run\n").expect("write");
    // Missing data, then a model that does not build (a TSD key on a conv_fc head).
    let mut missing = setup(tmp.path(), 4, 64, "seesaw");
    missing.data.train_json = tmp.path().join("nowhere.json");
    let mut bad_head = setup(tmp.path(), 4, 64, "seesaw");
    bad_head.model.bbox_head.cls_pc_margin = 0.2;
    // Both: the model's key is named first, before the data is read.
    let mut both = bad_head.clone();
    both.data.train_json = tmp.path().join("nowhere.json");
    let err = match train(&both, &opts(&work, None, false)) {
        Ok(_) => panic!("trained"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cls_pc_margin"), "{err}");
    for cfg in [missing, bad_head] {
        assert!(train(&cfg, &opts(&work, None, false)).is_err());
        assert_eq!(
            std::fs::read_to_string(work.join("config.toml")).expect("read"),
            "# the earlier run\n"
        );
    }
}
