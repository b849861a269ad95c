//! `seesaw ladder`: the deck's ladder of modifications ("Seesaw Loss for Long-Tailed Instance
//! Segmentation", Wang et al., the LVIS 2020 challenge entry: LVIS v1 val mask AP 18.7 for the
//! baseline up to 38.8 with test-time augmentation), each rung added on top of the last and
//! trained with the same seed and budget, evaluated, tabled beside the deck's numbers and drawn
//! as the deck draws it.
//!
//! Every rung is a config that inherits the previous rung's (`_base_`), written to
//! `OUT/configs/`: on the built-in data they are demo-sized; with `--base CONFIG` the first rung
//! is the user's config and the rungs carry the LVIS recipes' settings (mmdetection's configs
//! the repository's `configs/*_lvis.toml` follow), so each file trains on LVIS as it is.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use seesaw_engine::Config;
use seesaw_engine::data::Split;
use seesaw_engine::device::DeviceSpec;
use seesaw_engine::predict::{Tta, evaluate, predict_split, predict_split_tta};
use seesaw_engine::train::{TrainOptions, load_for_inference_on, train};
use seesaw_eval::Evaluation;

use crate::data_cmd::{self, SynthArgs};
use crate::viz;

#[derive(Args)]
pub struct LadderArgs {
    /// Where the data, the rungs' configs and work dirs, summary.json and ladder.png go.
    #[arg(long, default_value = "ladder-out")]
    pub out: PathBuf,
    /// The rungs to run (comma-separated names from `baseline,syncbn,carafe,htc_lite,tsd,
    /// mask_scoring,augmentation,fpg,resnest_dcnv2,seesaw,finetune,tta`); default all. Configs
    /// are written for every rung up to the last one asked for; `finetune` and `tta` also run
    /// the rung they start from.
    #[arg(long, value_delimiter = ',')]
    pub rungs: Vec<String>,
    /// Training iterations of every rung (default 500; 4 with --quick); the fine-tuning rung
    /// runs half.
    #[arg(long)]
    pub iters: Option<usize>,
    /// Seed of the data, the initialisation and the data order (the same for every rung;
    /// default 0, or the --base config's own).
    #[arg(long)]
    pub seed: Option<u64>,
    /// A smoke test: 24 training images of 8 classes, 4 iterations of batch 2 per rung.
    #[arg(long)]
    pub quick: bool,
    /// Start from this config (its model, data and schedule) instead of the built-in data and
    /// the demo's model; the rungs then carry the LVIS recipes' settings.
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// Write the rungs' configs into --out itself (no training; on the built-in data the data
    /// is still written, as the configs name it), check that each
    /// loads and builds its model, and stop: `seesaw ladder --base configs/mask_rcnn_r50_fpn_ce_
    /// 2x_lvis.toml --configs-only --out configs/ladder` made the repository's LVIS ladder.
    #[arg(long)]
    pub configs_only: bool,
    /// cpu (default); cuda or cuda:N (a build with `--features cuda`); wgpu, wgpu:N,
    /// wgpu:integrated[:N] or wgpu:cpu (`--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// What a rung does besides training its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Trains its config from scratch (or the config's pretrained backbone).
    Train,
    /// Trains from the previous rung's checkpoint (half the budget, a tenth of the rate).
    Finetune,
    /// Tests the previous rung's model with test-time augmentation; no training.
    TestTimeAug,
}

/// One rung: its name, the deck's label and LVIS v1 val mask AP, and the keys it adds.
struct Rung {
    name: &'static str,
    title: &'static str,
    deck: f64,
    step: Step,
    /// The keys added on the built-in data (TOML).
    demo: &'static str,
    /// The keys added on a user's config (`--base`), the LVIS recipes' values (TOML).
    lvis: &'static str,
}

const SYNCBN: &str = r#"# mmdetection's SyncBN rung: norm_cfg = dict(type='SyncBN') in backbone, neck and heads.
# On one process it is batch norm over the whole batch; under mpirun, over every replica's.
[model.backbone.norm]
type = "syncbn"

[model.neck.norm]
type = "syncbn"

[model.mask_head.norm]
type = "syncbn"
"#;

