//! Speed of the detection ops, to set beside torchvision on the same machine
//! (`tools/bench_ops_torch.py` builds the same inputs from the same formulas).

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use rayon::prelude::*;
use seesaw_data::mask::Bitmap;
use seesaw_engine::device::DeviceSpec;
use seesaw_model::burn::tensor::Tensor;
use seesaw_model::ops::Box2;
use seesaw_model::ops::mask_paste::paste_mask;
use seesaw_model::ops::nms::nms;
use seesaw_model::ops::roi_extractor::RoiExtractorConfig;

#[derive(Args)]
pub struct OpsArgs {
    /// Timed repetitions (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// cpu (default), cuda or cuda:N (a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// Box i of the shared benchmark set: spread over an 800 x 1333 image, 20-100 px.
pub fn bench_box(i: usize) -> (Box2, f32) {
    let cx = (i * 7919 % 1333) as f32;
    let cy = (i * 104_729 % 800) as f32;
    let w = 20.0 + (i * 31 % 80) as f32;
    let h = 20.0 + (i * 17 % 80) as f32;
    let score = (i.wrapping_mul(2_654_435_761) % 1000) as f32 / 1000.0;
    (
        [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
        score,
    )
}

/// RoI i of the shared benchmark set: 16-416 x 16-316 px inside an 800 x 1333 image.
pub fn bench_roi(i: usize) -> [f32; 5] {
    let x1 = (i * 7919 % 1200) as f32;
    let y1 = (i * 104_729 % 700) as f32;
    let w = 16.0 + (i * 37 % 400) as f32;
    let h = 16.0 + (i * 53 % 300) as f32;
    [0.0, x1, y1, (x1 + w).min(1333.0), (y1 + h).min(800.0)]
}

/// The median of timings (the upper middle for an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: &OpsArgs) -> Result<()> {
    println!("| op | size | seesaw (median) |");
    println!("|---|---|---|");
    for n in [10_000usize, 100_000] {
        let (boxes, scores): (Vec<Box2>, Vec<f32>) = (0..n).map(bench_box).unzip();
        let mut times = Vec::new();
        let mut kept = 0;
        for it in 0..=a.iters {
            let t0 = Instant::now();
            kept = nms(&boxes, &scores, 0.5).len();
            if it > 0 {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        println!(
            "| nms (IoU 0.5) | {n} boxes, {kept} kept | {:.1} ms |",
            median(times) * 1e3
        );
    }
    let device = a.device.open()?.autodiff();
    let sizes = [(200, 334), (100, 167), (50, 84), (25, 42)];
    let rois: Vec<[f32; 5]> = (0..512).map(bench_roi).collect();
    for out in [7usize, 14] {
        let cfg = RoiExtractorConfig {
            output_size: out,
            ..Default::default()
        };
        let mut times = Vec::new();
        for it in 0..=a.iters {
            let feats: Vec<Tensor<4>> = sizes
                .iter()
                .map(|&(h, w)| {
                    Tensor::<4>::random(
                        [1, 256, h, w],
                        seesaw_model::burn::tensor::Distribution::Default,
                        &device,
                    )
                    .require_grad()
                })
                .collect();
            let t0 = Instant::now();
            let y = cfg.extract(&feats, &rois)?;
            let grads = y.sum().backward();
            let g: Vec<_> = feats
                .iter()
                .filter_map(|f| f.grad(&grads))
                .map(|g| g.into_data())
                .collect();
            std::hint::black_box(g);
            if it > 0 {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        println!(
            "| RoIAlign fwd+bwd, 4 FPN levels, 256 ch | 512 RoIs, {out}x{out} | {:.1} ms |",
            median(times) * 1e3
        );
    }
    // Mask paste: 300 masks of 28x28 probabilities into an 800x1333 image, threshold 0.5.
    let masks: Vec<Vec<f32>> = (0..300).map(bench_mask).collect();
    let boxes: Vec<Box2> = (0..300)
        .map(|k| {
            let r = bench_roi(k);
            [r[1], r[2], r[3], r[4]]
        })
        .collect();
    for encode in [false, true] {
        let mut times = Vec::new();
        let mut area = 0u64;
        for it in 0..=a.iters {
            let t0 = Instant::now();
            area = masks
                .par_iter()
                .zip(&boxes)
                .map(|(m, b)| {
                    let pasted = paste_mask(m, 28, b, 800, 1333, 0.5);
                    let a = pasted.iter().map(|&v| u64::from(v)).sum::<u64>();
                    if encode {
                        let rle = Bitmap {
                            height: 800,
                            width: 1333,
                            data: pasted,
                        }
                        .to_rle();
                        std::hint::black_box(rle.is_ok());
                    }
                    a
                })
                .sum();
            if it > 0 {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        println!(
            "| mask paste{} | 300 masks 28x28 into 800x1333 ({area} px set) | {:.1} ms |",
            if encode { " + RLE encode" } else { "" },
            median(times) * 1e3
        );
    }
    Ok(())
}

/// Mask k of the shared benchmark set: 28 x 28 probabilities from a formula.
pub fn bench_mask(k: usize) -> Vec<f32> {
    (0..28 * 28)
        .map(|p| ((k * 31 + p * 7) % 100) as f32 / 100.0)
        .collect()
}
