//! Necks: the feature pyramid between backbone and heads, one file per neck. `model.neck.type`
//! picks one (mmdetection's neck `type`):
//!
//! | type | file | mmdetection |
//! |---|---|---|
//! | `fpn` | [`fpn`] | `FPN` (Lin et al., CVPR 2017) |
//! | `pafpn` | [`pafpn`] | `PAFPN` (Liu et al., CVPR 2018) |
//! | `fpn_carafe` | [`fpn_carafe`] | `FPN_CARAFE` (Wang et al., ICCV 2019) |
//! | `fpg` | [`fpg`] | `FPG` (Chen et al., "Feature Pyramid Grids", 2020) |
//! | `nas_fpn` | [`nas_fpn`] | `NASFPN` (Ghiasi et al., CVPR 2019) |
//!
//! Every neck takes the backbone's maps (finest first, stride 4 up) and gives `num_outs` maps of
//! `out_channels` channels, finest first; `start_level` skips the finest inputs.

pub mod fpg;
pub mod fpn;
pub mod fpn_carafe;
pub mod nas_fpn;
pub mod pafpn;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::layers::{CarafePackConfig, ConvKind, NormConfig};

pub use fpg::{Fpg, FpgPath};
pub use fpn::Fpn;
pub use fpn_carafe::FpnCarafe;
pub use nas_fpn::NasFpn;

/// Which pyramid (mmdetection's neck `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NeckKind {
    /// `FPN`.
    #[default]
    #[serde(rename = "fpn", alias = "FPN")]
    Fpn,
    /// `PAFPN`: the FPN plus a bottom-up path ([`pafpn`]).
    #[serde(rename = "pafpn", alias = "PAFPN")]
    Pafpn,
    /// `FPN_CARAFE`: CARAFE in the top-down path, conv extra levels ([`fpn_carafe`]).
    #[serde(rename = "fpn_carafe", alias = "FPN_CARAFE")]
    FpnCarafe,
    /// `FPG`: feature pyramid grids ([`fpg`]).
    #[serde(rename = "fpg", alias = "FPG")]
    Fpg,
    /// `NASFPN`: the searched merging cells, stacked ([`nas_fpn`]).
    #[serde(rename = "nas_fpn", alias = "NASFPN")]
    NasFpn,
}

impl NeckKind {
    /// The name in configs.
    pub fn name(self) -> &'static str {
        match self {
            NeckKind::Fpn => "fpn",
            NeckKind::Pafpn => "pafpn",
            NeckKind::FpnCarafe => "fpn_carafe",
            NeckKind::Fpg => "fpg",
            NeckKind::NasFpn => "nas_fpn",
        }
    }
}

/// CARAFE's settings in FPN_CARAFE's top-down path (mmdetection's `upsample_cfg` with
/// `type='carafe'`); defaults are mmcv's and configs/carafe/'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NeckCarafeConfig {
    /// Default 5.
    pub up_kernel: usize,
    /// Default 1.
    pub up_group: usize,
    /// Default 3.
    pub encoder_kernel: usize,
    /// Default 1.
    pub encoder_dilation: usize,
    /// Default 64.
    pub compressed_channels: usize,
}

impl Default for NeckCarafeConfig {
    fn default() -> Self {
        let c = CarafePackConfig::new(1, 2);
        Self {
            up_kernel: c.up_kernel,
            up_group: c.up_group,
            encoder_kernel: c.encoder_kernel,
            encoder_dilation: c.encoder_dilation,
            compressed_channels: c.compressed_channels,
        }
    }
}

impl NeckCarafeConfig {
    /// The layer's settings for `channels` channels, 2x.
    pub fn pack(&self, channels: usize) -> CarafePackConfig {
        CarafePackConfig {
            channels,
            scale_factor: 2,
            up_kernel: self.up_kernel,
            up_group: self.up_group,
            encoder_kernel: self.encoder_kernel,
            encoder_dilation: self.encoder_dilation,
            compressed_channels: self.compressed_channels,
        }
    }
}

