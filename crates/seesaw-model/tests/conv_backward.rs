//! The CPU backend's convolution backward (`third_party/burn-flex`, patched with im2col + GEMM
//! kernels) against a direct f64 computation of the same sums: forward output and the input,
//! weight and bias gradients of `conv2d` and `conv_transpose2d`, on shapes with stride, padding
//! (also asymmetric), dilation, groups, depthwise, 1x1, batch 1, odd sizes and maps large
//! enough to be split into several im2col tiles.

// The reference sums read as the formulas they are: index loops over every axis.
#![allow(clippy::needless_range_loop)]

use burn::tensor::module::{conv_transpose2d, conv2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seesaw_model::burn;

fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 values")
}

fn values1(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 values")
}

fn close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{what}[{i}]: {g} against {w}"
        );
    }
}

/// A 2D convolution's shape: input `[b, ci, h, w]`, weight `[co, ci / groups, kh, kw]`.
#[derive(Debug, Clone, Copy)]
struct Case {
    b: usize,
    ci: usize,
    h: usize,
    w: usize,
    co: usize,
    k: [usize; 2],
    stride: [usize; 2],
    /// (begin, end) per axis.
    pad: [(usize, usize); 2],
    dilation: [usize; 2],
    groups: usize,
}

impl Case {
    fn out(&self, axis: usize) -> usize {
        let size = [self.h, self.w][axis];
        let (p0, p1) = self.pad[axis];
        (size + p0 + p1 - self.dilation[axis] * (self.k[axis] - 1) - 1) / self.stride[axis] + 1
    }
}

struct Reference {
    y: Vec<f64>,
    dx: Vec<f64>,
    dw: Vec<f64>,
    db: Vec<f64>,
}

/// Direct sums for `y = conv2d(x, w) + b` and the gradients of `sum(y * gy)`.
fn conv2d_reference(c: &Case, x: &[f32], wt: &[f32], bias: &[f32], gy: &[f32]) -> Reference {
    let (oh, ow) = (c.out(0), c.out(1));
    let (ci_g, co_g) = (c.ci / c.groups, c.co / c.groups);
    let mut r = Reference {
        y: vec![0.0; c.b * c.co * oh * ow],
        dx: vec![0.0; x.len()],
        dw: vec![0.0; wt.len()],
        db: vec![0.0; c.co],
    };
    for b in 0..c.b {
        for o in 0..c.co {
            let grp = o / co_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = ((b * c.co + o) * oh + oy) * ow + ox;
                    let g = gy[yi] as f64;
                    let mut acc = bias[o] as f64;
                    r.db[o] += g;
                    for cc in 0..ci_g {
                        let ch = grp * ci_g + cc;
                        for i in 0..c.k[0] {
                            let iy = (oy * c.stride[0] + i * c.dilation[0]) as isize
                                - c.pad[0].0 as isize;
                            if iy < 0 || iy >= c.h as isize {
                                continue;
                            }
                            for j in 0..c.k[1] {
                                let ix = (ox * c.stride[1] + j * c.dilation[1]) as isize
                                    - c.pad[1].0 as isize;
                                if ix < 0 || ix >= c.w as isize {
                                    continue;
                                }
                                let xi = ((b * c.ci + ch) * c.h + iy as usize) * c.w + ix as usize;
                                let wi = ((o * ci_g + cc) * c.k[0] + i) * c.k[1] + j;
                                acc += x[xi] as f64 * wt[wi] as f64;
                                r.dx[xi] += g * wt[wi] as f64;
                                r.dw[wi] += g * x[xi] as f64;
                            }
                        }
                    }
                    r.y[yi] = acc;
                }
            }
        }
    }
    r
}