/// The deck's ladder (LVIS v1 val mask AP; the last rung 38.92 on test-dev).
const RUNGS: &[Rung] = &[
    Rung {
        name: "baseline",
        title: "Baseline",
        deck: 18.7,
        step: Step::Train,
        demo: "",
        lvis: "",
    },
    Rung {
        name: "syncbn",
        title: "SyncBN",
        deck: 18.9,
        step: Step::Train,
        demo: SYNCBN,
        lvis: r#"# mmdetection's SyncBN rung: norm_cfg = dict(type='SyncBN') in backbone, neck and heads,
# the backbone's batch norms trained (norm_eval off).
[model.backbone]
norm_eval = false

[model.backbone.norm]
type = "syncbn"

[model.neck.norm]
type = "syncbn"

[model.mask_head.norm]
type = "syncbn"
"#,
    },
    Rung {
        name: "carafe",
        title: "CARAFE Upsample",
        deck: 19.4,
        step: Step::Train,
        demo: r#"# CARAFE in the FPN's top-down path and in the mask head's upsampling
# (mmdetection's configs/carafe/mask-rcnn_r50_fpn-carafe_1x_coco.py).
[model.neck]
type = "fpn_carafe"

[model.mask_head]
upsample = { type = "carafe" }

[data]
size_divisor = 64
"#,
        lvis: r#"# CARAFE in the FPN's top-down path and in the mask head's upsampling
# (mmdetection's configs/carafe/mask-rcnn_r50_fpn-carafe_1x_coco.py).
[model.neck]
type = "fpn_carafe"
carafe = { up_kernel = 5, up_group = 1, encoder_kernel = 3, encoder_dilation = 1, compressed_channels = 64 }

[model.mask_head]
upsample = { type = "carafe", up_kernel = 5, up_group = 1, encoder_kernel = 3, encoder_dilation = 1, compressed_channels = 64 }

[data]
size_divisor = 64
"#,
    },
    Rung {
        name: "htc_lite",
        title: "HTC-Lite",
        deck: 21.9,
        step: Step::Train,
        demo: HTC_LITE,
        lvis: HTC_LITE,
    },
    Rung {
        name: "tsd",
        title: "TSD",
        deck: 23.5,
        step: Step::Train,
        demo: TSD,
        lvis: TSD,
    },
    Rung {
        name: "mask_scoring",
        title: "Mask Scoring",
        deck: 23.9,
        step: Step::Train,
        demo: r#"# Mask Scoring R-CNN's MaskIoU head, demo-sized.
[model.mask_iou_head]
enabled = true
conv_out_channels = 64
fc_out_channels = 256
"#,
        lvis: r#"# Mask Scoring R-CNN's MaskIoU head (mmdetection's ms_rcnn configs).
[model.mask_iou_head]
enabled = true
"#,
    },
    Rung {
        name: "augmentation",
        title: "Training Time Aug.",
        deck: 26.5,
        step: Step::Train,
        demo: r#"# Training-time augmentation: scales drawn in a range, a random crop, InstaBoost.
[data]
train_scales = [[96, 96], [160, 160]]
train_scale_mode = "range"
crop_size = [128, 128]
instaboost = 0.5
"#,
        lvis: r#"# The deck's training-time augmentation: the long edge drawn from 768-1792 pixels, a random
# crop to 1280 x 1280, InstaBoost.
[data]
train_scales = [[768, 768], [1792, 1792]]
train_scale_mode = "range"
crop_size = [1280, 1280]
instaboost = 0.5
"#,
    },
    Rung {
        name: "fpg",
        title: "FPG",
        deck: 27.0,
        step: Step::Train,
        demo: FPG,
        lvis: FPG,
    },
    Rung {
        name: "resnest_dcnv2",
        title: "ResNeSt200 DCNv2",
        deck: 29.9,
        step: Step::Train,
        demo: r#"# A demo-sized ResNeSt (one split-attention bottleneck per stage, planes 8-64) with DCNv2.
[model.backbone]
type = "resnest"
stem = "deep"
block = "bottleneck"
base_channels = 8
stem_channels = 32
dcn = { type = "dcnv2" }
"#,
        lvis: r#"# ResNeSt-200 with DCNv2 in stages 2-4 (htc_lite_s200_dcnv2_fpn_seesaw_2x_lvis.toml).
[model.backbone]
init = "checkpoints/resnest200_d2-ca88e41f.pth"
type = "resnest"
depth = 200
stem_channels = 128
dcn = { type = "dcnv2", deform_groups = 1, fallback_on_stride = false }
stage_with_dcn = [false, true, true, true]
"#,
    },
    Rung {
        name: "seesaw",
        title: "Seesaw Loss",
        deck: 36.8,
        step: Step::Train,
        demo: SEESAW,
        lvis: SEESAW,
    },
    Rung {
        name: "finetune",
        title: "Finetune",
        deck: 37.3,
        step: Step::Finetune,
        demo: FINETUNE,
        lvis: FINETUNE,
    },
    Rung {
        name: "tta",
        title: "Test Time Aug.",
        deck: 38.8,
        step: Step::TestTimeAug,
        demo: "",
        lvis: "",
    },
];

