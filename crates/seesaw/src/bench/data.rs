//! `seesaw bench data`: training samples per second of the data pipeline (decode, resize to a
//! drawn scale, flip, masks decoded and resized, normalisation) on an annotation file, with
//! the LVIS recipe's scales by default. `tools/bench_data_torch.py` is the PyTorch DataLoader
//! peer on the same files.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use seesaw_engine::config::DataConfig;
use seesaw_engine::data::{Split, train_samples};

#[derive(Args)]
pub struct DataArgs {
    /// Annotation file (LVIS / COCO).
    #[arg(long)]
    pub json: PathBuf,
    /// Folder of the images.
    #[arg(long)]
    pub images: PathBuf,
    /// Batches of `--batch` images to load.
    #[arg(long, default_value_t = 25)]
    pub batches: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

pub fn run(a: &DataArgs) -> Result<()> {
    let split = Split::load(&a.json, &a.images)?;
    let cfg = DataConfig::default();
    let mut sampler = split.train_sampler(
        cfg.sampler,
        cfg.rfs_threshold,
        cfg.rfs_rounding,
        cfg.filter_empty_gt,
        0,
        a.batch.max(1),
    )?;
    // One warm-up batch (page cache, thread pool).
    train_samples(
        &split,
        &mut sampler,
        0,
        0,
        &cfg,
        true,
        seesaw_data::pipeline::Shard::WHOLE,
    )?;
    let t0 = Instant::now();
    let mut pixels = 0usize;
    for iter in 1..=a.batches {
        let (samples, _) = train_samples(
            &split,
            &mut sampler,
            iter,
            0,
            &cfg,
            true,
            seesaw_data::pipeline::Shard::WHOLE,
        )?;
        pixels += samples.iter().map(|s| s.pixels.len() / 3).sum::<usize>();
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = a.batches * a.batch;
    println!(
        "{}: {n} training samples (LVIS scales 640-800 x 1333, flip, masks) in {secs:.2} s: {:.1} images/s, {:.2} Mpx/s, {} threads",
        a.json.display(),
        n as f64 / secs,
        pixels as f64 / secs / 1e6,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Ok(())
}