/// Runs `op(x, w, b)` under autodiff on random values of the given shapes, takes the gradients
/// of `sum(y * gy)`, and compares output and gradients with `reference(x, w, b, gy)`.
fn check(
    what: &str,
    shapes: ([usize; 4], [usize; 4], [usize; 4]),
    seed: u64,
    op: impl FnOnce(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>,
    reference: impl FnOnce(&[f32], &[f32], &[f32], &[f32]) -> Reference,
) {
    let (xshape, wshape, yshape) = shapes;
    let device = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = random(&mut rng, xshape.iter().product());
    let w = random(&mut rng, wshape.iter().product());
    let bias = random(&mut rng, yshape[1]);
    let gy = random(&mut rng, yshape.iter().product());
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), xshape), &device).require_grad();
    let wt = Tensor::<4>::from_data(TensorData::new(w.clone(), wshape), &device).require_grad();
    let bt =
        Tensor::<1>::from_data(TensorData::new(bias.clone(), [yshape[1]]), &device).require_grad();
    let y = op(xt.clone(), wt.clone(), bt.clone());
    assert_eq!(y.dims(), yshape, "{what}");
    let gyt = Tensor::<4>::from_data(TensorData::new(gy.clone(), yshape), &device);
    let grads = (y.clone() * gyt).sum().backward();
    let want = reference(&x, &w, &bias, &gy);
    close(&format!("{what} y"), &values(y), &want.y);
    let dx = values(xt.grad(&grads).expect("dx"));
    close(&format!("{what} dx"), &dx, &want.dx);
    let dw = values(wt.grad(&grads).expect("dw"));
    close(&format!("{what} dw"), &dw, &want.dw);
    let db = values1(bt.grad(&grads).expect("db"));
    close(&format!("{what} db"), &db, &want.db);
}

fn check_conv2d(c: Case, seed: u64) {
    let options = ConvOptions {
        stride: c.stride,
        padding: c.pad,
        dilation: c.dilation,
        groups: c.groups,
    };
    let shapes = (
        [c.b, c.ci, c.h, c.w],
        [c.co, c.ci / c.groups, c.k[0], c.k[1]],
        [c.b, c.co, c.out(0), c.out(1)],
    );
    check(
        &format!("{c:?}"),
        shapes,
        seed,
        |x, w, b| conv2d(x, w, Some(b), options),
        |x, w, b, gy| conv2d_reference(&c, x, w, b, gy),
    );
}

fn sym(p: usize) -> [(usize, usize); 2] {
    [(p, p), (p, p)]
}

#[allow(clippy::too_many_arguments)]
fn case(
    b: usize,
    ci: usize,
    h: usize,
    w: usize,
    co: usize,
    k: [usize; 2],
    stride: [usize; 2],
    pad: [(usize, usize); 2],
    dilation: [usize; 2],
    groups: usize,
) -> Case {
    Case {
        b,
        ci,
        h,
        w,
        co,
        k,
        stride,
        pad,
        dilation,
        groups,
    }
}

#[test]
fn conv2d_gradients_match_direct_sums() {
    let cases = [
        // 3x3, batch 1, odd sizes
        case(1, 3, 7, 9, 4, [3, 3], [1, 1], sym(1), [1, 1], 1),
        // stride 2 with groups
        case(2, 4, 8, 6, 6, [3, 3], [2, 2], sym(1), [1, 1], 2),
        // rectangular kernel, per-axis stride, padding and dilation
        case(3, 2, 9, 7, 3, [3, 2], [1, 2], [(2, 2), (0, 0)], [2, 1], 1),
        // asymmetric padding
        case(2, 3, 6, 5, 2, [3, 3], [1, 1], [(1, 0), (2, 1)], [1, 1], 1),
        // 1x1 (the input is its own im2col matrix), batch above the thread count
        case(4, 8, 5, 5, 8, [1, 1], [1, 1], sym(0), [1, 1], 1),
        // strided 1x1 (a ResNet downsample)
        case(2, 8, 6, 7, 4, [1, 1], [2, 2], sym(0), [1, 1], 1),
        // 1x1 with groups
        case(3, 6, 4, 4, 9, [1, 1], [1, 1], sym(0), [1, 1], 3),
        // depthwise
        case(1, 4, 5, 5, 4, [3, 3], [1, 1], sym(1), [1, 1], 4),
        // kernel as large as the map, heavy padding
        case(5, 3, 4, 4, 2, [5, 5], [1, 1], sym(2), [1, 1], 1),
        // a 7x7 stride-2 stem
        case(1, 3, 17, 15, 4, [7, 7], [2, 2], sym(3), [1, 1], 1),
        // many input channels on a large map: several im2col tiles per image
        case(1, 256, 40, 40, 4, [3, 3], [1, 1], sym(1), [1, 1], 1),
        case(3, 256, 21, 19, 2, [3, 3], [2, 1], sym(1), [1, 1], 1),
    ];
    for (i, c) in cases.into_iter().enumerate() {
        check_conv2d(c, i as u64);
    }
}

/// A transposed convolution's shape: input `[b, ci, h, w]`, weight `[ci, co / groups, kh, kw]`.
#[derive(Debug, Clone, Copy)]
struct TCase {
    b: usize,
    ci: usize,
    h: usize,
    w: usize,
    co: usize,
    k: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    pad_out: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
}

