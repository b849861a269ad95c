//! `seesaw eval`: LVIS / COCO AP of a result file, as the official tools compute it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use seesaw_data::{Dataset, Format, check_results_against, load_results_with};
use seesaw_eval::{Evaluation, Evaluator, IouType};

use crate::viz;

#[derive(Clone, Copy, ValueEnum)]
pub enum IouArg {
    Bbox,
    Segm,
    /// Boundary AP: masks matched by min(mask IoU, boundary IoU), as boundary-iou-api.
    Boundary,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Lvis,
    Coco,
}

#[derive(Args)]
pub struct EvalArgs {
    /// Ground-truth annotation file (.json or .json.gz).
    #[arg(long)]
    pub gt: PathBuf,
    /// Detection results file (.json or .json.gz): a list of {image_id, category_id, bbox,
    /// segmentation, score}.
    #[arg(long)]
    pub results: PathBuf,
    /// What to compare: boxes, masks, or mask boundaries (Boundary AP).
    #[arg(long, value_enum)]
    pub iou_type: IouArg,
    /// Boundary AP: the boundary's width as a fraction of the image diagonal.
    #[arg(long, default_value_t = seesaw_eval::boundary::DEFAULT_DILATION_RATIO)]
    pub dilation_ratio: f64,
    /// Rules of lvis-api or pycocotools [default: LVIS when the categories carry `frequency`].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Write {"format", "iou_type", "stats"} here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write per-class AP (with frequency group and training images) as CSV here.
    #[arg(long)]
    pub per_class: Option<PathBuf>,
    /// Plot per-class AP against training frequency here (PNG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Also report Fixed AP and pooled AP (Dave et al. 2021): no per-image cap, the top
    /// --dets-per-class detections of each class over the dataset (LVIS only).
    #[arg(long)]
    pub fixed_ap: bool,
    /// K of Fixed AP.
    #[arg(long, default_value_t = seesaw_eval::fixed_ap::DEFAULT_DETS_PER_CLASS)]
    pub dets_per_class: usize,
}

pub fn run(a: &EvalArgs) -> Result<()> {
    let t0 = Instant::now();
    let gt = Dataset::load(&a.gt)?;
    if a.fixed_ap && matches!(a.iou_type, IouArg::Boundary) {
        anyhow::bail!("--fixed-ap is computed for --iou-type bbox and segm, not boundary");
    }
    let dets = load_results_with(&a.results, !matches!(a.iou_type, IouArg::Bbox))?;
    check_results_against(&a.results, &dets, &gt)?;
    let t_load = t0.elapsed();
    let format = a.format.map(|f| match f {
        FormatArg::Lvis => Format::Lvis,
        FormatArg::Coco => Format::Coco,
    });
    let iou = match a.iou_type {
        IouArg::Bbox => IouType::Bbox,
        IouArg::Segm => IouType::Segm,
        IouArg::Boundary => IouType::Boundary,
    };
    let evaluator = Evaluator::new(&gt, format).with_context(|| a.gt.display().to_string())?;
    evaluator
        .check_gt_masks(iou)
        .with_context(|| a.gt.display().to_string())?;
    let fixed = if a.fixed_ap {
        Some(
            evaluator
                .evaluate_fixed(dets.clone(), iou, a.dets_per_class)
                .with_context(|| a.results.display().to_string())?,
        )
    } else {
        None
    };
    let res = match iou {
        IouType::Boundary => evaluator.evaluate_boundary(dets, a.dilation_ratio),
        _ => evaluator.evaluate(dets, iou),
    }
    .with_context(|| a.results.display().to_string())?;
    tracing::info!(
        "loaded in {:.2} s, evaluated in {:.2} s",
        t_load.as_secs_f64(),
        (t0.elapsed() - t_load).as_secs_f64()
    );
    print_table(&res);
    if let Some(f) = &fixed {
        println!(
            "Fixed AP (top {} per class, no per-image cap) and pooled AP:",
            a.dets_per_class
        );
        for line in &f.table {
            println!("{line}");
        }
    }
    write_outputs(&res, fixed.as_ref(), &gt, a)
}

pub fn print_table(res: &Evaluation) {
    println!(
        "{} {} evaluation:",
        res.format.to_string().to_uppercase(),
        res.iou_type
    );
    for line in &res.table {
        println!("{line}");
    }
}

fn write_outputs(
    res: &Evaluation,
    fixed: Option<&Evaluation>,
    gt: &Dataset,
    a: &EvalArgs,
) -> Result<()> {
    if let Some(out) = &a.json {
        let mut doc = res.to_json();
        if let Some(f) = fixed {
            doc["fixed"] = f.to_json()["stats"].clone();
        }
        seesaw_data::io::write_json(out, &doc)?;
        tracing::info!("wrote {}", out.display());
    }
    if let Some(out) = &a.per_class {
        let csv = res.per_class_csv();
        seesaw_data::io::write_atomic(out, |w| std::io::Write::write_all(w, csv.as_bytes()))?;
        tracing::info!("wrote {}", out.display());
    }
    if let Some(out) = &a.plot {
        let title = format!(
            "{} {}: per-class AP",
            res.format.to_string().to_uppercase(),
            res.iou_type
        );
        viz::plot_ap_vs_frequency(&[("", res)], gt, &title, out)?;
        tracing::info!("wrote {}", out.display());
    }
    Ok(())
}
