//! `seesaw train`, `seesaw test` and `seesaw infer`: the engine behind flags.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use seesaw_engine::Config;
use seesaw_engine::data::Split;
use seesaw_engine::device::DeviceSpec;
use seesaw_engine::predict::{
    Tta, evaluate, predict_file, predict_proposals, predict_split, predict_split_tta, to_results,
};
use seesaw_engine::train::{TrainOptions, load_for_inference_on, train};

use crate::viz;

#[derive(Args)]
pub struct TrainArgs {
    /// A run config (TOML), e.g. configs/demo_mask_rcnn_seesaw.toml.
    pub config: PathBuf,
    /// Where checkpoints, metrics.jsonl and the resolved config.toml go
    /// (default work_dirs/<config name>).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Continue from <work-dir>/latest.ckpt.
    #[arg(long)]
    pub resume: bool,
    /// Override a config key: --set train.lr=0.01 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// cpu (default); cuda or cuda:N (a build with `--features cuda`); wgpu, wgpu:N,
    /// wgpu:integrated[:N] or wgpu:cpu (`--features wgpu`). Under `mpirun`, each
    /// rank on a node takes GPU N + its local rank.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Stop after this many iterations in all, with a checkpoint, as an interruption would
    /// (`--resume` continues exactly).
    #[arg(long)]
    pub stop_at: Option<usize>,
}