impl TCase {
    fn out(&self, axis: usize) -> usize {
        let size = [self.h, self.w][axis];
        (size - 1) * self.stride[axis]
            + self.dilation[axis] * (self.k[axis] - 1)
            + self.pad_out[axis]
            + 1
            - 2 * self.pad[axis]
    }
}

fn conv_transpose2d_reference(
    c: &TCase,
    x: &[f32],
    wt: &[f32],
    bias: &[f32],
    gy: &[f32],
) -> Reference {
    let (oh, ow) = (c.out(0), c.out(1));
    let (ci_g, co_g) = (c.ci / c.groups, c.co / c.groups);
    let mut r = Reference {
        y: vec![0.0; c.b * c.co * oh * ow],
        dx: vec![0.0; x.len()],
        dw: vec![0.0; wt.len()],
        db: vec![0.0; c.co],
    };
    for b in 0..c.b {
        for o in 0..c.co {
            for p in 0..oh * ow {
                let yi = (b * c.co + o) * oh * ow + p;
                r.y[yi] += bias[o] as f64;
                r.db[o] += gy[yi] as f64;
            }
        }
        for ch in 0..c.ci {
            let grp = ch / ci_g;
            for iy in 0..c.h {
                for ix in 0..c.w {
                    let xi = ((b * c.ci + ch) * c.h + iy) * c.w + ix;
                    for oo in 0..co_g {
                        let o = grp * co_g + oo;
                        for i in 0..c.k[0] {
                            let y =
                                (iy * c.stride[0] + i * c.dilation[0]) as isize - c.pad[0] as isize;
                            if y < 0 || y >= oh as isize {
                                continue;
                            }
                            for j in 0..c.k[1] {
                                let xx = (ix * c.stride[1] + j * c.dilation[1]) as isize
                                    - c.pad[1] as isize;
                                if xx < 0 || xx >= ow as isize {
                                    continue;
                                }
                                let yi = ((b * c.co + o) * oh + y as usize) * ow + xx as usize;
                                let wi = ((ch * co_g + oo) * c.k[0] + i) * c.k[1] + j;
                                r.y[yi] += x[xi] as f64 * wt[wi] as f64;
                                r.dx[xi] += gy[yi] as f64 * wt[wi] as f64;
                                r.dw[wi] += gy[yi] as f64 * x[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    r
}

fn check_conv_transpose2d(c: TCase, seed: u64) {
    let options = ConvTransposeOptions::new(c.stride, c.pad, c.pad_out, c.dilation, c.groups);
    let shapes = (
        [c.b, c.ci, c.h, c.w],
        [c.ci, c.co / c.groups, c.k[0], c.k[1]],
        [c.b, c.co, c.out(0), c.out(1)],
    );
    check(
        &format!("{c:?}"),
        shapes,
        seed,
        |x, w, b| conv_transpose2d(x, w, Some(b), options),
        |x, w, b, gy| conv_transpose2d_reference(&c, x, w, b, gy),
    );
}

#[test]
fn conv_transpose2d_gradients_match_direct_sums() {
    let t = |b, ci, h, w, co, k, stride, pad, pad_out, dilation, groups| TCase {
        b,
        ci,
        h,
        w,
        co,
        k,
        stride,
        pad,
        pad_out,
        dilation,
        groups,
    };
    let cases = [
        // the mask head's 2x2 stride-2 deconvolution
        t(3, 4, 5, 5, 6, [2, 2], [2, 2], [0, 0], [0, 0], [1, 1], 1),
        t(1, 4, 7, 7, 4, [2, 2], [2, 2], [0, 0], [0, 0], [1, 1], 1),
        // 3x3 stride 2 with padding, output padding and groups
        t(2, 4, 4, 3, 4, [3, 3], [2, 2], [1, 1], [1, 1], [1, 1], 2),
        // rectangular kernel, per-axis stride, padding and dilation
        t(1, 3, 5, 4, 2, [3, 2], [2, 1], [1, 0], [1, 0], [2, 1], 1),
        // stride 1 (a plain "full" correlation)
        t(4, 2, 3, 6, 3, [3, 3], [1, 1], [1, 1], [0, 0], [1, 1], 1),
    ];
    for (i, c) in cases.into_iter().enumerate() {
        check_conv_transpose2d(c, 100 + i as u64);
    }
}
