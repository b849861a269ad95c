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
    /// cpu (default); cuda or cuda:N (a build with `--features cuda`); wgpu, wgpu:N,
    /// wgpu:integrated[:N] or wgpu:cpu (`--features wgpu`).
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
    conv_rows(a, &device)?;
    dcn_rows(a, &device)?;
    upsample_rows(a, &device)?;
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

/// One convolution row of the shared benchmark set: input `[n, c_in, h, w]`, `c_out` outputs,
/// `k x k` kernel, stride, padding; `transposed` is a transposed convolution (weight
/// `[c_in, c_out, k, k]`).
struct ConvRow {
    what: &'static str,
    input: [usize; 4],
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    transposed: bool,
}

/// The shapes that dominate Mask R-CNN's training step: the mask head's 3x3 convs and
/// deconvolution over 128 RoIs, an R50 stage-1 3x3 conv and a 1x1 conv at 800x1333, a stage-4
/// 3x3 conv.
const CONV_ROWS: [ConvRow; 5] = [
    ConvRow {
        what: "mask head 3x3 conv",
        input: [128, 256, 14, 14],
        c_out: 256,
        k: 3,
        stride: 1,
        pad: 1,
        transposed: false,
    },
    ConvRow {
        what: "mask head 2x2 deconv, stride 2",
        input: [128, 256, 14, 14],
        c_out: 256,
        k: 2,
        stride: 2,
        pad: 0,
        transposed: true,
    },
    ConvRow {
        what: "R50 stage 1, 3x3 conv",
        input: [1, 64, 200, 336],
        c_out: 64,
        k: 3,
        stride: 1,
        pad: 1,
        transposed: false,
    },
    ConvRow {
        what: "R50 stage 1, 1x1 conv",
        input: [1, 256, 200, 336],
        c_out: 64,
        k: 1,
        stride: 1,
        pad: 0,
        transposed: false,
    },
    ConvRow {
        what: "R50 stage 4, 3x3 conv, stride 2",
        input: [1, 512, 50, 84],
        c_out: 512,
        k: 3,
        stride: 2,
        pad: 1,
        transposed: false,
    },
];