const HTC_LITE: &str = r#"# HTC-Lite: three cascade stages (class-agnostic boxes, smooth L1), the mask head on the last
# stage's boxes, the global context head.
[model]
detector = "htc_lite"

[model.bbox_head]
class_agnostic = true
loss_bbox = "smooth_l1"
"#;

const TSD: &str = r#"# TSD (Song et al., CVPR 2020): task-aware spatial disentanglement in every box stage.
[model.bbox_head]
type = "tsd"
offset_channels = 256
"#;

const FPG: &str = r#"# FPG (Chen et al., "Feature Pyramid Grids") in place of the FPN.
[model.neck]
type = "fpg"
"#;

const SEESAW: &str = r#"# Seesaw Loss (p 0.8, q 2) with a normalised linear classifier (tau 20).
[model]
loss = "seesaw"

[model.bbox_head]
normed_classifier = true
"#;

const FINETUNE: &str = r#"# Fine-tuning the previous rung's model with repeat factor sampling (t = 0.001).
[data]
sampler = "rfs"
rfs_threshold = 0.001
"#;

/// The test-time augmentation of the deck (flip; square scales 1200-2000) and its demo-sized
/// counterpart.
fn tta_spec(lvis: bool) -> &'static str {
    if lvis {
        "flip,scales=1200x1200,1400x1400,1600x1600,1800x1800,2000x2000"
    } else {
        "flip,scales=96x96,128x128,160x160"
    }
}

/// A rung's results.
struct Done {
    rung: &'static Rung,
    config: PathBuf,
    bbox: Evaluation,
    segm: Evaluation,
    sec_per_iter: Option<f64>,
    note: Option<String>,
}

