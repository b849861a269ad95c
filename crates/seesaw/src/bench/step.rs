//! `seesaw bench step`: one training iteration (forward, backward, SGD step) of a detector from
//! a config, on a synthetic batch of the given size, and its inference; peak memory at the end.
//! `tools/bench_maskrcnn_torch.py` is the torchvision peer (`maskrcnn_resnet50_fpn`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow};
use clap::Args;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seesaw_engine::Config;
use seesaw_engine::device::DeviceSpec;
use seesaw_engine::train::build_optimizer;
use seesaw_model::burn::module::Module;
use seesaw_model::burn::optim::GradientsParams;
use seesaw_model::burn::tensor::{Distribution, Tensor};
use seesaw_model::losses::ClassStats;
use seesaw_model::structures::{GtInstances, GtMask, ImageMeta};

use super::ops::median;

#[derive(Args)]
pub struct StepArgs {
    /// The detector's config.
    #[arg(long, default_value = "configs/mask_rcnn_r50_fpn_seesaw_2x_lvis.toml")]
    pub config: PathBuf,
    /// Input height and width (padded to a multiple of 32).
    #[arg(long, default_value_t = 800)]
    pub height: usize,
    #[arg(long, default_value_t = 1333)]
    pub width: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Timed iterations (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Override config keys, e.g. --set model.num_classes=90 --set model.loss=ce.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// cpu (default); cuda or cuda:N (a build with `--features cuda`); wgpu, wgpu:N,
    /// wgpu:integrated[:N] or wgpu:cpu (`--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Ground truths of the synthetic batch: a few boxes of several sizes with box-shaped masks.
fn synthetic_gts(h: usize, w: usize, classes: usize) -> GtInstances {
    let boxes: Vec<[f32; 4]> = [
        [0.1, 0.1, 0.4, 0.5],
        [0.5, 0.2, 0.9, 0.8],
        [0.3, 0.6, 0.45, 0.75],
        [0.05, 0.7, 0.12, 0.8],
    ]
    .iter()
    .map(|b| {
        [
            b[0] * w as f32,
            b[1] * h as f32,
            b[2] * w as f32,
            b[3] * h as f32,
        ]
    })
    .collect();
    let masks = boxes.iter().map(|&b| GtMask::filled_box(h, w, b)).collect();
    GtInstances {
        labels: (0..boxes.len()).map(|i| (i * 7) % classes).collect(),
        boxes,
        masks,
        ignore: vec![],
    }
}

pub fn run(a: &StepArgs) -> Result<()> {
    let cfg = Config::load(&a.config, &a.sets)?;
    if a.iters == 0 || a.batch == 0 {
        return Err(anyhow!("--iters and --batch must be positive"));
    }
    let plain_device = a.device.open()?;
    let device = plain_device.clone().autodiff();
    let c = cfg.model.num_classes;
    let stats = ClassStats {
        image_counts: vec![10; c],
        total_images: 100,
    };
    let mut model = cfg.model.init_with(&stats, 0, &device)?;
    let mut optim = build_optimizer(&cfg);
    let (ph, pw) = (a.height.div_ceil(32) * 32, a.width.div_ceil(32) * 32);
    let metas: Vec<ImageMeta> = (0..a.batch)
        .map(|i| ImageMeta {
            image_id: i as u64,
            ori_shape: (a.height as u32, a.width as u32),
            img_shape: (a.height, a.width),
            scale: (1.0, 1.0),
            flip: false,
        })
        .collect();
    let gts: Vec<GtInstances> = (0..a.batch)
        .map(|_| synthetic_gts(a.height, a.width, c))
        .collect();
    let images = Tensor::<4>::random(
        [a.batch, 3, ph, pw],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut step_times = Vec::new();
    let mut fwd_times = Vec::new();
    let mut reads = Vec::new();
    for i in 0..=a.iters {
        let r0 = seesaw_model::readback::reads();
        let t0 = Instant::now();
        let parts = model.forward_train(
            images.clone(),
            &metas,
            &gts,
            &mut seesaw_model::structures::image_rngs(&mut rng, metas.len()),
        )?;
        let total = parts.total();
        // The training loop reads the loss back every step (to log it and stop on NaN).
        seesaw_model::readback::to_f32(total.clone())?;
        let t_fwd = t0.elapsed().as_secs_f64();
        let grads = GradientsParams::from_grads(total.backward(), &model);
        model = optim.step(0.001, model, grads);
        // A GPU runs ahead of the host: wait for the step to finish before timing it.
        device.sync().map_err(|e| anyhow!("{e:?}"))?;
        let t = t0.elapsed().as_secs_f64();
        if i > 0 {
            step_times.push(t);
            fwd_times.push(t_fwd);
            reads.push(seesaw_model::readback::reads() - r0);
        }
    }
    // The neck alone, forward + backward, on this batch's (fixed) backbone maps: its share of
    // the step.
    let feats: Vec<Tensor<4>> = model
        .backbone
        .forward(images.clone())
        .into_iter()
        .map(|f| f.detach())
        .collect();
    let mut neck_times = Vec::new();
    for i in 0..=a.iters {
        let ins: Vec<Tensor<4>> = feats.iter().map(|f| f.clone().require_grad()).collect();
        let t0 = Instant::now();
        let loss = model
            .neck
            .forward(ins.clone())
            .into_iter()
            .map(|o| o.sum())
            .reduce(|x, y| x + y)
            .ok_or_else(|| anyhow!("the neck gave no maps"))?;
        let grads = loss.backward();
        std::hint::black_box(ins.iter().map(|x| x.grad(&grads)).collect::<Vec<_>>());
        device.sync().map_err(|e| anyhow!("{e:?}"))?;
        if i > 0 {
            neck_times.push(t0.elapsed().as_secs_f64());
        }
    }
    let plain = model.valid();
    let test_images = Tensor::<4>::random(
        [a.batch, 3, ph, pw],
        Distribution::Normal(0.0, 1.0),
        &plain_device,
    );
    let mut infer_times = Vec::new();
    for i in 0..=a.iters {
        let t0 = Instant::now();
        let _ = plain.predict(test_images.clone(), &metas)?;
        if i > 0 {
            infer_times.push(t0.elapsed().as_secs_f64());
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{}: batch {} at {}x{} (padded {ph}x{pw}), {} classes, loss {}, {threads} threads, {}",
        a.config.display(),
        a.batch,
        a.height,
        a.width,
        c,
        cfg.model.loss.name(),
        a.device
    );
    let bb = &cfg.model.backbone;
    println!(
        "backbone {}-{}{}{}, random initial weights (bench step does not read \
         model.backbone.init)",
        bb.kind.name(),
        bb.depth,
        if bb.dcn.kind == seesaw_model::backbones::DcnKind::None {
            ""
        } else {
            " + DCN"
        },
        if bb.plugins.is_empty() {
            String::new()
        } else {
            format!(" + {} plugin(s)", bb.plugins.len())
        }
    );
    println!(
        "train step (forward + backward + SGD): median {:.3} s of {} (forward {:.3} s)",
        median(step_times.clone()),
        a.iters,
        median(fwd_times)
    );
    println!(
        "device-to-host reads per train step: {} (median; each waits for the queued kernels \
         on a GPU)",
        {
            reads.sort_unstable();
            reads.get(reads.len() / 2).copied().unwrap_or(0)
        }
    );
    let neck = median(neck_times);
    println!(
        "neck ({}) forward + backward alone: median {neck:.3} s ({:.0}% of the step)",
        cfg.model.neck.kind.name(),
        100.0 * neck / median(step_times)
    );
    println!("inference: median {:.3} s per batch", median(infer_times));
    if let Some(m) = peak_rss_mib() {
        println!("peak resident memory: {m:.0} MiB");
    }
    Ok(())
}
