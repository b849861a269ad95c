//! Evidence before the detector exists: a long-tailed classification set (Gaussian clusters
//! whose training counts fall geometrically from frequent to rare), a fixed random feature
//! extractor, and a NormedLinear head trained with each loss on the same data, order and
//! budget; top-1 accuracy on balanced test data per frequency group.

use anyhow::Result;
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seesaw_data::Frequency;
use seesaw_model::burn::module::Module;
use seesaw_model::burn::optim::momentum::MomentumConfig;
use seesaw_model::burn::optim::{GradientsParams, SgdConfig};
use seesaw_model::burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::layers::{NormedLinear, NormedLinearConfig};
use seesaw_model::losses::{AnyLoss, LossKind};

#[derive(Args)]
pub struct LongTailArgs {
    /// Seed of the data, the feature extractor, the initial head and the batch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Classes.
    #[arg(long, default_value_t = 40)]
    pub classes: usize,
    /// Training samples of the most frequent class (the rarest gets 2).
    #[arg(long, default_value_t = 400)]
    pub max_count: usize,
    /// SGD iterations per loss.
    #[arg(long, default_value_t = 300)]
    pub iters: usize,
    /// Losses to compare.
    #[arg(long, value_delimiter = ',', default_value = "ce,seesaw")]
    pub losses: Vec<String>,
}

const INPUT_DIM: usize = 16;
const FEATURE_DIM: usize = 64;
const BATCH: usize = 128;
const TEST_PER_CLASS: usize = 50;
const NOISE: f64 = 1.3;

struct Split {
    x: Vec<f32>,
    y: Vec<usize>,
}

/// `n` samples of class `k` around `means[k]`, through the fixed random extractor.
fn sample(
    means: &[Vec<f64>],
    proj: &[f64],
    k: usize,
    n: usize,
    rng: &mut ChaCha8Rng,
    out: &mut Split,
) {
    for _ in 0..n {
        let input: Vec<f64> = means[k]
            .iter()
            .map(|m| {
                let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
                m + NOISE * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
            })
            .collect();
        for f in 0..FEATURE_DIM {
            let v: f64 = (0..INPUT_DIM)
                .map(|i| proj[f * INPUT_DIM + i] * input[i])
                .sum();
            out.x.push(v.max(0.0) as f32);
        }
        out.y.push(k);
    }
}

fn group_of(count: usize) -> Frequency {
    Frequency::from_image_count(count as u64)
}

