//! Feature Pyramid Network (Lin et al. 2017) as mmdetection's `FPN` with
//! `add_extra_convs=False`: 1x1 laterals, nearest 2x top-down sums, 3x3 outputs, and extra
//! levels by max-pooling the last output (kernel 1, stride 2). With a `norm` (mmdetection's
//! `norm_cfg`, e.g. group norm) every conv is a ConvModule without bias followed by the norm,
//! and `conv = "ws"` standardises their weights (mmdetection's configs/gn+ws/).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::{NeckConfig, NeckKind};
use crate::layers::{ConvKind, Norm, NormKind, conv_forward};
use crate::ops::carafe::upsample_nearest;

impl Fpn {
    /// Builds the FPN (or PAFPN, by `cfg.kind`) over the used inputs of `in_channels` (Xavier
    /// uniform convs, bias 0); `cfg` is checked ([`NeckConfig::check`]).
    pub(crate) fn build(cfg: &NeckConfig, in_channels: &[usize], device: &Device) -> Fpn {
        let c = cfg.out_channels;
        // mmcv's ConvModule drops the conv's bias when a norm follows (`bias='auto'`).
        let with_norm = cfg.norm.kind != NormKind::None;
        let conv = |cin: usize, k: usize, stride: usize| {
            Conv2dConfig::new([cin, c], [k, k])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .with_bias(!with_norm)
                .init(device)
        };
        let mk = |cin: usize, k: usize| conv(cin, k, 1);
        let norms = |n: usize| -> Vec<Norm> {
            (0..n)
                .filter_map(|_| cfg.norm.init(c, false, device))
                .collect()
        };
        let n = in_channels.len();
        let lateral_convs = in_channels.iter().map(|&cin| mk(cin, 1)).collect();
        let fpn_convs = in_channels.iter().map(|_| mk(c, 3)).collect();
        // PAFPN: a stride-2 conv and an output conv for each level above the finest.
        let up = if cfg.kind == NeckKind::Pafpn {
            n - 1
        } else {
            0
        };
        let downsample_convs = (0..up).map(|_| conv(c, 3, 2)).collect();
        let pafpn_convs = (0..up).map(|_| mk(c, 3)).collect();
        Fpn {
            lateral_convs,
            fpn_convs,
            lateral_norms: norms(n),
            fpn_norms: norms(n),
            downsample_convs,
            pafpn_convs,
            downsample_norms: norms(up),
            pafpn_norms: norms(up),
            pool: MaxPool2dConfig::new([1, 1]).with_strides([2, 2]).init(),
            num_outs: cfg.num_outs,
            start_level: cfg.start_level,
            ws: cfg.conv == ConvKind::Ws,
        }
    }
}

/// The feature pyramid.
#[derive(Module, Debug)]
pub struct Fpn {
    pub lateral_convs: Vec<Conv2d>,
    pub fpn_convs: Vec<Conv2d>,
    /// The norm after each lateral conv (mmdetection's `lateral_convs.i.gn`); empty without.
    pub lateral_norms: Vec<Norm>,
    /// The norm after each output conv (`fpn_convs.i.gn`); empty without.
    pub fpn_norms: Vec<Norm>,
    /// PAFPN's stride-2 convs of the bottom-up path (`downsample_convs.i.conv`); empty for FPN.
    pub downsample_convs: Vec<Conv2d>,
    /// PAFPN's output convs of levels 1.. (`pafpn_convs.i.conv`); empty for FPN.
    pub pafpn_convs: Vec<Conv2d>,
    pub downsample_norms: Vec<Norm>,
    pub pafpn_norms: Vec<Norm>,
    pub pool: MaxPool2d,
    pub num_outs: usize,
    /// Backbone levels skipped at the fine end.
    pub start_level: usize,
    /// Weight-standardised convs.
    pub ws: bool,
}

/// Nearest-neighbour upsampling of `x` to `[h, w]` (2x, cropped when the target is odd).
fn upsample_to(x: Tensor<4>, h: usize, w: usize) -> Tensor<4> {
    let [b, c, xh, xw] = x.dims();
    let up = upsample_nearest(x, 2);
    if xh * 2 == h && xw * 2 == w {
        up
    } else {
        up.slice([0..b, 0..c, 0..h.min(xh * 2), 0..w.min(xw * 2)])
    }
}

impl Fpn {
    /// mmcv's ConvModule without activation: `conv` (weight-standardised when the neck's
    /// convs are), then `norm` if any.
    pub(crate) fn conv_module(
        &self,
        conv: &Conv2d,
        norm: Option<&Norm>,
        x: Tensor<4>,
    ) -> Tensor<4> {
        let y = conv_forward(conv, x, self.ws);
        match norm {
            Some(n) => n.forward(y),
            None => y,
        }
    }

    /// `inputs`: the backbone maps, finest first (the first `start_level` unused) ->
    /// `num_outs` maps `[B, C, H_l, W_l]`.
    pub fn forward(&self, inputs: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        let inputs = inputs.into_iter().skip(self.start_level);
        let module =
            |conv: &Conv2d, norm: Option<&Norm>, x: Tensor<4>| self.conv_module(conv, norm, x);
        let mut laterals: Vec<Tensor<4>> = self
            .lateral_convs
            .iter()
            .zip(inputs)
            .enumerate()
            .map(|(i, (conv, x))| module(conv, self.lateral_norms.get(i), x))
            .collect();
        for i in (1..laterals.len()).rev() {
            let [_, _, h, w] = laterals[i - 1].dims();
            let up = upsample_to(laterals[i].clone(), h, w);
            laterals[i - 1] = laterals[i - 1].clone() + up;
        }
        let outs: Vec<Tensor<4>> = self
            .fpn_convs
            .iter()
            .zip(laterals)
            .enumerate()
            .map(|(i, (conv, x))| module(conv, self.fpn_norms.get(i), x))
            .collect();
        let mut outs = self.bottom_up(outs);
        while outs.len() < self.num_outs {
            let last = outs[outs.len() - 1].clone();
            outs.push(self.pool.forward(last));
        }
        outs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_shapes_and_top_down_path() {
        let device = Device::flex();
        let fpn = NeckConfig::default()
            .init(&[8, 16, 32, 64], &device)
            .expect("config");
        let ins = vec![
            Tensor::<4>::ones([2, 8, 16, 20], &device),
            Tensor::<4>::ones([2, 16, 8, 10], &device),
            Tensor::<4>::ones([2, 32, 4, 5], &device),
            Tensor::<4>::ones([2, 64, 2, 3], &device),
        ];
        let outs = fpn.forward(ins);
        let dims: Vec<[usize; 4]> = outs.iter().map(|o| o.dims()).collect();
        assert_eq!(
            dims,
            vec![
                [2, 256, 16, 20],
                [2, 256, 8, 10],
                [2, 256, 4, 5],
                [2, 256, 2, 3],
                [2, 256, 1, 2]
            ]
        );
        let up = upsample_to(
            Tensor::<4>::from_data([[[[1.0f32, 2.0], [3.0, 4.0]]]], &device),
            3,
            4,
        );
        let v = up.into_data().try_to_vec::<f32>().expect("f32");
        assert_eq!(v, vec![1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4.]);
    }
}