/// Forward + backward (input, weight and bias gradients) of each [`CONV_ROWS`] shape on random
/// values; inputs are drawn outside the timing.
fn conv_rows(a: &OpsArgs, device: &seesaw_model::burn::tensor::Device) -> Result<()> {
    use seesaw_model::burn::tensor::Distribution;
    use seesaw_model::burn::tensor::module::{conv_transpose2d, conv2d};
    use seesaw_model::burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
    for row in &CONV_ROWS {
        let [n, c, h, w] = row.input;
        let wshape = if row.transposed {
            [c, row.c_out, row.k, row.k]
        } else {
            [row.c_out, c, row.k, row.k]
        };
        let mut times = Vec::new();
        for it in 0..=a.iters {
            let x = Tensor::<4>::random([n, c, h, w], Distribution::Default, device).require_grad();
            let wt = Tensor::<4>::random(wshape, Distribution::Default, device).require_grad();
            let b = Tensor::<1>::random([row.c_out], Distribution::Default, device).require_grad();
            let t0 = Instant::now();
            let y = if row.transposed {
                let o = ConvTransposeOptions::new([row.stride; 2], [row.pad; 2], [0, 0], [1, 1], 1);
                conv_transpose2d(x.clone(), wt.clone(), Some(b.clone()), o)
            } else {
                let o = ConvOptions::new([row.stride; 2], [row.pad; 2], [1, 1], 1);
                conv2d(x.clone(), wt.clone(), Some(b.clone()), o)
            };
            let grads = y.sum().backward();
            let g = [x.grad(&grads), wt.grad(&grads)].map(|g| g.map(|g| g.into_data()));
            std::hint::black_box((g, b.grad(&grads).map(|g| g.into_data())));
            if it > 0 {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        println!(
            "| {} fwd+bwd | {n}x{c}x{h}x{w} -> {} ch, {k}x{k} | {:.1} ms |",
            row.what,
            row.c_out,
            median(times) * 1e3,
            k = row.k
        );
    }
    Ok(())
}

/// DCNv2 shapes of an R50+DCNv2 backbone at 512x512: the 3x3 of stage 2 (c3) and stage 4
/// (c5), with offsets uniform in [-2, 2] pixels and masks in [0, 1].
const DCN_ROWS: [(&str, [usize; 4]); 2] = [
    ("R50 stage 2 DCNv2 3x3", [1, 128, 64, 64]),
    ("R50 stage 4 DCNv2 3x3", [1, 512, 16, 16]),
];

/// Forward only (inference) and forward + backward (input, offset, mask, weight gradients) of
/// each [`DCN_ROWS`] shape; the peer is `torchvision.ops.deform_conv2d`.
fn dcn_rows(a: &OpsArgs, device: &seesaw_model::burn::tensor::Device) -> Result<()> {
    use seesaw_model::burn::tensor::Distribution;
    use seesaw_model::ops::deform_conv::{DeformConvOptions, deform_conv2d};
    let opts = DeformConvOptions {
        padding: [1, 1],
        ..Default::default()
    };
    for (what, [n, c, h, w]) in DCN_ROWS {
        for backward in [false, true] {
            let mut times = Vec::new();
            for it in 0..=a.iters {
                let dev = if backward {
                    device.clone()
                } else {
                    device.clone().inner()
                };
                let x = Tensor::<4>::random([n, c, h, w], Distribution::Default, &dev);
                let off =
                    Tensor::<4>::random([n, 18, h, w], Distribution::Uniform(-2.0, 2.0), &dev);
                let mask = Tensor::<4>::random([n, 9, h, w], Distribution::Default, &dev);
                let wt = Tensor::<4>::random([c, c, 3, 3], Distribution::Default, &dev);
                let (x, off, mask, wt) = if backward {
                    (
                        x.require_grad(),
                        off.require_grad(),
                        mask.require_grad(),
                        wt.require_grad(),
                    )
                } else {
                    (x, off, mask, wt)
                };
                let t0 = Instant::now();
                let y = deform_conv2d(
                    x.clone(),
                    off.clone(),
                    Some(mask.clone()),
                    wt.clone(),
                    None,
                    &opts,
                )?;
                if backward {
                    let grads = y.sum().backward();
                    let g = [&x, &off, &mask, &wt].map(|t| t.grad(&grads).map(|g| g.into_data()));
                    std::hint::black_box(g);
                } else {
                    std::hint::black_box(y.into_data());
                }
                if it > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
            println!(
                "| {what} {} | {n}x{c}x{h}x{w} -> {c} ch | {:.1} ms |",
                if backward { "fwd+bwd" } else { "fwd" },
                median(times) * 1e3
            );
        }
    }
    Ok(())
}

/// The FPN's top-down 2x upsampling of a 256-channel P3-sized map (100x168, an 800x1333 input)
/// to P2 (200x336): nearest (the FPN), bilinear, CARAFE's reassembly given its kernels
/// (softmax-normalised 5x5), and mmcv's whole `CARAFEPack` (compressor to 64 channels, 3x3
/// encoder, softmax, reassembly) as FPN_CARAFE runs it, each forward + backward (input, kernels
/// and parameters). The peer builds the same in `tools/bench_ops_torch.py` (CARAFE from
/// `unfold`, as mmcv's CUDA op does not install on CPU).
fn upsample_rows(a: &OpsArgs, device: &seesaw_model::burn::tensor::Device) -> Result<()> {
    use seesaw_model::burn::tensor::Distribution;
    use seesaw_model::burn::tensor::activation::softmax;
    use seesaw_model::burn::tensor::module::interpolate;
    use seesaw_model::burn::tensor::ops::{InterpolateMode, InterpolateOptions};
    use seesaw_model::layers::CarafePackConfig;
    use seesaw_model::ops::carafe::{carafe, upsample_nearest};
    let [n, c, h, w] = [1, 256, 100, 168];
    let size = format!("{n}x{c}x{h}x{w} -> {}x{}", 2 * h, 2 * w);
    let pack = CarafePackConfig::new(c, 2).init(device)?;
    for what in [
        "nearest 2x",
        "bilinear 2x",
        "CARAFE reassembly (k 5)",
        "CARAFEPack (FPN_CARAFE)",
    ] {
        let mut times = Vec::new();
        for it in 0..=a.iters {
            let x = Tensor::<4>::random([n, c, h, w], Distribution::Default, device).require_grad();
            let kernels = softmax(
                Tensor::<4>::random([n, 25, 2 * h, 2 * w], Distribution::Default, device),
                1,
            )
            .require_grad();
            let t0 = Instant::now();
            let y = match what {
                "nearest 2x" => upsample_nearest(x.clone(), 2),
                "bilinear 2x" => interpolate(
                    x.clone(),
                    InterpolateOptions {
                        mode: InterpolateMode::Bilinear,
                        align_corners: false,
                        output_size: Some([2 * h, 2 * w]),
                        scale_factor: None,
                    },
                ),
                "CARAFE reassembly (k 5)" => carafe(x.clone(), kernels.clone(), 5, 1, 2)?,
                _ => pack.forward(x.clone()),
            };
            let grads = y.sum().backward();
            let g = [x.grad(&grads), kernels.grad(&grads)].map(|g| g.map(|g| g.into_data()));
            let p = pack
                .content_encoder
                .weight
                .grad(&grads)
                .map(|g| g.into_data());
            std::hint::black_box((g, p));
            if it > 0 {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        println!(
            "| {what} fwd+bwd | {size} | {:.1} ms |",
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
