//! `seesaw data ...`: synth, stats, show.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use seesaw_data::{Dataset, DatasetStats, Frequency, SynthConfig};

use crate::viz;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Write the built-in long-tailed dataset (PNG images, train.json and val.json in LVIS v1 format).
    Synth(SynthArgs),
    /// Counts per frequency group, instances per image, and the long tail as a plot.
    Stats(StatsArgs),
    /// Draw one image with its masks, boxes and category names.
    Show(ShowArgs),
    /// What repeat-factor sampling does to a training set: epoch size and images per
    /// frequency group, with mmdetection's ceil and the LVIS paper's stochastic rounding.
    Rfs(RfsArgs),
}

#[derive(Args)]
pub struct RfsArgs {
    /// A training annotation file (LVIS or COCO).
    pub file: PathBuf,
    /// The threshold t of r(c) = max(1, sqrt(t / f(c))).
    #[arg(long, default_value_t = 1e-3)]
    pub thr: f64,
    /// As the config key `data.filter_empty_gt`: drop the images without a usable annotation
    /// before f(c) is taken (true, as mmdetection and detectron2), or keep them as a
    /// background class (false).
    #[arg(long, default_value_t = seesaw_data::DataConfig::default().filter_empty_gt,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub filter_empty_gt: bool,
}

#[derive(Args, Clone)]
pub struct SynthArgs {
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of classes (shape x colour), at most 80.
    #[arg(long, default_value_t = 40)]
    pub classes: usize,
    /// Training images.
    #[arg(long, default_value_t = 1000)]
    pub train_images: usize,
    /// Validation images [default: enough for every class to be in max(15, 10% of its train
    /// count) images].
    #[arg(long)]
    pub val_images: Option<usize>,
    /// Image side in pixels.
    #[arg(long, default_value_t = 128)]
    pub size: u32,
    /// Random seed; one seed always gives the same files, byte for byte.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SynthArgs {
    pub fn config(&self) -> SynthConfig {
        SynthConfig {
            classes: self.classes,
            train_images: self.train_images,
            val_images: self.val_images,
            size: self.size,
            seed: self.seed,
            ..SynthConfig::default()
        }
    }
}

#[derive(Args)]
pub struct StatsArgs {
    /// An LVIS or COCO annotation file (.json or .json.gz).
    pub file: PathBuf,
    /// Also plot images per class on a log scale, coloured by frequency group.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(Args)]
pub struct ShowArgs {
    /// An LVIS or COCO annotation file (.json or .json.gz).
    pub file: PathBuf,
    /// The image to draw.
    #[arg(long)]
    pub image_id: u64,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Folder the image file names are relative to [default: the annotation file's folder].
    #[arg(long)]
    pub image_root: Option<PathBuf>,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Synth(a) => synth(&a).map(|_| ()),
        DataCommand::Stats(a) => {
            let ds = load_to_describe(&a.file)?;
            let stats = DatasetStats::of(&ds);
            print_stats(&a.file, &stats);
            if let Some(out) = &a.plot {
                let title = format!("{}: images per class", file_label(&a.file));
                viz::plot_class_histogram(&stats, &title, out)?;
                tracing::info!("wrote {}", out.display());
            }
            Ok(())
        }
        DataCommand::Rfs(a) => {
            if !(a.thr > 0.0 && a.thr.is_finite()) {
                anyhow::bail!("--thr must be positive (got {})", a.thr);
            }
            let ds = Dataset::load(&a.file)?;
            let split = seesaw_data::Split::new(ds, &a.file, &parent_dir(&a.file));
            let s = seesaw_data::sampling::summarize(&split, a.thr, a.filter_empty_gt);
            println!(
                "{}: repeat-factor sampling at t = {}: {} -> epoch of {} (ceil, mmdetection) or {:.1} expected (stochastic, LVIS / detectron2)",
                a.file.display(),
                a.thr,
                s.training.describe(),
                s.epoch_ceil,
                s.epoch_stochastic
            );
            if s.background_images > 0 {
                println!(
                    "  {} images without annotations kept as a background class (data.filter_empty_gt = false)",
                    s.background_images
                );
            }
            println!("  group            images  after ceil  after stochastic (expected)");
            for (g, n, ceil, stoch) in &s.groups {
                println!("  {:<14} {n:>8} {ceil:>11} {stoch:>17.1}", format!("{g}"));
            }
            Ok(())
        }
        DataCommand::Show(a) => {
            let ds = load_to_describe(&a.file)?;
            let root = a.image_root.clone().unwrap_or_else(|| parent_dir(&a.file));
            viz::draw_annotated(&ds, &a.file, a.image_id, &root, &a.out).with_context(|| {
                format!("{}: cannot draw image {}", a.file.display(), a.image_id)
            })?;
            tracing::info!("wrote {}", a.out.display());
            Ok(())
        }
    }
}

/// Generates the built-in dataset and reports its size, speed and groups.
pub fn synth(a: &SynthArgs) -> Result<seesaw_data::synth::SynthOutput> {
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("{}: cannot create", a.out.display()))?;
    let t0 = Instant::now();
    let out = seesaw_data::generate(&a.config(), &a.out)?;
    let secs = t0.elapsed().as_secs_f64();
    let n = out.train.images.len() + out.val.images.len();
    println!(
        "wrote {} train + {} val images ({} + {} instances) to {} in {:.1} s ({:.0} images/s)",
        out.train.images.len(),
        out.val.images.len(),
        out.train.annotations.len(),
        out.val.annotations.len(),
        a.out.display(),
        secs,
        n as f64 / secs.max(1e-9)
    );
    Ok(out)
}

