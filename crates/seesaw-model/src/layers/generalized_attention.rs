//! Generalized attention (Zhu et al., "An Empirical Study of Spatial Attention Mechanisms in
//! Deep Networks", ICCV 2019), as mmcv's `GeneralizedAttention`
//! (mmcv/cnn/bricks/generalized_attention.py) computes it; mmdetection places it after the 3x3
//! of ResNet bottlenecks (configs/empirical_attention/: `attention_type='1111'` or `'0010'`,
//! `num_heads=8`, `kv_stride=2`, stages c4-c5).
//!
//! Multi-head attention over positions, keys and values taken at every `kv_stride`-th row and
//! column. The energy between query position `(p, q)` and key position `(u, v)` of a head sums
//! the terms `attention_type` switches on (its four characters, in order):
//! query·key, query·(relative position), `appr_bias`·key, `geom_bias`·(relative position). The
//! relative position feature is `Px[q, v] + Py[p, u]`: sinusoidal embeddings of the column and
//! row offsets (query minus key, in input pixels), each through a linear map and divided by
//! sqrt(2). No 1/sqrt(d) temperature; softmax over the keys; the heads' outputs go through
//! `proj_conv` and are added to the input scaled by the learned `gamma` (zero at start, so the
//! block starts as the identity).

use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{ModelError, Result};

/// Settings of [`GeneralizedAttention`]; `new` gives mmcv's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneralizedAttentionConfig {
    pub in_channels: usize,
    /// Attention heads. mmcv's default 9; mmdetection's configs use 8.
    pub num_heads: usize,
    /// Width of the sinusoidal position embedding before its linear map; 0 is `in_channels`
    /// (mmcv's `position_embedding_dim=-1`). Must be a multiple of 4.
    pub position_embedding_dim: usize,
    /// Scale of the pixel offsets fed to the embedding. Default 1.
    pub position_magnitude: f64,
    /// Keys and values at every `kv_stride`-th row and column. Default 2.
    pub kv_stride: usize,
    /// Which of the four energy terms are on, e.g. `"1111"` (default) or `"0010"`.
    pub attention_type: String,
}

impl GeneralizedAttentionConfig {
    /// mmcv's defaults over `in_channels` channels.
    pub fn new(in_channels: usize) -> Self {
        Self {
            in_channels,
            num_heads: 9,
            position_embedding_dim: 0,
            position_magnitude: 1.0,
            kv_stride: 2,
            attention_type: "1111".into(),
        }
    }

    /// The four switches of `attention_type`.
    ///
    /// # Errors
    /// [`ModelError::Input`] unless it is four characters `0` or `1`.
    pub fn terms(&self) -> Result<[bool; 4]> {
        let t = self.attention_type.as_bytes();
        if t.len() != 4 || t.iter().any(|c| *c != b'0' && *c != b'1') {
            return Err(ModelError::Input(format!(
                "attention_type {:?}: four characters 0 or 1 (query-key, query-position, \
                 key only, position only)",
                self.attention_type
            )));
        }
        Ok(std::array::from_fn(|i| t[i] == b'1'))
    }

    /// Builds the block: mmcv's initialisation (Kaiming-uniform with a = 1 for the convs and
    /// linear maps, biases uniform in `±1 / sqrt(2 d)`, `proj_conv`'s bias and `gamma` zero).
    ///
    /// # Errors
    /// [`ModelError::Input`] for a bad `attention_type`, fewer channels than heads, or an
    /// embedding width that is not a multiple of 4.
    pub fn init(&self, device: &Device) -> Result<GeneralizedAttention> {
        let [a0, a1, a2, a3] = self.terms()?;
        let c = self.in_channels;
        let h = self.num_heads;
        let f = if self.position_embedding_dim == 0 {
            c
        } else {
            self.position_embedding_dim
        };
        if h == 0 || c < h || f % 4 != 0 || self.kv_stride == 0 {
            return Err(ModelError::Input(format!(
                "generalized attention: {c} channels, {h} heads, embedding width {f} (a \
                 multiple of 4) and kv_stride {} (positive) do not fit",
                self.kv_stride
            )));
        }
        let d = c / h;
        let out_c = d * h;
        let kaiming = Initializer::KaimingUniform {
            gain: 1.0,
            fan_out_only: false,
        };
        let conv = |cin: usize, cout: usize, bias: bool| {
            Conv2dConfig::new([cin, cout], [1, 1])
                .with_bias(bias)
                .with_initializer(kaiming.clone())
                .init(device)
        };
        let fc = || {
            LinearConfig::new(f / 2, out_c)
                .with_bias(false)
                .with_initializer(kaiming.clone())
                .init(device)
        };
        let s = 1.0 / (2.0 * d as f64).sqrt();
        let bias = || Initializer::Uniform { min: -s, max: s }.init([out_c], device);
        let mut proj_conv = conv(out_c, c, true);
        proj_conv.bias = Some(Initializer::Zeros.init([c], device));
        Ok(GeneralizedAttention {
            appr_bias: a2.then(bias),
            geom_bias: a3.then(bias),
            gamma: Initializer::Zeros.init([1], device),
            query_conv: (a0 || a1).then(|| conv(c, out_c, false)),
            key_conv: (a0 || a2).then(|| conv(c, out_c, false)),
            value_conv: conv(c, out_c, false),
            appr_geom_fc_x: (a1 || a3).then(fc),
            appr_geom_fc_y: (a1 || a3).then(fc),
            proj_conv,
            num_heads: h,
            kv_stride: self.kv_stride,
            position_embedding_dim: f,
            position_magnitude: self.position_magnitude,
            terms: [a0, a1, a2, a3],
        })
    }
}