#[derive(Args)]
pub struct TestArgs {
    /// The run config (its data.val_json is tested).
    pub config: PathBuf,
    pub checkpoint: PathBuf,
    /// COCO/LVIS result file to write (.json or .json.gz).
    #[arg(long)]
    pub out: PathBuf,
    /// Evaluate the results against data.val_json and print the table.
    #[arg(long)]
    pub eval: bool,
    /// Write the RPN's test proposals instead of detections (class-agnostic boxes on the
    /// original image, category_id of the first category); with --eval, their recall
    /// AR@100/300/1000 (mmdetection's proposal metric). AR@1000 needs
    /// model.rpn.test.max_per_img >= 1000.
    #[arg(long, conflicts_with = "tta")]
    pub proposals: bool,
    /// Write the evaluation stats (keys of `seesaw eval --json`) here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Test-time augmentation: `flip`, `scales=N,N,...` (short sides; `NxM` for both) or both,
    /// e.g. `--tta flip,scales=1200,1400,1600` (mmdetection's aug_test).
    #[arg(long)]
    pub tta: Option<String>,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    #[arg(long)]
    pub quiet: bool,
    /// cpu (default); cuda or cuda:N (a build with `--features cuda`); wgpu, wgpu:N,
    /// wgpu:integrated[:N] or wgpu:cpu (`--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

#[derive(Args)]
pub struct InferArgs {
    /// A checkpoint written by `seesaw train` (it carries its config and class names).
    pub checkpoint: PathBuf,
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Detections drawn have at least this score.
    #[arg(long, default_value_t = 0.3)]
    pub score_thr: f64,
    /// cpu (default); cuda or cuda:N (a build with `--features cuda`); wgpu, wgpu:N,
    /// wgpu:integrated[:N] or wgpu:cpu (`--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

pub fn run_train(a: &TrainArgs) -> Result<()> {
    let cfg = Config::load(&a.config, &a.sets)?;
    let work_dir = a.work_dir.clone().unwrap_or_else(|| {
        PathBuf::from("work_dirs").join(a.config.file_stem().unwrap_or_default())
    });
    let out = train(
        &cfg,
        &TrainOptions {
            work_dir: work_dir.clone(),
            resume: a.resume,
            progress: !a.quiet && std::io::stderr().is_terminal(),
            stop_at: a.stop_at,
            device: a.device,
        },
    )?;
    if out.rank != 0 {
        // Data-parallel replicas: rank 0 reports for all.
        return Ok(());
    }
    let last = out.losses.last().map_or(f64::NAN, |l| l.1);
    println!(
        "trained {} iterations ({:.2} it/s), last loss {last:.4}; checkpoint {}, metrics {}",
        out.losses.len(),
        out.iters_per_sec,
        out.checkpoint.display(),
        work_dir.join("metrics.jsonl").display()
    );
    Ok(())
}

pub fn run_test(a: &TestArgs) -> Result<()> {
    let cfg = Config::load(&a.config, &a.sets)?;
    let loaded = load_for_inference_on(&a.checkpoint, Some(&cfg), &a.device.open()?)?;
    let mut val = Split::load(&cfg.data.val_json, &cfg.data.val_images)?;
    let ckpt_ids = &loaded.meta.category_ids;
    // The evaluated categories: the annotation file's. A checkpoint may predict more (a
    // torchvision COCO model's 90 ids, some of them never annotated): their detections are
    // dropped. One that lacks a category of the file can not be evaluated on it.
    let val_ids = val.category_ids.clone();
    if let Some(missing) = val_ids.iter().find(|id| !ckpt_ids.contains(id)) {
        return Err(anyhow!(
            "{}: category id {missing} is not one the checkpoint predicts (the file has {} \
             categories, the checkpoint {}: ids {})",
            cfg.data.val_json.display(),
            val_ids.len(),
            ckpt_ids.len(),
            id_ranges(ckpt_ids)
        ));
    }
    let extra = ckpt_ids.len() - val_ids.len();
    if extra > 0 {
        tracing::warn!(
            "the checkpoint predicts {extra} categories {} does not have; their detections are \
             dropped",
            cfg.data.val_json.display()
        );
        val.category_ids = ckpt_ids.clone();
    }
    crate::eval_cmd::warn_about_quirks(&cfg.data.val_json, &val.dataset);
    let t0 = std::time::Instant::now();
    let show = !a.quiet && std::io::stderr().is_terminal();
    if a.proposals {
        let props = predict_proposals(&loaded.model, &val, &cfg, show)?;
        let secs = t0.elapsed().as_secs_f64();
        seesaw_data::save_results(&a.out, &props)?;
        println!(
            "{} proposals on {} images ({:.1} images/s) -> {}",
            props.len(),
            val.dataset.images.len(),
            val.dataset.images.len() as f64 / secs.max(1e-9),
            a.out.display()
        );
        if a.eval || a.json.is_some() {
            let ev = seesaw_eval::proposal_recall(&val.dataset, props, &seesaw_eval::PROPOSAL_NUMS)
                .with_context(|| cfg.data.val_json.display().to_string())?;
            crate::eval_cmd::print_table(&ev);
            if let Some(j) = &a.json {
                seesaw_data::io::write_json(j, &vec![ev.to_json()])?;
            }
        }
        return Ok(());
    }
    let dets = match &a.tta {
        Some(spec) => {
            let tta = Tta::parse(spec, cfg.data.test_scale)?;
            predict_split_tta(&loaded.model, &val, &cfg, &tta, show)?
        }
        None => predict_split(&loaded.model, &val, &cfg, show)?,
    };
    let dets: Vec<_> = dets
        .into_iter()
        .filter(|d| val_ids.binary_search(&d.category_id).is_ok())
        .collect();
    let secs = t0.elapsed().as_secs_f64();
    seesaw_data::save_results(&a.out, &dets)?;
    println!(
        "{} detections on {} images ({:.1} images/s) -> {}",
        dets.len(),
        val.dataset.images.len(),
        val.dataset.images.len() as f64 / secs.max(1e-9),
        a.out.display()
    );
    if a.eval || a.json.is_some() {
        let (bbox, segm) = evaluate(&val.dataset, dets, cfg.model.with_mask)
            .with_context(|| cfg.data.val_json.display().to_string())?;
        let mut all = vec![bbox];
        all.extend(segm);
        for ev in &all {
            crate::eval_cmd::print_table(ev);
        }
        if let Some(j) = &a.json {
            let v: Vec<serde_json::Value> = all.iter().map(|e| e.to_json()).collect();
            seesaw_data::io::write_json(j, &v)?;
        }
    }
    Ok(())
}

/// Sorted ids as ranges: `1-5, 7, 9-90`.
fn id_ranges(ids: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

pub fn run_infer(a: &InferArgs) -> Result<()> {
    let loaded = load_for_inference_on(&a.checkpoint, None, &a.device.open()?)?;
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("{}: cannot create", a.out_dir.display()))?;
    let names: HashMap<u64, String> = loaded
        .meta
        .category_ids
        .iter()
        .copied()
        .zip(loaded.meta.class_names.iter().cloned())
        .collect();
    for path in &a.images {
        let (dets, meta) = predict_file(&loaded.model, path, &loaded.config)?;
        let results = to_results(
            &dets,
            &meta,
            &loaded.meta.category_ids,
            &loaded.config.model.roi.test,
        )?;
        let shown: Vec<_> = results
            .into_iter()
            .filter(|d| d.score >= a.score_thr)
            .collect();
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let out = a.out_dir.join(format!("{stem}.png"));
        viz::draw_detections(path, &shown, &names, &out)?;
        println!(
            "{}: {} detections drawn -> {}",
            path.display(),
            shown.len(),
            out.display()
        );
    }
    Ok(())
}