/// Loads a file to describe or draw it: a problem that does not stop that (an LVIS image
/// without its category lists) is a warning on stderr, and an error for every command that
/// trains or evaluates.
fn load_to_describe(file: &Path) -> Result<Dataset> {
    let (ds, warnings) = Dataset::load_with_warnings(file)?;
    for w in warnings {
        tracing::warn!("{w}; described anyway, but evaluating or training on it is an error");
    }
    Ok(ds)
}

fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_label(file: &Path) -> String {
    file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Prints the summary table of a dataset.
pub fn print_stats(file: &Path, s: &DatasetStats) {
    println!(
        "{}: {} format, {} images, {} instances, {} classes",
        file.display(),
        s.format.to_string().to_uppercase(),
        s.images,
        s.annotations,
        s.classes.len()
    );
    let source = if s.declared_groups {
        "groups as declared by the categories' frequency"
    } else {
        "groups counted from this file's images per class"
    };
    println!("  {source}");
    println!(
        "  {:<14} {:>8} {:>12} {:>10} {:>13}",
        "group", "classes", "class-images", "instances", "absent here"
    );
    for g in Frequency::ALL {
        let gs = s.groups[g as usize];
        println!(
            "  {:<14} {:>8} {:>12} {:>10} {:>13}",
            format!("{g} ({})", g.letter()),
            gs.classes,
            gs.images,
            gs.instances,
            gs.absent
        );
    }
    let per = &s.instances_per_image;
    let max = per.len().saturating_sub(1);
    let median = {
        let half = s.images.div_ceil(2);
        let mut seen = 0;
        per.iter()
            .position(|&n| {
                seen += n;
                seen >= half.max(1)
            })
            .unwrap_or(0)
    };
    println!(
        "  instances per image: mean {:.2}, median {median}, max {max}",
        s.mean_instances()
    );
    let buckets: [(usize, usize); 8] = [
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 5),
        (6, 10),
        (11, 20),
        (21, 50),
        (51, usize::MAX),
    ];
    let mut line = String::from("  images by instance count:");
    for (lo, hi) in buckets {
        let n: usize = per
            .iter()
            .enumerate()
            .filter(|&(k, _)| k >= lo && k <= hi)
            .map(|(_, &n)| n)
            .sum();
        let label = match (lo, hi) {
            (l, h) if l == h => l.to_string(),
            (l, usize::MAX) => format!("{l}+"),
            (l, h) => format!("{l}-{h}"),
        };
        line.push_str(&format!(" {label}: {n} |"));
    }
    line.pop();
    println!("{}", line.trim_end());
}