/// The block; parameter names are mmcv's.
#[derive(Module, Debug)]
pub struct GeneralizedAttention {
    /// `[out_c]`, one `d`-vector per head (term 3).
    pub appr_bias: Option<Param<Tensor<1>>>,
    /// `[out_c]` (term 4).
    pub geom_bias: Option<Param<Tensor<1>>>,
    /// `[1]`: the output's scale before it is added to the input.
    pub gamma: Param<Tensor<1>>,
    /// `[C]` -> `[out_c]`, no bias (terms 1, 2).
    pub query_conv: Option<Conv2d>,
    /// `[C]` -> `[out_c]`, no bias (terms 1, 3).
    pub key_conv: Option<Conv2d>,
    /// `[C]` -> `[out_c]`, no bias.
    pub value_conv: Conv2d,
    /// Column-offset embedding `[F / 2]` -> `[out_c]` (terms 2, 4).
    pub appr_geom_fc_x: Option<Linear>,
    /// Row-offset embedding `[F / 2]` -> `[out_c]` (terms 2, 4).
    pub appr_geom_fc_y: Option<Linear>,
    /// `[out_c]` -> `[C]`, with bias.
    pub proj_conv: Conv2d,
    pub num_heads: usize,
    pub kv_stride: usize,
    pub position_embedding_dim: usize,
    pub position_magnitude: f64,
    pub terms: [bool; 4],
}

/// `x[:, :, ::s, ::s]` (mmcv's 1x1 average pool with stride `s`).
fn subsample(x: Tensor<4>, s: usize) -> Tensor<4> {
    if s == 1 {
        return x;
    }
    let [_, _, h, w] = x.dims();
    let device = x.device();
    let idx = |n: usize| {
        let v: Vec<i64> = (0..n).step_by(s).map(|i| i as i64).collect();
        let len = v.len();
        Tensor::<1, Int>::from_data(TensorData::new(v, [len]), &device)
    };
    x.select(2, idx(h)).select(3, idx(w))
}

impl GeneralizedAttention {
    /// Sinusoidal embedding of offsets `q * 1 - k * kv_stride` (times the magnitude) between
    /// `nq` query and `nk` key positions along one axis -> `[nq, nk, F / 2]`: the sines for
    /// `t < F / 4` (wavelength `1000^(4 t / F)`), then the cosines.
    fn embedding(&self, nq: usize, nk: usize, device: &Device) -> Tensor<3> {
        let f = self.position_embedding_dim;
        let quarter = f / 4;
        let mut v = Vec::with_capacity(nq * nk * 2 * quarter);
        for i in 0..nq {
            for j in 0..nk {
                let delta = (i as f64 - (j * self.kv_stride) as f64) * self.position_magnitude;
                let angle = |t: usize| delta / 1000f64.powf(4.0 / f as f64 * t as f64);
                v.extend((0..quarter).map(|t| angle(t).sin() as f32));
                v.extend((0..quarter).map(|t| angle(t).cos() as f32));
            }
        }
        Tensor::from_data(TensorData::new(v, [nq, nk, 2 * quarter]), device)
    }

    /// Position features of one axis: `[nq, nk, F / 2]` through `fc`, over sqrt(2) ->
    /// `[1, heads, nq, nk, d]`.
    fn position(&self, fc: &Linear, nq: usize, nk: usize, device: &Device) -> Tensor<5> {
        let h = self.num_heads;
        let p = fc
            .forward(self.embedding(nq, nk, device))
            .div_scalar(2f64.sqrt());
        let out_c = p.dims()[2];
        p.reshape([1, nq, nk, h, out_c / h])
            .permute([0, 3, 1, 2, 4])
    }

