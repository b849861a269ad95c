//! `seesaw plot`: training curves of finished or running work dirs, several runs on one
//! chart, as mmdetection's `tools/analysis_tools/analyze_logs.py plot_curve` draws them from
//! its logs: the loss and its parts (per stage for the cascades, `loss_mask_iou` with Mask
//! Scoring), the learning rate, seconds per iteration, and validation AP over iterations
//! (`val.segm.AP`, `val.bbox.APr`, ...), read from each run's `metrics.jsonl`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::Args;

use crate::viz::{CurvePanel, plot_curves};

#[derive(Args)]
pub struct PlotArgs {
    /// Work dirs (their metrics.jsonl) or metrics.jsonl files; each is one run on the chart.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// What to draw, one panel each: `loss` or a part (`rpn_cls`, `cls`, `mask`, `s0.loss_cls`,
    /// `loss_mask_iou`, ...), `lr`, `sec_per_iter`, or a validation stat (`val.segm.AP`,
    /// `val.bbox.APr`, ...), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "loss")]
    pub keys: Vec<String>,
    /// The runs' names in the legend, comma-separated (default: the work dirs' names).
    #[arg(long, value_delimiter = ',')]
    pub legend: Vec<String>,
    /// The picture (PNG).
    #[arg(long, default_value = "curves.png")]
    pub out: PathBuf,
    /// The chart's title (default: the keys).
    #[arg(long)]
    pub title: Option<String>,
}

/// The value of `key` in one metrics line: a top-level key (`loss`, `s0.loss_cls`), or a
/// dotted path into it (`val.segm.AP`).
fn lookup(line: &serde_json::Value, key: &str) -> Option<f64> {
    if let Some(v) = line.get(key).and_then(serde_json::Value::as_f64) {
        return Some(v);
    }
    let mut v = line;
    for part in key.split('.') {
        v = v.get(part)?;
    }
    v.as_f64()
}

/// Every key a metrics line holds, dotted for nested values.
fn keys_of(line: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(map) = line.as_object() {
        for (k, v) in map {
            let name = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if v.is_object() {
                keys_of(v, &name, out);
            } else if v.is_number() && name != "iter" {
                out.insert(name);
            }
        }
    }
}

/// The metrics lines of a run (a work dir or its metrics.jsonl file).
///
/// # Errors
/// A missing file, or a line that is not JSON with an `iter` (named by file and line).
fn read_run(path: &Path) -> Result<(PathBuf, Vec<serde_json::Value>)> {
    let file = if path.is_dir() {
        path.join("metrics.jsonl")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("{}: cannot read the run's metrics", file.display()))?;
    let mut lines = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(l)
            .with_context(|| format!("{}: line {} is not JSON", file.display(), i + 1))?;
        if v.get("iter").and_then(serde_json::Value::as_f64).is_none() {
            return Err(anyhow!("{}: line {} has no `iter`", file.display(), i + 1));
        }
        lines.push(v);
    }
    Ok((file, lines))
}

/// A run's name in the legend: its work dir's name.
fn run_name(path: &Path) -> String {
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    dir.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| dir.display().to_string())
}

pub fn run(a: &PlotArgs) -> Result<()> {
    if !a.legend.is_empty() && a.legend.len() != a.runs.len() {
        return Err(anyhow!(
            "--legend names {} runs but {} were given",
            a.legend.len(),
            a.runs.len()
        ));
    }
    let runs: Vec<(PathBuf, Vec<serde_json::Value>)> =
        a.runs.iter().map(|p| read_run(p)).collect::<Result<_>>()?;
    let mut panels = Vec::new();
    for key in &a.keys {
        let mut panel = CurvePanel {
            key: key.clone(),
            runs: Vec::new(),
        };
        for (i, (file, lines)) in runs.iter().enumerate() {
            let pts: Vec<(f64, f64)> = lines
                .iter()
                .filter_map(|l| Some((lookup(l, "iter")?, lookup(l, key)?)))
                .filter(|(_, y)| y.is_finite())
                .collect();
            let name = a
                .legend
                .get(i)
                .cloned()
                .unwrap_or_else(|| run_name(&a.runs[i]));
            if pts.is_empty() {
                tracing::warn!("{}: no `{key}` values", file.display());
            }
            panel.runs.push((name, pts));
        }
        if panel.runs.iter().all(|(_, p)| p.is_empty()) {
            let mut known = BTreeSet::new();
            for (_, lines) in &runs {
                for l in lines {
                    keys_of(l, "", &mut known);
                }
            }
            return Err(anyhow!(
                "--keys: no run has `{key}`; their metrics hold {}",
                known.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        panels.push(panel);
    }
    let title = a.title.clone().unwrap_or_else(|| a.keys.join(", "));
    plot_curves(&panels, &title, &a.out)?;
    println!("wrote {}", a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_flat_or_dotted_paths() {
        let line: serde_json::Value = serde_json::from_str(
            r#"{"iter": 10, "loss": 1.5, "s0.loss_cls": 0.25, "val": {"segm": {"AP": 0.125}}}"#,
        )
        .expect("json");
        assert_eq!(lookup(&line, "loss"), Some(1.5));
        assert_eq!(lookup(&line, "s0.loss_cls"), Some(0.25));
        assert_eq!(lookup(&line, "val.segm.AP"), Some(0.125));
        assert_eq!(lookup(&line, "val.bbox.AP"), None);
        let mut keys = BTreeSet::new();
        keys_of(&line, "", &mut keys);
        assert_eq!(
            keys.into_iter().collect::<Vec<_>>(),
            ["loss", "s0.loss_cls", "val.segm.AP"]
        );
    }
}
