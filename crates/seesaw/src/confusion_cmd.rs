//! `seesaw confusion-matrix`: mmdetection's `tools/analysis_tools/confusion_matrix.py` for a
//! result file against its ground truth: the matrix of every class as CSV and a picture of
//! the classes with the most ground truths ([`seesaw_eval::confusion`]).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use seesaw_data::{Dataset, check_results_against, load_results_with};
use seesaw_eval::confusion::confusion_matrix;

use crate::viz::plot_confusion;

#[derive(Args)]
pub struct ConfusionArgs {
    /// Ground-truth annotation file (.json or .json.gz).
    #[arg(long)]
    pub gt: PathBuf,
    /// Detection results file (.json or .json.gz) with boxes.
    #[arg(long)]
    pub results: PathBuf,
    /// Where confusion_matrix.csv and confusion_matrix.png are written.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Detections scoring below this are left out (mmdetection's default 0.3).
    #[arg(long, default_value_t = 0.3)]
    pub score_thr: f64,
    /// Box IoU at which a detection meets a ground truth (mmdetection's default 0.5).
    #[arg(long, default_value_t = 0.5)]
    pub tp_iou_thr: f64,
    /// The picture shows the classes with the most ground truths (and background); the CSV
    /// has every class.
    #[arg(long, default_value_t = 30)]
    pub top_k: usize,
}

pub fn run(a: &ConfusionArgs) -> Result<()> {
    let gt = Dataset::load(&a.gt)?;
    let dets = load_results_with(&a.results, false)?;
    check_results_against(&a.results, &dets, &gt)?;
    let kept = dets.iter().filter(|d| d.score >= a.score_thr).count();
    println!(
        "{kept} of {} detections score at least {} (--score-thr)",
        dets.len(),
        a.score_thr
    );
    if kept == 0 {
        let best = dets
            .iter()
            .map(|d| d.score)
            .fold(f64::NEG_INFINITY, f64::max);
        tracing::warn!(
            "no detection scores at least --score-thr {} (the best scores {best:.3}): every \
             ground truth counts as missed; lower --score-thr",
            a.score_thr
        );
    }
    let m = confusion_matrix(&gt, &dets, a.score_thr, a.tp_iou_thr)
        .with_context(|| a.results.display().to_string())?;
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("{}: cannot create the directory", a.out_dir.display()))?;
    let csv = a.out_dir.join("confusion_matrix.csv");
    seesaw_data::io::write_atomic(&csv, |w| w.write_all(m.to_csv().as_bytes()))?;
    println!(
        "wrote {} ({} classes and background)",
        csv.display(),
        m.names.len()
    );
    // The picture: the top classes and background, each row in percent of its own count.
    let mut keep = m.top_classes(a.top_k);
    let bg = m.names.len();
    keep.push(bg);
    let names: Vec<String> = keep
        .iter()
        .map(|&i| {
            m.names
                .get(i)
                .cloned()
                .unwrap_or_else(|| "background".into())
        })
        .collect();
    let percent: Vec<Vec<f64>> = keep
        .iter()
        .map(|&i| {
            let total: u64 = m.counts[i].iter().sum();
            keep.iter()
                .map(|&j| {
                    if total == 0 {
                        0.0
                    } else {
                        100.0 * m.counts[i][j] as f64 / total as f64
                    }
                })
                .collect()
        })
        .collect();
    let png = a.out_dir.join("confusion_matrix.png");
    let title = format!(
        "confusion matrix (score >= {}, IoU >= {}), top {} classes",
        a.score_thr,
        a.tp_iou_thr,
        keep.len() - 1
    );
    plot_confusion(&names, &percent, &title, &png)?;
    println!("wrote {}", png.display());
    Ok(())
}