    /// `[B, C, H, W]` -> the same.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, hq, wq] = x.dims();
        let device = x.device();
        let h = self.num_heads;
        let [a0, a1, a2, a3] = self.terms;
        let x_kv = subsample(x.clone(), self.kv_stride);
        let [_, _, hk, wk] = x_kv.dims();
        let (l, lk) = (hq * wq, hk * wk);
        // [n, h, d, Lk] keys, [n, h, L, d] queries.
        let key = self.key_conv.as_ref().map(|k| {
            let k = k.forward(x_kv.clone());
            let out_c = k.dims()[1];
            k.reshape([n, h, out_c / h, lk])
        });
        let query = self.query_conv.as_ref().map(|q| {
            let q = q.forward(x.clone());
            let out_c = q.dims()[1];
            q.reshape([n, h, out_c / h, l]).swap_dims(2, 3)
        });
        let head_vec = |b: &Param<Tensor<1>>| {
            let out_c = b.dims()[0];
            b.val().reshape([1, h, 1, out_c / h])
        };
        // Terms that do not depend on the query: one row of energies per image and head.
        let query_free = !(a0 || a1 || a3);
        let mut energy: Option<Tensor<4>> = None;
        let mut add = |e: Tensor<4>| {
            energy = Some(match energy.take() {
                Some(acc) => acc + e,
                None => e,
            });
        };
        if let (true, Some(q), Some(k)) = (a0, &query, &key) {
            add(q.clone().matmul(k.clone()));
        }
        if let (true, Some(b), Some(k)) = (a2, &self.appr_bias, &key) {
            add(head_vec(b).matmul(k.clone()));
        }
        if let (Some(fx), Some(fy)) = (&self.appr_geom_fc_x, &self.appr_geom_fc_y)
            && (a1 || a3)
        {
            // The query side of the position terms: a1 * query + a3 * geom_bias, [n, h, L, d].
            let mut qm: Option<Tensor<4>> = None;
            if let (true, Some(q)) = (a1, &query) {
                qm = Some(q.clone());
            }
            if let (true, Some(b)) = (a3, &self.geom_bias) {
                let g = head_vec(b);
                qm = Some(match qm {
                    Some(q) => q + g,
                    None => g.expand([n, h, l, c / h]),
                });
            }
            if let Some(qm) = qm {
                let d = qm.dims()[3];
                let qm = qm.reshape([n, h, hq, wq, d]);
                let px = self.position(fx, wq, wk, &device); // [1, h, Wq, Wk, d]
                let py = self.position(fy, hq, hk, &device); // [1, h, Hq, Hk, d]
                let ex = qm
                    .clone()
                    .swap_dims(2, 3)
                    .matmul(px.swap_dims(3, 4)) // [n, h, Wq, Hq, Wk]
                    .swap_dims(2, 3)
                    .reshape([n, h, hq, wq, 1, wk]);
                let ey = qm
                    .matmul(py.swap_dims(3, 4)) // [n, h, Hq, Wq, Hk]
                    .reshape([n, h, hq, wq, hk, 1]);
                add((ex + ey).reshape([n, h, l, lk]));
            }
        }
        let rows = if query_free { 1 } else { l };
        let energy = energy.unwrap_or_else(|| Tensor::zeros([n, h, rows, lk], &device));
        let attention = softmax(energy, 3);
        let v = self.value_conv.forward(x_kv);
        let out_c = v.dims()[1];
        let v = v.reshape([n, h, out_c / h, lk]).swap_dims(2, 3); // [n, h, Lk, d]
        let out = attention.matmul(v).swap_dims(2, 3); // [n, h, d, rows]
        let out = if query_free {
            out.reshape([n, out_c, 1, 1])
        } else {
            out.reshape([n, out_c, hq, wq])
        };
        let out = self.proj_conv.forward(out);
        let gamma = self.gamma.val().reshape([1, 1, 1, 1]);
        x + out * gamma
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_types_are_checked_and_the_block_starts_as_the_identity() {
        let device = Device::flex();
        let mut cfg = GeneralizedAttentionConfig::new(16);
        cfg.num_heads = 4;
        for bad in ["111", "1121", ""] {
            cfg.attention_type = bad.into();
            assert!(cfg.init(&device).is_err(), "{bad}");
        }
        cfg.attention_type = "0010".into();
        let ga = cfg.init(&device).expect("0010");
        assert!(ga.query_conv.is_none() && ga.appr_geom_fc_x.is_none());
        let x = Tensor::<4>::ones([1, 16, 5, 7], &device);
        let d: f32 = (ga.forward(x.clone()) - x).abs().max().into_scalar();
        assert_eq!(d, 0.0);
    }
}