/// AP x 100 of `key`, or None where undefined.
fn ap(e: &Evaluation, key: &str) -> Option<f64> {
    e.stat(key).filter(|v| *v >= 0.0).map(|v| 100.0 * v)
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

/// A change of AP, signed, one decimal (no "-0.0").
fn signed(d: f64) -> String {
    let r = (d * 10.0).round() / 10.0;
    format!("{:+.1}", if r == 0.0 { 0.0 } else { r })
}

/// `target` as a path relative to the folder `dir` (both absolute).
fn relative_to(dir: &Path, target: &Path) -> PathBuf {
    let common = dir
        .components()
        .zip(target.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut p = PathBuf::new();
    for _ in dir.components().skip(common) {
        p.push("..");
    }
    for c in target.components().skip(common) {
        p.push(c);
    }
    p
}

/// A path as a TOML string (a JSON string is a valid TOML basic string).
fn quote(p: &Path) -> String {
    serde_json::Value::String(p.display().to_string()).to_string()
}

pub fn run(a: &LadderArgs) -> Result<()> {
    if let Some((var, n)) = seesaw_engine::distributed::announced_world() {
        bail!(
            "{var}={n}: the ladder runs in one process; to train a rung on several, run its \
             config with `mpirun -n {n} seesaw train OUT/configs/NN_<rung>.toml` \
             (docs/multi-gpu.md)"
        );
    }
    // Which rungs run: those asked for (all by default) and what finetune / tta start from.
    let wanted: Vec<usize> = if a.rungs.is_empty() {
        (0..RUNGS.len()).collect()
    } else {
        let mut v = Vec::new();
        for name in &a.rungs {
            let i = RUNGS.iter().position(|r| r.name == name).ok_or_else(|| {
                anyhow!(
                    "--rungs: no rung {name:?}; the rungs are {}",
                    RUNGS.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
                )
            })?;
            v.push(i);
        }
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut run_set = vec![false; RUNGS.len()];
    for &i in &wanted {
        run_set[i] = true;
    }
    // tta needs finetune's model, finetune the rung before it.
    for i in (1..RUNGS.len()).rev() {
        if run_set[i] && RUNGS[i].step != Step::Train {
            run_set[i - 1] = true;
        }
    }
    let last = wanted.last().copied().unwrap_or(0);
    let iters = a.iters.unwrap_or(if a.quick { 4 } else { 500 });
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    let out = &a.out;
    let cfg_dir = if a.configs_only {
        out.clone()
    } else {
        out.join("configs")
    };
    std::fs::create_dir_all(&cfg_dir)
        .with_context(|| format!("{}: cannot create", cfg_dir.display()))?;

    // The first rung: the demo's cross-entropy Mask R-CNN on the built-in data, or the user's.
    let lvis = a.base.is_some();
    let first_base = match &a.base {
        Some(base) => {
            let base = std::fs::canonicalize(base)
                .with_context(|| format!("{}: cannot read", base.display()))?;
            relative_to(&std::fs::canonicalize(&cfg_dir)?, &base)
        }
        None => {
            let file = cfg_dir.join("demo_base.toml");
            seesaw_data::io::write_atomic(&file, |w| {
                w.write_all(crate::demo::CE_CONFIG.as_bytes())
            })?;
            PathBuf::from("demo_base.toml")
        }
    };
    let mut first = String::from(
        "# The ladder's first rung (`seesaw ladder`): the baseline every later rung builds on.\n",
    );
    writeln!(first, "_base_ = {}", quote(&first_base))?;
    if !lvis {
        let data_dir = out.join("data");
        println!("== the built-in long-tailed dataset ==");
        let synth = data_cmd::synth(&SynthArgs {
            out: data_dir.clone(),
            classes: if a.quick { 8 } else { 40 },
            train_images: if a.quick { 24 } else { 1000 },
            val_images: a.quick.then_some(8),
            size: 128,
            seed: a.seed.unwrap_or(0),
        })?;
        let data_dir = std::fs::canonicalize(&data_dir)?;
        writeln!(
            first,
            "\n[model]\nnum_classes = {}\n",
            synth.train.categories.len()
        )?;
        writeln!(
            first,
            "[data]\ntrain_json = {}\ntrain_images = {}\nval_json = {}\nval_images = {}\n",
            quote(&data_dir.join("train.json")),
            quote(&data_dir),
            quote(&data_dir.join("val.json")),
            quote(&data_dir)
        )?;
    }
    // The built-in data's schedule is the ladder's; a base config keeps its own unless asked.
    let mut schedule = String::new();
    if let Some(seed) = a.seed.or((!lvis).then_some(0)) {
        writeln!(schedule, "seed = {seed}")?;
    }
    if !lvis || a.iters.is_some() {
        writeln!(schedule, "iters = {iters}")?;
    }
    if a.quick {
        writeln!(schedule, "batch_size = 2\nwarmup_iters = 2")?;
    }
    if !lvis {
        writeln!(schedule, "eval_every = 0\ncheckpoint_every = 0")?;
    }
    if !schedule.is_empty() {
        writeln!(first, "\n[train]\n{schedule}")?;
    }

    // Every rung's config, each inheriting the one before.
    let mut files = Vec::new();
    let mut prev: Option<PathBuf> = None;
    for (i, r) in RUNGS.iter().enumerate().take(last + 1) {
        let file = cfg_dir.join(format!("{:02}_{}.toml", i + 1, r.name));
        let mut text = match &prev {
            None => first.clone(),
            // Bases by file name: the folder can move.
            Some(p) => format!(
                "# The ladder's rung {} ({}): the previous rung plus what follows.\n_base_ = {}\n\n",
                i + 1,
                r.title,
                quote(Path::new(p.file_name().unwrap_or_default()))
            ),
        };
        if prev.is_some() {
            text.push_str(if lvis { r.lvis } else { r.demo });
        }
        match r.step {
            Step::Train => {}
            Step::Finetune => {
                let base = Config::load(prev.as_deref().unwrap_or(&file), &[])?;
                // The ladder's own work dir; written alone, `seesaw train`'s default one
                // (work_dirs/<config name>, from where the user trains).
                let ckpt = if a.configs_only {
                    Path::new("work_dirs")
                        .join(format!("{:02}_{}", i, RUNGS[i - 1].name))
                        .join("latest.ckpt")
                } else {
                    std::path::absolute(out.join("work").join(RUNGS[i - 1].name))?
                        .join("latest.ckpt")
                };
                writeln!(
                    text,
                    "\n[train]\nload_from = {}\niters = {}\nlr = {}\nwarmup_iters = 0",
                    quote(&ckpt),
                    (base.train.iters / 2).max(1),
                    base.train.lr * 0.1
                )?;
            }
            Step::TestTimeAug => {
                writeln!(
                    text,
                    "# No training: the previous rung's model tested with\n# `seesaw test {} {} --out results.json --eval --tta {}`.",
                    file.display(),
                    if a.configs_only {
                        format!("work_dirs/{:02}_{}/latest.ckpt", i, RUNGS[i - 1].name)
                    } else {
                        "CHECKPOINT".to_string()
                    },
                    tta_spec(lvis)
                )?;
            }
        }
        seesaw_data::io::write_atomic(&file, |w| w.write_all(text.as_bytes()))?;
        files.push(file.clone());
        prev = Some(file);
    }
    println!(
        "wrote the configs of rungs 1-{} to {}",
        last + 1,
        cfg_dir.display()
    );
    if a.configs_only {
        for file in &files {
            let cfg = Config::load(file, &[])?;
            cfg.model
                .init(&seesaw_model::burn::tensor::Device::flex())
                .with_context(|| format!("{}: the model does not build", file.display()))?;
        }
        println!("each loads and builds its model");
        return Ok(());
    }

    let tty = std::io::stderr().is_terminal();
    let device = a.device.open()?;
    let mut done: Vec<Done> = Vec::new();
    let mut val_split: Option<((PathBuf, PathBuf), Split)> = None;
    for (i, r) in RUNGS.iter().enumerate().take(last + 1) {
        if !run_set[i] {
            continue;
        }
        let cfg = Config::load(&files[i], &[])?;
        // Every rung validates on the same split unless a rung changes it: read it once.
        let key = (cfg.data.val_json.clone(), cfg.data.val_images.clone());
        if val_split.as_ref().is_none_or(|(k, _)| *k != key) {
            let split = Split::load(&key.0, &key.1)?;
            val_split = Some((key, split));
        }
        let Some((_, val)) = &val_split else {
            bail!("no validation split");
        };
        let work_dir = out.join("work").join(r.name);
        println!("== rung {} of {}: {} ==", i + 1, RUNGS.len(), r.title);
        let (checkpoint, sec_per_iter) = if r.step == Step::TestTimeAug {
            let from = out.join("work").join(RUNGS[i - 1].name).join("latest.ckpt");
            (from, None)
        } else {
            let t0 = Instant::now();
            let trained = train(
                &cfg,
                &TrainOptions {
                    work_dir: work_dir.clone(),
                    resume: false,
                    progress: tty,
                    stop_at: None,
                    device: a.device,
                },
            )
            .with_context(|| format!("rung {} ({}), {}", i + 1, r.name, files[i].display()))?;
            tracing::info!("{}: trained in {:.0} s", r.name, t0.elapsed().as_secs_f64());
            (
                trained.checkpoint,
                Some(1.0 / trained.iters_per_sec.max(1e-9)),
            )
        };
        let loaded = load_for_inference_on(&checkpoint, Some(&cfg), &device)?;
        let dets = if r.step == Step::TestTimeAug {
            let tta = Tta::parse(tta_spec(lvis), cfg.data.test_scale)?;
            predict_split_tta(&loaded.model, val, &cfg, &tta, tty)?
        } else {
            predict_split(&loaded.model, val, &cfg, tty)?
        };
        let (bbox, segm) = evaluate(&val.dataset, dets, true)?;
        let segm = segm.ok_or_else(|| anyhow!("mask evaluation missing"))?;
        let note = match r.name {
            "syncbn" => Some(
                "one process, so SyncBN is batch norm over the whole batch (the rung adds batch \
                 norms to the neck and the mask head; under mpirun they synchronise)"
                    .to_string(),
            ),
            "tta" => Some(format!("--tta {}", tta_spec(lvis))),
            _ => None,
        };
        println!(
            "{}: box AP {}, mask AP {}",
            r.name,
            cell(ap(&bbox, "AP")),
            cell(ap(&segm, "AP"))
        );
        done.push(Done {
            rung: r,
            config: files[i].clone(),
            bbox,
            segm,
            sec_per_iter,
            note,
        });
        write_results(&done, a, iters, lvis)?;
    }

    print_table(&done);
    let (summary, chart) = write_results(&done, a, iters, lvis)?;
    println!("wrote {} and {}", summary.display(), chart.display());
    Ok(())
}

/// Writes `summary.json` and `ladder.png` for the rungs done so far (after every rung, so that
/// an interrupted ladder keeps what it measured).
fn write_results(
    done: &[Done],
    a: &LadderArgs,
    iters: usize,
    lvis: bool,
) -> Result<(PathBuf, PathBuf)> {
    let out = &a.out;
    let summary = serde_json::json!({
        "iters": iters,
        "seed": a.seed,
        "base": a.base.as_ref().map(|b| b.display().to_string()),
        "quick": a.quick,
        "rungs": done.iter().enumerate().map(|(k, d)| {
            let below = k.checked_sub(1).and_then(|j| ap(&done[j].segm, "AP"));
            serde_json::json!({
                "rung": d.rung.name,
                "title": d.rung.title,
                "config": d.config.display().to_string(),
                "bbox": d.bbox.to_json()["stats"],
                "segm": d.segm.to_json()["stats"],
                "mask_ap_delta": ap(&d.segm, "AP").zip(below).map(|(x, y)| x - y),
                "sec_per_iter": d.sec_per_iter,
                "deck_mask_ap": d.rung.deck,
                "note": d.note,
            })
        }).collect::<Vec<_>>(),
    });
    let summary_file = out.join("summary.json");
    seesaw_data::io::write_json(&summary_file, &summary)?;
    let bars: Vec<viz::LadderBar> = done
        .iter()
        .map(|d| viz::LadderBar {
            label: d.rung.title.to_string(),
            value: ap(&d.segm, "AP"),
            deck: d.rung.deck,
        })
        .collect();
    let chart = out.join("ladder.png");
    viz::plot_ladder(
        &bars,
        &format!(
            "mask AP on {} ({}, seed {}) beside the deck's LVIS v1 val",
            if lvis {
                "the base config's val"
            } else {
                "the built-in data"
            },
            if lvis && a.iters.is_none() {
                "the base config's schedule".to_string()
            } else {
                format!("{iters} iterations per rung")
            },
            a.seed
                .map_or_else(|| "of the config".to_string(), |s| s.to_string())
        ),
        &chart,
    )?;
    Ok((summary_file, chart))
}

fn print_table(done: &[Done]) {
    println!("== the ladder (AP x 100; deck: LVIS v1 val mask AP) ==");
    println!(
        "{:<20} | {:>6} {:>6} {:>6} {:>6} {:>6} | {:>6} | {:>6} | {:>5} {:>6}",
        "rung", "boxAP", "mskAP", "APr", "APc", "APf", "delta", "s/it", "deck", "delta"
    );
    for (k, d) in done.iter().enumerate() {
        let m = ap(&d.segm, "AP");
        let below = k.checked_sub(1).and_then(|j| ap(&done[j].segm, "AP"));
        let delta = m
            .zip(below)
            .map_or_else(String::new, |(x, y)| signed(x - y));
        let deck_below = k.checked_sub(1).map(|j| done[j].rung.deck);
        let deck_delta = deck_below.map_or_else(String::new, |b| signed(d.rung.deck - b));
        println!(
            "{:<20} | {:>6} {:>6} {:>6} {:>6} {:>6} | {:>6} | {:>6} | {:>5.1} {:>6}",
            d.rung.title,
            cell(ap(&d.bbox, "AP")),
            cell(m),
            cell(ap(&d.segm, "APr")),
            cell(ap(&d.segm, "APc")),
            cell(ap(&d.segm, "APf")),
            delta,
            d.sec_per_iter
                .map_or_else(|| "-".into(), |s| format!("{s:.2}")),
            d.rung.deck,
            deck_delta
        );
    }
    for d in done {
        if let Some(n) = &d.note {
            println!("{}: {n}", d.rung.title);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rungs_are_the_decks_in_order() {
        let names: Vec<&str> = RUNGS.iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            [
                "baseline",
                "syncbn",
                "carafe",
                "htc_lite",
                "tsd",
                "mask_scoring",
                "augmentation",
                "fpg",
                "resnest_dcnv2",
                "seesaw",
                "finetune",
                "tta"
            ]
        );
        let deck: Vec<f64> = RUNGS.iter().map(|r| r.deck).collect();
        assert_eq!(
            deck,
            [
                18.7, 18.9, 19.4, 21.9, 23.5, 23.9, 26.5, 27.0, 29.9, 36.8, 37.3, 38.8
            ]
        );
        // Every rung's keys parse as TOML.
        for r in RUNGS {
            for text in [r.demo, r.lvis] {
                text.parse::<toml::Table>()
                    .unwrap_or_else(|e| panic!("{}: {e}", r.name));
            }
        }
    }
}
