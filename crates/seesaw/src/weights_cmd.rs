//! `seesaw weights ...`: inspect, convert and export PyTorch weights.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use seesaw_engine::Config;
use seesaw_model::weights::{Layout, WeightsFile};

#[derive(Subcommand)]
pub enum WeightsCommand {
    /// List a `.pth`/`.pt` (PyTorch zip or pickle), `.safetensors` or detectron2 `.pkl` file's
    /// tensors and shapes.
    Inspect(InspectArgs),
    /// A torchvision / timm backbone (ResNet, ResNeXt, ResNeSt), or a torchvision, mmdetection
    /// or detectron2 detector, to a Seesaw checkpoint.
    Convert(ConvertArgs),
    /// A Seesaw checkpoint to safetensors with PyTorch (mmdetection, detectron2 or torchvision)
    /// names.
    Export(ExportArgs),
}

#[derive(Args)]
pub struct InspectArgs {
    pub file: PathBuf,
    /// Print JSON (`[{"name", "shape", "dtype"}]`) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ConvertArgs {
    /// The PyTorch checkpoint (`.pth`, `.pt`, `.safetensors`, or detectron2's `.pkl`).
    pub input: PathBuf,
    /// Whose names the file uses: torchvision or timm (a ResNet, ResNeXt or ResNeSt: fills the
    /// backbone; a torchvision Mask R-CNN such as maskrcnn_resnet50_fpn: the whole detector),
    /// mmdet (a whole Mask R-CNN / Cascade / HTC / HTC-Lite, 1.x files upgraded) or
    /// detectron2 (a whole Mask R-CNN R50/R101-FPN, `.pkl` or `.pth`).
    #[arg(long = "from")]
    pub from: String,
    /// The run config (TOML) whose `model` the weights are for.
    #[arg(long)]
    pub arch: PathBuf,
    /// The Seesaw checkpoint to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Load what fits and warn about missing, unexpected and mis-shaped tensors.
    #[arg(long)]
    pub allow_partial: bool,
    /// Override keys of the `--arch` config, e.g. --set model.num_classes=1203.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A Seesaw checkpoint.
    pub checkpoint: PathBuf,
    /// The safetensors file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// mmdet (the whole detector, mmdetection's names), detectron2 (the whole Mask R-CNN,
    /// detectron2's names, BGR stem) or torchvision (the backbone alone).
    #[arg(long, default_value = "mmdet")]
    pub layout: String,
}

pub fn run(command: WeightsCommand) -> Result<()> {
    match command {
        WeightsCommand::Inspect(a) => inspect(&a),
        WeightsCommand::Convert(a) => convert(&a),
        WeightsCommand::Export(a) => export(&a),
    }
}

fn inspect(a: &InspectArgs) -> Result<()> {
    let file = WeightsFile::open(&a.file)?;
    let infos = file.infos();
    if a.json {
        let rows: Vec<serde_json::Value> = infos
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "shape": t.shape, "dtype": t.dtype}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let width = infos.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    println!("{:width$}  {:>5}  shape", "name", "dtype");
    let mut total = 0usize;
    for t in &infos {
        total += t.shape.iter().product::<usize>();
        println!("{:width$}  {:>5}  {:?}", t.name, t.dtype, t.shape);
    }
    let under = file
        .top_level_key
        .as_deref()
        .map(|k| format!(" (under `{k}`)"))
        .unwrap_or_default();
    println!("{} tensors{under}, {total} values", infos.len());
    if let Some(classes) = file.mmdet_classes() {
        println!("mmdetection meta: {} classes", classes.len());
    }
    Ok(())
}

fn convert(a: &ConvertArgs) -> Result<()> {
    let layout = Layout::parse(&a.from)?;
    let cfg = Config::load(&a.arch, &a.sets)?;
    let report = seesaw_engine::weights::convert(&a.input, layout, &cfg, &a.out, a.allow_partial)?;
    for p in report.problems(usize::MAX) {
        tracing::warn!("{p}");
    }
    println!(
        "{}: {} tensors loaded into {} ({}){}",
        a.input.display(),
        report.loaded,
        cfg.model.detector,
        if layout == Layout::Torchvision && !WeightsFile::open(&a.input)?.is_torchvision_detector()
        {
            "backbone only"
        } else {
            "whole detector"
        },
        if report.is_complete() {
            String::new()
        } else {
            format!(
                "; {} problems, see the warnings",
                report.problems(usize::MAX).len()
            )
        }
    );
    if !report.initialised.is_empty() {
        println!(
            "{} DCN offset tensors not in the file keep their zero initialisation",
            report.initialised.len()
        );
    }
    println!("wrote {}", a.out.display());
    Ok(())
}

fn export(a: &ExportArgs) -> Result<()> {
    let layout = Layout::parse(&a.layout)?;
    if a.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(anyhow!(
            "{}: the export is a safetensors file; name it *.safetensors",
            a.out.display()
        ));
    }
    let n = seesaw_engine::weights::export(&a.checkpoint, layout, &a.out)?;
    println!(
        "wrote {} ({n} tensors, {:?} names)",
        a.out.display(),
        layout
    );
    Ok(())
}