/// Settings of the neck (`[model.neck]`); defaults are Mask R-CNN's FPN (256 channels, 5
/// outputs P2-P6). The keys after `conv` belong to one neck each; set on another, they are an
/// error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NeckConfig {
    /// `fpn` (default), `pafpn`, `fpn_carafe`, `fpg` or `nas_fpn`.
    #[serde(rename = "type")]
    pub kind: NeckKind,
    /// Channels of every output level. Default 256.
    pub out_channels: usize,
    /// Output levels: the used inputs' count plus extra levels. Default 5.
    pub num_outs: usize,
    /// Backbone levels skipped at the fine end (mmdetection's `start_level`; NAS-FPN's recipe
    /// uses 1: P3-P7). Default 0.
    pub start_level: usize,
    /// A norm after each conv (mmdetection's `norm_cfg`): FPN's and PAFPN's convs, FPG's
    /// transitions (the recipe: `bn`), NAS-FPN's laterals and cells (the recipe: `bn`).
    /// Default none.
    pub norm: NormConfig,
    /// `conv` (default) or `ws` (mmdetection's `conv_cfg=dict(type='ConvWS')`); FPN and PAFPN.
    pub conv: ConvKind,
    /// `fpn_carafe`: the CARAFE upsamplers.
    pub carafe: NeckCarafeConfig,
    /// `fpg` and `nas_fpn`: how many times the pathway is stacked. Default (0): FPG 9,
    /// NAS-FPN 7, as their recipes.
    pub stack_times: usize,
    /// `fpg`: the direction of each stack, `bu` (bottom-up) or `td` (top-down). Default (empty):
    /// all `bu`, as the recipe.
    pub paths: Vec<FpgPath>,
    /// `fpg`: channels inside the grid. Default (0): `out_channels` (the chn128 recipe sets
    /// 128).
    pub inter_channels: usize,
    /// `fpg`: for each level, the stacks where it is not computed (passed on unchanged).
    /// Default (empty): the recipe's triangle, `[[0, 1, 2, 3], [0, 1, 2], [0, 1], [0], []]`
    /// for 5 levels (level `i` skips the first `num_outs - 1 - i` stacks); no skips at all is
    /// one empty list per level.
    pub skip_inds: Vec<Vec<usize>>,
}

impl Default for NeckConfig {
    fn default() -> Self {
        Self {
            kind: NeckKind::Fpn,
            out_channels: 256,
            num_outs: 5,
            start_level: 0,
            norm: NormConfig::default(),
            conv: ConvKind::Conv,
            carafe: NeckCarafeConfig::default(),
            stack_times: 0,
            paths: Vec::new(),
            inter_channels: 0,
            skip_inds: Vec::new(),
        }
    }
}

impl NeckConfig {
    /// FPG's or NAS-FPN's stack count, with the recipe's default.
    pub fn stack_times(&self) -> usize {
        match (self.stack_times, self.kind) {
            (0, NeckKind::NasFpn) => 7,
            (0, _) => 9,
            (n, _) => n,
        }
    }

    /// FPG's path directions, one per stack.
    pub fn paths(&self) -> Vec<FpgPath> {
        if self.paths.is_empty() {
            vec![FpgPath::Bu; self.stack_times()]
        } else {
            self.paths.clone()
        }
    }

    /// FPG's grid width.
    pub fn inter_channels(&self) -> usize {
        if self.inter_channels == 0 {
            self.out_channels
        } else {
            self.inter_channels
        }
    }

    /// FPG's skipped stacks per level.
    pub fn skip_inds(&self) -> Vec<Vec<usize>> {
        if self.skip_inds.is_empty() {
            (0..self.num_outs)
                .map(|i| (0..self.num_outs.saturating_sub(1 + i)).collect())
                .collect()
        } else {
            self.skip_inds.clone()
        }
    }

    /// The config with the defaults its `type` fixes written out (FPG's and NAS-FPN's stacks,
    /// paths, width and skips), so that a resolved config file says what is built.
    pub fn normalized(&self) -> Self {
        match self.kind {
            NeckKind::Fpg => Self {
                stack_times: self.stack_times(),
                paths: self.paths(),
                inter_channels: self.inter_channels(),
                skip_inds: self.skip_inds(),
                ..self.clone()
            },
            NeckKind::NasFpn => Self {
                stack_times: self.stack_times(),
                ..self.clone()
            },
            _ => self.clone(),
        }
    }

    /// What the padded input's sides must be a multiple of: NAS-FPN floors its extra levels
    /// (max-pooling 2x2), so its coarsest level must divide exactly (its recipe pads to 128);
    /// 1 for the other necks, which take any size.
    pub fn required_size_divisor(&self) -> usize {
        match self.kind {
            NeckKind::NasFpn => 4 << (self.start_level + self.num_outs.max(1) - 1),
            _ => 1,
        }
    }