/// Trains one head with `kind` and returns (accuracy per group, overall), in percent.
fn train_and_test(
    kind: LossKind,
    train: &Split,
    test: &Split,
    counts: &[usize],
    a: &LongTailArgs,
) -> Result<([f64; 3], f64)> {
    let c = a.classes;
    let device = Device::flex().autodiff();
    let width = kind.cls_channels(c);
    // The same initial head for every loss: seeded weights, sliced to the loss's width.
    let mut init_rng = ChaCha8Rng::seed_from_u64(a.seed ^ 0x5EE5A);
    let w: Vec<f32> = (0..(c + 2) * FEATURE_DIM)
        .map(|_| (rng_normal(&mut init_rng) * 0.01) as f32)
        .collect();
    let mut head: NormedLinear = NormedLinearConfig::new(FEATURE_DIM, width).init(&device);
    head.weight = seesaw_model::burn::module::Param::from_tensor(
        Tensor::<2>::from_data(
            TensorData::new(w[..width * FEATURE_DIM].to_vec(), [width, FEATURE_DIM]),
            &device,
        )
        .require_grad(),
    );
    let image_counts: Vec<u64> = counts.iter().map(|&n| n as u64).collect();
    let mut loss = AnyLoss::new(kind, &image_counts, train.y.len() as u64, a.seed);
    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_dampening(0.0)))
        .init();
    let mut order_rng = ChaCha8Rng::seed_from_u64(a.seed ^ 0xBA7C4);
    for it in 0..a.iters {
        let idx: Vec<usize> = (0..BATCH)
            .map(|_| order_rng.random_range(0..train.y.len()))
            .collect();
        let xb: Vec<f32> = idx
            .iter()
            .flat_map(|&i| {
                train.x[i * FEATURE_DIM..(i + 1) * FEATURE_DIM]
                    .iter()
                    .copied()
            })
            .collect();
        let yb: Vec<usize> = idx.iter().map(|&i| train.y[i]).collect();
        let x = Tensor::<2>::from_data(TensorData::new(xb, [BATCH, FEATURE_DIM]), &device);
        let l = loss.forward(head.forward(x), &yb, Some(BATCH as f64))?;
        let grads = GradientsParams::from_grads(l.backward(), &head);
        // Cosine decay from 0.1.
        let lr = 0.05 * (1.0 + (std::f64::consts::PI * it as f64 / a.iters as f64).cos());
        head = optim.step(lr, head, grads);
    }
    let head = head.valid();
    let plain = Device::flex();
    let x = Tensor::<2>::from_data(
        TensorData::new(test.x.clone(), [test.y.len(), FEATURE_DIM]),
        &plain,
    );
    let scores = loss.class_scores(head.forward(x), c)?;
    let pred: Vec<i64> = scores
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut right = [0usize; 3];
    let mut total = [0usize; 3];
    for (p, &y) in pred.iter().zip(&test.y) {
        let g = group_of(counts[y]) as usize;
        total[g] += 1;
        right[g] += usize::from(*p as usize == y);
    }
    let pct = |r: usize, t: usize| {
        if t == 0 {
            f64::NAN
        } else {
            100.0 * r as f64 / t as f64
        }
    };
    Ok((
        [
            pct(right[0], total[0]),
            pct(right[1], total[1]),
            pct(right[2], total[2]),
        ],
        pct(right.iter().sum(), total.iter().sum()),
    ))
}

fn rng_normal(rng: &mut ChaCha8Rng) -> f64 {
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

pub fn run(a: &LongTailArgs) -> Result<()> {
    let kinds: Vec<LossKind> = a
        .losses
        .iter()
        .map(|s| s.parse::<LossKind>())
        .collect::<Result<_, _>>()?;
    if a.classes < 2 || a.max_count < 2 {
        anyhow::bail!("--classes and --max-count must be at least 2");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let c = a.classes;
    let means: Vec<Vec<f64>> = (0..c)
        .map(|_| (0..INPUT_DIM).map(|_| rng_normal(&mut rng)).collect())
        .collect();
    let proj: Vec<f64> = (0..FEATURE_DIM * INPUT_DIM)
        .map(|_| rng_normal(&mut rng) / (INPUT_DIM as f64).sqrt())
        .collect();
    // Geometric counts from max_count down to 2 over the classes.
    let counts: Vec<usize> = (0..c)
        .map(|k| {
            let t = k as f64 / (c - 1).max(1) as f64;
            ((a.max_count as f64).ln() * (1.0 - t) + 2f64.ln() * t)
                .exp()
                .round() as usize
        })
        .collect();
    let mut train = Split {
        x: Vec::new(),
        y: Vec::new(),
    };
    let mut test = Split {
        x: Vec::new(),
        y: Vec::new(),
    };
    for (k, &n) in counts.iter().enumerate() {
        sample(&means, &proj, k, n, &mut rng, &mut train);
        sample(&means, &proj, k, TEST_PER_CLASS, &mut rng, &mut test);
    }
    let groups: Vec<usize> = Frequency::ALL
        .iter()
        .map(|&g| counts.iter().filter(|&&n| group_of(n) == g).count())
        .collect();
    println!(
        "long-tail classification, seed {}: {c} classes (r/c/f = {}/{}/{} by training samples), {} training samples, {} balanced test samples, {} SGD iterations of {BATCH} per loss",
        a.seed,
        groups[0],
        groups[1],
        groups[2],
        train.y.len(),
        test.y.len(),
        a.iters
    );
    println!("| loss | rare | common | frequent | all |");
    println!("|---|---|---|---|---|");
    for kind in kinds {
        let (g, all) = train_and_test(kind, &train, &test, &counts, a)?;
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            kind.name(),
            g[0],
            g[1],
            g[2],
            all
        );
    }
    Ok(())
}
