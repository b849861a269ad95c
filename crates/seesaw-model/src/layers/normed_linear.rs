//! The cosine classifier of Seesaw's box head (mmdetection `NormedLinear`):
//! `y = τ · x / (‖x‖^power + eps) · (W / (‖W_row‖^power + eps))ᵀ + b`.

use burn::module::{Initializer, Module, Param};
use burn::tensor::{Device, Tensor};

/// Settings of [`NormedLinear`].
#[derive(Debug, Clone, PartialEq)]
pub struct NormedLinearConfig {
    pub d_input: usize,
    pub d_output: usize,
    /// Temperature τ. Default 20 (every Seesaw config).
    pub tempearture: f64,
    /// Exponent of the norms. Default 1.
    pub power: f64,
    /// Added to each norm (not to the squared norm). Default 1e-6.
    pub eps: f64,
    /// Keep a bias (initialised to 0). Default true.
    pub bias: bool,
}

impl NormedLinearConfig {
    /// mmdetection's defaults.
    pub fn new(d_input: usize, d_output: usize) -> Self {
        Self {
            d_input,
            d_output,
            tempearture: 20.0,
            power: 1.0,
            eps: 1e-6,
            bias: true,
        }
    }

    /// Weights drawn from N(0, 0.01²), bias 0, as mmdetection initialises them.
    pub fn init(&self, device: &Device) -> NormedLinear {
        let weight = Initializer::Normal {
            mean: 0.0,
            std: 0.01,
        }
        .init([self.d_output, self.d_input], device);
        let bias = self
            .bias
            .then(|| Initializer::Zeros.init([self.d_output], device));
        NormedLinear {
            weight,
            bias,
            tempearture: self.tempearture,
            power: self.power,
            eps: self.eps,
        }
    }
}

/// Cosine (normalized) linear classifier.
#[derive(Module, Debug)]
pub struct NormedLinear {
    /// `[d_output, d_input]`, PyTorch's layout.
    pub weight: Param<Tensor<2>>,
    /// `[d_output]`.
    pub bias: Option<Param<Tensor<1>>>,
    pub tempearture: f64,
    pub power: f64,
    pub eps: f64,
}

/// `x / (‖x‖₂ along `dim`)^power + eps)`.
pub(crate) fn l2_normalize<const D: usize>(
    x: Tensor<D>,
    dim: usize,
    power: f64,
    eps: f64,
) -> Tensor<D> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(dim).sqrt();
    let norm = if power == 1.0 {
        norm
    } else {
        norm.powf_scalar(power)
    };
    x / norm.add_scalar(eps)
}

impl NormedLinear {
    /// `input`: `[N, d_input]` -> `[N, d_output]`.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let w = l2_normalize(self.weight.val(), 1, self.power, self.eps);
        let x = l2_normalize(input, 1, self.power, self.eps).mul_scalar(self.tempearture);
        let y = x.matmul(w.transpose());
        match &self.bias {
            Some(b) => y + b.val().unsqueeze_dim(0),
            None => y,
        }
    }
}