    /// Checks the settings against the backbone's `in_channels` and the neck's own keys.
    ///
    /// # Errors
    /// [`ModelError::Input`] naming the `model.neck` key.
    pub fn check(&self, in_channels: &[usize]) -> Result<()> {
        let bad = |m: String| Err(ModelError::Input(format!("model.neck.{m}")));
        let name = self.kind.name();
        if self.out_channels == 0 {
            return bad("out_channels must be positive".into());
        }
        if self.start_level >= in_channels.len() {
            return bad(format!(
                "start_level {} leaves none of the backbone's {} levels",
                self.start_level,
                in_channels.len()
            ));
        }
        let used = in_channels.len() - self.start_level;
        if self.num_outs < used {
            return bad(format!(
                "num_outs ({}) must be at least the {used} levels used",
                self.num_outs
            ));
        }
        let d = Self::default();
        let mine = |keys: &[NeckKind]| keys.contains(&self.kind);
        let foreign = [
            (
                "carafe",
                self.carafe != d.carafe,
                mine(&[NeckKind::FpnCarafe]),
            ),
            (
                "stack_times",
                self.stack_times != 0,
                mine(&[NeckKind::Fpg, NeckKind::NasFpn]),
            ),
            ("paths", !self.paths.is_empty(), mine(&[NeckKind::Fpg])),
            (
                "inter_channels",
                self.inter_channels != 0,
                mine(&[NeckKind::Fpg]),
            ),
            (
                "skip_inds",
                !self.skip_inds.is_empty(),
                mine(&[NeckKind::Fpg]),
            ),
            (
                "conv",
                self.conv != d.conv,
                mine(&[NeckKind::Fpn, NeckKind::Pafpn]),
            ),
        ];
        if let Some((key, ..)) = foreign.iter().find(|(_, set, ok)| *set && !ok) {
            return bad(format!("{key}: type {name} takes no `{key}`"));
        }
        self.norm.check("model.neck.norm", &[self.out_channels])?;
        match self.kind {
            NeckKind::Fpg => {
                let n = self.stack_times();
                if n == 0 {
                    return bad("stack_times must be positive".into());
                }
                if self.paths().len() != n {
                    return bad(format!(
                        "paths: {} directions for {n} stacks",
                        self.paths().len()
                    ));
                }
                let skips = self.skip_inds();
                if skips.len() != self.num_outs {
                    return bad(format!(
                        "skip_inds: {} lists for {} levels",
                        skips.len(),
                        self.num_outs
                    ));
                }
                if let Some((i, _)) = skips
                    .iter()
                    .enumerate()
                    .find(|(_, s)| s.iter().any(|&k| k >= n))
                {
                    return bad(format!("skip_inds[{i}]: a stack index is not below {n}"));
                }
                // mmdetection reads a top-down pathway's skips by position but its transitions
                // by level, which only agree without skips there.
                let paths = self.paths();
                if let Some((i, s)) = skips.iter().enumerate().find_map(|(i, s)| {
                    s.iter()
                        .find(|&&k| paths[k] == FpgPath::Td)
                        .map(|&k| (i, k))
                }) {
                    return bad(format!(
                        "skip_inds[{i}]: stack {s} is top-down (`td`); skips are only built on \
                         bottom-up stacks"
                    ));
                }
                self.norm
                    .check("model.neck.norm", &[self.inter_channels()])?;
            }
            NeckKind::NasFpn => {
                if self.num_outs != 5 {
                    return bad(format!(
                        "num_outs: NAS-FPN's cells join exactly 5 levels (P3-P7), not {}",
                        self.num_outs
                    ));
                }
                if self.stack_times() == 0 {
                    return bad("stack_times must be positive".into());
                }
            }
            NeckKind::FpnCarafe => {
                self.carafe
                    .pack(self.out_channels)
                    .check()
                    .map_err(|e| ModelError::Input(format!("model.neck.carafe: {e}")))?;
            }
            NeckKind::Fpn | NeckKind::Pafpn => {}
        }
        Ok(())
    }

    /// Builds the neck over the backbone's levels of `in_channels` channels (finest first).
    ///
    /// # Errors
    /// As [`Self::check`].
    pub fn init(&self, in_channels: &[usize], device: &Device) -> Result<Neck> {
        self.check(in_channels)?;
        let ins = &in_channels[self.start_level..];
        Ok(match self.kind {
            NeckKind::Fpn | NeckKind::Pafpn => Neck::Fpn(Fpn::build(self, ins, device)),
            NeckKind::FpnCarafe => Neck::FpnCarafe(FpnCarafe::build(self, ins, device)?),
            NeckKind::Fpg => Neck::Fpg(Fpg::build(self, ins, device)),
            NeckKind::NasFpn => Neck::NasFpn(NasFpn::build(self, ins, device)),
        })
    }
}

/// The neck; the variant's fields carry mmdetection's names (burn leaves the variant out of
/// parameter paths).
#[derive(Module, Debug)]
pub enum Neck {
    /// FPN and PAFPN.
    Fpn(Fpn),
    FpnCarafe(FpnCarafe),
    Fpg(Fpg),
    NasFpn(NasFpn),
}

impl Neck {
    /// `inputs`: the backbone's maps, finest first (all of them: `start_level` is applied
    /// here) -> `num_outs` maps `[B, out_channels, H_l, W_l]`, finest first.
    pub fn forward(&self, inputs: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        match self {
            Neck::Fpn(n) => n.forward(inputs),
            Neck::FpnCarafe(n) => n.forward(inputs),
            Neck::Fpg(n) => n.forward(inputs),
            Neck::NasFpn(n) => n.forward(inputs),
        }
    }

    /// The FPN / PAFPN inside, if that is the neck.
    pub fn as_fpn(&self) -> Option<&Fpn> {
        match self {
            Neck::Fpn(n) => Some(n),
            _ => None,
        }
    }
}
