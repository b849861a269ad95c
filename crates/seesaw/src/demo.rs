//! `seesaw demo`: the main job on built-in data, with no download.
//!
//! Today it makes the long-tailed dataset, prints its statistics, plots its long tail, draws a
//! few validation images with their instances, and trains a classifier on a long-tailed set with
//! cross-entropy and with Seesaw Loss. Training and evaluating the detectors join it as they
//! land; it prints only what it computed.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use seesaw_data::{DatasetStats, Frequency};

use crate::data_cmd::{self, SynthArgs};
use crate::viz;

#[derive(Args)]
pub struct DemoArgs {
    /// Where everything is written.
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// Random seed of the dataset.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A smaller dataset (200 training images), for a smoke test in seconds.
    #[arg(long)]
    pub quick: bool,
}

/// Number of validation images drawn into `samples/`.
const SAMPLES: usize = 4;

pub fn run(a: &DemoArgs) -> Result<()> {
    let data_dir = a.out.join("data");
    let synth = SynthArgs {
        out: data_dir.clone(),
        classes: 40,
        train_images: if a.quick { 200 } else { 1000 },
        val_images: None,
        size: 128,
        seed: a.seed,
    };
    println!("== 1. the built-in long-tailed dataset ==");
    let out = data_cmd::synth(&synth)?;
    let train_stats = DatasetStats::of(&out.train);
    let val_stats = DatasetStats::of(&out.val);
    data_cmd::print_stats(&out.train_json, &train_stats);
    data_cmd::print_stats(&out.val_json, &val_stats);

    println!("== 2. pictures ==");
    let plot = a.out.join("train_classes.png");
    viz::plot_class_histogram(
        &train_stats,
        "built-in dataset, train: images per class",
        &plot,
    )?;
    println!("wrote {}", plot.display());

    // Samples: the validation images with the most instances of rare classes, then the busiest.
    let rare: std::collections::HashSet<u64> = out
        .val
        .categories
        .iter()
        .filter(|c| c.frequency == Some(Frequency::Rare))
        .map(|c| c.id)
        .collect();
    let mut ranked: Vec<(usize, usize, u64)> = out
        .val
        .images
        .iter()
        .zip(out.val.annotations_per_image())
        .map(|(im, anns)| {
            let n_rare = anns
                .iter()
                .filter(|&&k| rare.contains(&out.val.annotations[k].category_id))
                .count();
            (n_rare, anns.len(), im.id)
        })
        .collect();
    ranked.sort_by(|x, y| (y.0, y.1).cmp(&(x.0, x.1)).then(x.2.cmp(&y.2)));
    let samples = a.out.join("samples");
    std::fs::create_dir_all(&samples)?;
    for &(_, _, id) in ranked.iter().take(SAMPLES) {
        let file = samples.join(format!("val_{id:06}.png"));
        viz::draw_annotated(&out.val, id, &data_dir, &file)?;
        println!("wrote {}", file.display());
    }

    println!("== 3. Seesaw Loss against cross-entropy on a long-tailed classification set ==");
    crate::bench::long_tail::run(&crate::bench::long_tail::LongTailArgs {
        seed: a.seed,
        classes: 40,
        max_count: 400,
        iters: if a.quick { 300 } else { 1000 },
        losses: vec!["ce".into(), "seesaw".into()],
    })?;
    println!(
        "done: dataset in {}, pictures in {} (detector training and evaluation join the demo with Mask R-CNN)",
        data_dir.display(),
        a.out.display()
    );
    Ok(())
}
