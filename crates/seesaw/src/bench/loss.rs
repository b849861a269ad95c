//! Cost of Seesaw Loss against cross-entropy: forward + backward on random logits.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use rand::{Rng, SeedableRng};
use seesaw_engine::device::DeviceSpec;
use seesaw_model::burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::losses::{AnyLoss, LossKind};

#[derive(Args)]
pub struct LossArgs {
    /// Rows (sampled RoIs).
    #[arg(long, default_value_t = 512)]
    pub rows: usize,
    /// Class counts to measure at.
    #[arg(long, value_delimiter = ',', default_values_t = [80usize, 1203])]
    pub classes: Vec<usize>,
    /// Timed iterations (after 5 warm-up ones); the median is reported.
    #[arg(long, default_value_t = 50)]
    pub iters: usize,
    /// cpu (default); cuda or cuda:N (a build with `--features cuda`); wgpu, wgpu:N,
    /// wgpu:integrated[:N] or wgpu:cpu (`--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// Median seconds of forward + backward of `kind` over `iters` runs.
fn time_loss(kind: LossKind, rows: usize, c: usize, iters: usize, device: &Device) -> Result<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let counts: Vec<u64> = (0..c).map(|k| 1 + (10_000 / (k + 1)) as u64).collect();
    let mut loss = AnyLoss::new(kind, &counts, 100_000, 0);
    let width = kind.cls_channels(c);
    let device = device.clone().autodiff();
    let mut times = Vec::with_capacity(iters);
    for it in 0..iters + 5 {
        let logits: Vec<f32> = (0..rows * width)
            .map(|_| rng.random_range(-3.0..3.0))
            .collect();
        // A quarter foreground, as the RoI sampler gives.
        let labels: Vec<usize> = (0..rows)
            .map(|k| {
                if k % 4 == 0 {
                    rng.random_range(0..c)
                } else {
                    c
                }
            })
            .collect();
        let x =
            Tensor::<2>::from_data(TensorData::new(logits, [rows, width]), &device).require_grad();
        let t0 = Instant::now();
        let l = loss.forward(x.clone(), &labels, Some(rows as f64))?;
        let grads = l.backward();
        let g = x.grad(&grads).map(|g| g.into_data());
        std::hint::black_box(g);
        if it >= 5 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

pub fn run(a: &LossArgs) -> Result<()> {
    let device = a.device.open()?;
    println!("| N | C | CE fwd+bwd | Seesaw fwd+bwd | Seesaw / CE |");
    println!("|---|---|---|---|---|");
    for &c in &a.classes {
        let ce = time_loss(LossKind::CrossEntropy, a.rows, c, a.iters, &device)?;
        let seesaw = time_loss(LossKind::Seesaw, a.rows, c, a.iters, &device)?;
        println!(
            "| {} | {c} | {:.3} ms | {:.3} ms | {:.2}x |",
            a.rows,
            ce * 1e3,
            seesaw * 1e3,
            seesaw / ce
        );
    }
    Ok(())
}
