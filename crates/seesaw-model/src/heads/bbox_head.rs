//! mmdetection's `Shared2FCBBoxHead`: two shared fully connected layers over the pooled RoI
//! features (or `Shared4Conv1FCBBoxHead`: four 3x3 ConvModules, with a norm such as group norm,
//! then one fully connected layer; mmdetection's `ConvFCBBoxHead`), then a classifier (a plain or a cosine `NormedLinear`, with as many outputs as the
//! loss wants: C + 1 for cross-entropy, C + 2 for Seesaw) and a box regressor (class-specific
//! `4 C`, or class-agnostic `4`).
//!
//! As mmdetection's `BBoxHead`, the head owns its losses (`loss_cls`, whose state, such as
//! Seesaw's class counts, is part of the model's) and its box coder, so it computes its own
//! training loss, decodes its own deltas and turns its logits into class scores.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::heads::double_bbox_head::DoubleConvBranch;
use crate::heads::dual_cls::DualClsBranch;
use crate::heads::rpn_head::zeros_param;
use crate::heads::tsd_bbox_head::{TsdBranch, TsdShape, TsdSpec};
use crate::layers::{
    ConvKind, Norm, NormConfig, NormKind, NormedLinear, NormedLinearConfig, conv_forward,
};
use crate::losses::AnyLoss;
use crate::losses::Reduction;
use crate::losses::bbox::{l1_loss, smooth_l1_loss};
use crate::losses::common::{float_tensor, host_f32, index_tensor};
use crate::ops::Box2;
use crate::ops::box_coder::DeltaXywhCoder;
use crate::roi_heads::sampling::SampledRois;
use crate::structures::ImageMeta;

/// The box regression loss (mmdetection's `loss_bbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxLossKind {
    /// `l1`: L1 loss (Mask R-CNN).
    #[default]
    L1,
    /// `smooth_l1`: smooth L1 with beta 1 (Cascade, HTC).
    SmoothL1,
}

/// Which box head (mmdetection's `bbox_head.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BBoxHeadKind {
    /// `ConvFCBBoxHead` (`Shared2FCBBoxHead`, `Shared4Conv1FCBBoxHead`): shared convs and fully
    /// connected layers feed both the classifier and the regressor.
    #[default]
    #[serde(alias = "ConvFC", alias = "convfc")]
    ConvFc,
    /// `DoubleConvFCBBoxHead` (Double-Head R-CNN, [`super::double_bbox_head`]): the fully
    /// connected layers feed the classifier, a conv branch on RoIs enlarged by
    /// `reg_roi_scale_factor` feeds the regressor.
    #[serde(alias = "DoubleConvFC")]
    Double,
    /// TSD (task-aware spatial disentanglement, [`super::tsd_bbox_head`]; the official
    /// `TSDSharedFCBBoxHead`): the ConvFC head trains as the sibling, TSD's deformably pooled
    /// classification and translated regression branches predict.
    #[serde(alias = "TSDSharedFC", alias = "TSDSharedFCBBoxHead")]
    Tsd,
}

/// Settings of [`BBoxHead`]; defaults are mmdetection's (1024-d FCs, 7x7 RoIs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BBoxHeadConfig {
    /// `conv_fc` (default) or `double`.
    #[serde(rename = "type")]
    pub kind: BBoxHeadKind,
    /// `double`: bottlenecks in the regression branch (mmdetection's `num_convs`). Default 4.
    pub num_convs: usize,
    /// `double`: the regression RoIs are these times larger about their centres
    /// (`DoubleHeadRoIHead.reg_roi_scale_factor`). Default 1.3.
    pub reg_roi_scale_factor: f32,
    /// `tsd`: the progressive constraint's classification margin m_c (the official configs'
    /// `cls_pc_margin`). Default 0.3.
    pub cls_pc_margin: f32,
    /// `tsd`: its localisation margin m_r (`loc_pc_margin`). Default 0.3.
    pub loc_pc_margin: f32,
    /// `tsd`: the paper's gamma, offsets times this times the RoI's size move its bins and
    /// the proposal (the official pooling's `trans_std`). Default 0.1.
    pub trans_std: f32,
    /// `tsd`: samples per bin and axis of the deformable pooling. Default 4.
    pub sample_per_part: usize,
    /// `tsd`: width of `shared_fc` and the offset predictors (a literal 256 in the official
    /// head). Default 256.
    pub offset_channels: usize,
    /// Weight of the classification loss (`loss_cls.loss_weight`). Default 1; the Double Head
    /// recipe uses 2.
    pub loss_cls_weight: f64,
    /// Weight of the box loss (`loss_bbox.loss_weight`). Default 1; the Double Head recipe uses
    /// 2.
    pub loss_bbox_weight: f64,
    /// A second classification branch ([`super::dual_cls`], the LVIS 2020 entry's fine-tuning
    /// step): trained alone on a trained model (`train.load_from`), everything else frozen;
    /// at test time the class scores of both branches are averaged. Default false.
    pub dual_cls: bool,
    /// Shared 3x3 convs before the fully connected layers (4 in `Shared4Conv1FCBBoxHead`).
    /// Default 0.
    pub num_shared_convs: usize,
    /// Channels of the shared convs (`double`: of the regression branch, a multiple of 4; its
    /// recipe uses 1024). Default 256.
    pub conv_out_channels: usize,
    /// Shared fully connected layers: 2 (`Shared2FC`, default) or 1 (`Shared4Conv1FC`);
    /// `double`: the classification branch's (mmdetection's `num_fcs`).
    pub num_shared_fcs: usize,
    /// A norm after each shared conv (mmdetection's `norm_cfg`; the convs then have no bias).
    /// Default none.
    pub norm: NormConfig,
    /// `conv` (default) or `ws` for the shared convs (mmdetection's `conv_cfg`).
    pub conv: ConvKind,
    pub fc_channels: usize,
    /// Cosine classifier (`NormedLinear`, temperature `tau`). Default false; every Seesaw
    /// config turns it on.
    pub normed_classifier: bool,
    /// Temperature of the `NormedLinear` classifier. Default 20.
    pub tau: f64,
    /// One box per RoI instead of one per class. Default false.
    pub class_agnostic: bool,
    /// Deltas are divided by these (DeltaXYWHBBoxCoder). Default 0.1, 0.1, 0.2, 0.2.
    pub target_stds: [f32; 4],
    /// Box regression loss: l1 (Mask R-CNN) or smooth_l1 with beta 1 (Cascade, HTC).
    /// Default l1.
    pub loss_bbox: BoxLossKind,
}

impl Default for BBoxHeadConfig {
    fn default() -> Self {
        Self {
            kind: BBoxHeadKind::ConvFc,
            num_convs: 4,
            reg_roi_scale_factor: 1.3,
            cls_pc_margin: 0.3,
            loc_pc_margin: 0.3,
            trans_std: 0.1,
            sample_per_part: 4,
            offset_channels: 256,
            loss_cls_weight: 1.0,
            loss_bbox_weight: 1.0,
            dual_cls: false,
            num_shared_convs: 0,
            conv_out_channels: 256,
            num_shared_fcs: 2,
            norm: NormConfig::default(),
            conv: ConvKind::Conv,
            fc_channels: 1024,
            normed_classifier: false,
            tau: 20.0,
            class_agnostic: false,
            target_stds: [0.1, 0.1, 0.2, 0.2],
            loss_bbox: BoxLossKind::L1,
        }
    }
}

impl BBoxHeadConfig {
    /// Builds the head for `in_features` = channels x 7 x 7 and `num_classes` C, training
    /// with `loss_cls` (whose kind sets the classifier's width) and decoding with `stds`.
    ///
    /// # Errors
    /// `fc_channels` or `num_classes` zero.
    pub fn init(
        &self,
        in_features: usize,
        num_classes: usize,
        loss_cls: AnyLoss,
        stds: [f32; 4],
        device: &Device,
    ) -> Result<BBoxHead> {
        if self.fc_channels == 0 || num_classes == 0 {
            return Err(ModelError::Input(
                "bbox head: fc_channels and num_classes must be positive".into(),
            ));
        }
        if !(1..=2).contains(&self.num_shared_fcs)
            || (self.num_shared_convs > 0
                && (self.conv_out_channels == 0 || in_features % ROI_AREA != 0))
        {
            return Err(ModelError::Input(format!(
                "model.bbox_head: num_shared_fcs must be 1 or 2 (got {}), conv_out_channels \
                 positive with shared convs",
                self.num_shared_fcs
            )));
        }
        self.norm
            .check("model.bbox_head.norm", &[self.conv_out_channels])?;
        let double = self.kind == BBoxHeadKind::Double;
        let d = Self::default();
        let foreign: Vec<&str> = [
            ("num_convs", self.num_convs != d.num_convs),
            (
                "reg_roi_scale_factor",
                self.reg_roi_scale_factor != d.reg_roi_scale_factor,
            ),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        let tsd = self.kind == BBoxHeadKind::Tsd;
        let tsd_foreign: Vec<&str> = [
            ("cls_pc_margin", self.cls_pc_margin != d.cls_pc_margin),
            ("loc_pc_margin", self.loc_pc_margin != d.loc_pc_margin),
            ("trans_std", self.trans_std != d.trans_std),
            ("sample_per_part", self.sample_per_part != d.sample_per_part),
            ("offset_channels", self.offset_channels != d.offset_channels),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        if !tsd && !tsd_foreign.is_empty() {
            return Err(ModelError::Input(format!(
                "model.bbox_head.{}: TSD's (type = \"tsd\"); type {} takes none",
                tsd_foreign.join(", "),
                if double { "double" } else { "conv_fc" }
            )));
        }
        if tsd {
            let margin_ok = |m: f32| (0.0..=1.0).contains(&m);
            if self.num_shared_convs > 0
                || self.dual_cls
                || self.offset_channels == 0
                || self.sample_per_part == 0
                || !(self.trans_std.is_finite())
                || !margin_ok(self.cls_pc_margin)
                || !margin_ok(self.loc_pc_margin)
            {
                return Err(ModelError::Input(format!(
                    "model.bbox_head: type tsd takes no shared convs (num_shared_convs {}) and \
                     no dual_cls ({}), a positive offset_channels ({}) and sample_per_part ({}), \
                     a finite trans_std ({}) and margins in [0, 1] (cls_pc_margin {}, \
                     loc_pc_margin {})",
                    self.num_shared_convs,
                    self.dual_cls,
                    self.offset_channels,
                    self.sample_per_part,
                    self.trans_std,
                    self.cls_pc_margin,
                    self.loc_pc_margin
                )));
            }
            if !matches!(
                loss_cls.kind(),
                crate::losses::LossKind::CrossEntropy | crate::losses::LossKind::Seesaw
            ) {
                return Err(ModelError::Input(format!(
                    "model.bbox_head: type tsd compares the probabilities of each RoI's label, \
                     background included, which loss {} does not give (set model.loss to ce \
                     or seesaw)",
                    loss_cls.kind().name()
                )));
            }
        }
        if !double && !foreign.is_empty() {
            return Err(ModelError::Input(format!(
                "model.bbox_head.{}: the Double Head's (type = \"double\"); type conv_fc takes \
                 none",
                foreign.join(", ")
            )));
        }
        if double
            && (self.num_shared_convs > 0
                || self.conv_out_channels == 0
                || self.conv_out_channels % 4 != 0
                || !(self.reg_roi_scale_factor > 0.0 && self.reg_roi_scale_factor.is_finite()))
        {
            return Err(ModelError::Input(format!(
                "model.bbox_head: type double takes no shared convs (num_shared_convs {}), a \
                 conv_out_channels that is a positive multiple of 4 (got {}) and a positive \
                 reg_roi_scale_factor (got {})",
                self.num_shared_convs, self.conv_out_channels, self.reg_roi_scale_factor
            )));
        }
        let cls_channels = loss_cls.kind().cls_channels(num_classes);
        let fc = self.fc_channels;
        let xavier = Initializer::XavierUniform { gain: 1.0 };
        let linear = |i: usize, o: usize, init: Initializer| {
            let mut l = LinearConfig::new(i, o).with_initializer(init).init(device);
            l.bias = l.bias.take().map(zeros_param);
            l
        };
        let (cls, cls_normed) = if self.normed_classifier {
            let mut c = NormedLinearConfig::new(fc, cls_channels);
            c.tempearture = self.tau;
            (None, Some(c.init(device)))
        } else {
            let init = Initializer::Normal {
                mean: 0.0,
                std: 0.01,
            };
            (Some(linear(fc, cls_channels, init)), None)
        };
        let reg_out = if self.class_agnostic {
            4
        } else {
            4 * num_classes
        };
        // mmcv's ConvModule: Kaiming-normal (fan out) convs, no bias when a norm follows.
        let with_norm = self.norm.kind != NormKind::None;
        let co = self.conv_out_channels;
        let mut cin = in_features / ROI_AREA;
        let shared_convs: Vec<Conv2d> = (0..self.num_shared_convs)
            .map(|_| {
                let conv = Conv2dConfig::new([cin, co], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .with_initializer(Initializer::KaimingNormal {
                        gain: 2f64.sqrt(),
                        fan_out_only: true,
                    })
                    .with_bias(!with_norm)
                    .init(device);
                cin = co;
                crate::heads::rpn_head::zero_bias(conv)
            })
            .collect();
        let shared_norms = (0..self.num_shared_convs)
            .filter_map(|_| self.norm.init(co, false, device))
            .collect();
        let fc_in = if self.num_shared_convs > 0 {
            co * ROI_AREA
        } else {
            in_features
        };
        // mmdetection builds the Double Head's conv branch before its fully connected layers.
        let double = double.then(|| {
            DoubleConvBranch::new(
                in_features / ROI_AREA,
                co,
                self.num_convs,
                &self.norm,
                device,
            )
        });
        let reg_in = if double.is_some() { co } else { fc };
        let dual_cls = self.dual_cls.then(|| {
            DualClsBranch::new(
                fc_in,
                fc,
                self.num_shared_fcs,
                cls_channels,
                self.normed_classifier.then_some(self.tau),
                device,
            )
        });
        let tsd = tsd.then(|| {
            TsdBranch::new(
                TsdShape {
                    in_channels: in_features / ROI_AREA,
                    offset_channels: self.offset_channels,
                    fc,
                    num_fcs: self.num_shared_fcs,
                    cls_channels,
                    reg_out,
                    tau: self.normed_classifier.then_some(self.tau),
                },
                TsdSpec {
                    cls_pc_margin: self.cls_pc_margin,
                    loc_pc_margin: self.loc_pc_margin,
                    trans_std: self.trans_std,
                    sample_per_part: self.sample_per_part,
                },
                device,
            )
        });
        Ok(BBoxHead {
            double,
            dual_cls,
            tsd,
            shared_convs,
            shared_norms,
            ws: self.conv == ConvKind::Ws,
            fc1: linear(fc_in, fc, xavier.clone()),
            fc2: (self.num_shared_fcs == 2).then(|| linear(fc, fc, xavier)),
            cls,
            cls_normed,
            reg: linear(
                reg_in,
                reg_out,
                Initializer::Normal {
                    mean: 0.0,
                    std: 0.001,
                },
            ),
            loss_cls,
            spec: BoxSpec {
                num_classes,
                class_agnostic: self.class_agnostic,
                stds,
                loss_bbox: self.loss_bbox,
                loss_cls_weight: self.loss_cls_weight,
                loss_bbox_weight: self.loss_bbox_weight,
                reg_roi_scale_factor: (self.kind == BBoxHeadKind::Double)
                    .then_some(self.reg_roi_scale_factor),
            },
        })
    }
}

/// What the head needs besides its weights to train and decode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxSpec {
    pub num_classes: usize,
    pub class_agnostic: bool,
    /// The box coder's stds (the stage's, for cascades).
    pub stds: [f32; 4],
    pub loss_bbox: BoxLossKind,
    pub loss_cls_weight: f64,
    pub loss_bbox_weight: f64,
    /// The Double Head's enlargement of the regression RoIs; None for one pooling.
    pub reg_roi_scale_factor: Option<f32>,
}

/// Positions of a box RoI feature (7 x 7).
const ROI_AREA: usize = 49;

/// The box head.
#[derive(Module, Debug)]
pub struct BBoxHead {
    /// `Shared4Conv1FC`'s 3x3 convs (mmdetection's `shared_convs.i.conv`); empty for Shared2FC.
    pub shared_convs: Vec<Conv2d>,
    /// Their norms (`shared_convs.i.gn`); empty without.
    pub shared_norms: Vec<Norm>,
    /// Weight-standardised shared convs.
    pub ws: bool,
    /// The Double Head's regression branch (mmdetection's `res_block`, `conv_branch`); None
    /// for a ConvFC head.
    pub double: Option<DoubleConvBranch>,
    /// The fine-tuning step's second classification branch; None without.
    pub dual_cls: Option<DualClsBranch>,
    /// TSD's branches (the head's own layers are then its sibling head); None without.
    pub tsd: Option<TsdBranch>,
    pub fc1: Linear,
    /// The second shared fully connected layer (Shared2FC); None for Shared4Conv1FC.
    pub fc2: Option<Linear>,
    pub cls: Option<Linear>,
    pub cls_normed: Option<NormedLinear>,
    pub reg: Linear,
    /// The classification loss and its state (Seesaw's counts, EQLv2's gradient statistics,
    /// the federated loss's generator); checkpoints keep the state.
    #[module(skip)]
    pub loss_cls: AnyLoss,
    #[module(skip)]
    pub spec: BoxSpec,
}

impl BBoxHead {
    /// What the first fully connected layer reads: `rois` `[R, C, 7, 7]` through the shared
    /// convs (if any), flattened `[R, C' * 49]`.
    pub fn fc_input(&self, rois: Tensor<4>) -> Tensor<2> {
        let mut rois = rois;
        for (i, conv) in self.shared_convs.iter().enumerate() {
            let y = conv_forward(conv, rois, self.ws);
            rois = relu(match self.shared_norms.get(i) {
                Some(n) => n.forward(y),
                None => y,
            });
        }
        let [r, c, h, w] = rois.dims();
        rois.reshape([r, c * h * w])
    }

    /// The fine-tuning step's second classification branch's logits on the RoI features
    /// `cls_feats` `[R, C, 7, 7]` (the classification features for a Double Head); None
    /// without the branch.
    pub fn dual_logits(&self, cls_feats: Tensor<4>) -> Option<Tensor<2>> {
        self.dual_cls
            .as_ref()
            .map(|d| d.forward(self.fc_input(cls_feats)))
    }

    /// How much larger the regression RoIs are pooled (the Double Head's
    /// `reg_roi_scale_factor`); None when the head reads one set of features.
    pub fn reg_roi_scale(&self) -> Option<f32> {
        self.double.as_ref().and(self.spec.reg_roi_scale_factor)
    }

    /// `cls_feats` `[R, C, 7, 7]` and, for the Double Head, `reg_feats` (the same RoIs
    /// enlarged by [`Self::reg_roi_scale`]) -> class logits `[R, cls_channels]` and deltas
    /// `[R, 4 or 4 C]`. A ConvFC head reads `cls_feats` only.
    pub fn forward_pair(
        &self,
        cls_feats: Tensor<4>,
        reg_feats: Tensor<4>,
    ) -> (Tensor<2>, Tensor<2>) {
        let Some(double) = &self.double else {
            return self.forward(cls_feats);
        };
        let [r, c, h, w] = cls_feats.dims();
        let mut x = relu(self.fc1.forward(cls_feats.reshape([r, c * h * w])));
        if let Some(fc2) = &self.fc2 {
            x = relu(fc2.forward(x));
        }
        let cls = self.classify(x, r);
        (cls, self.reg.forward(double.forward(reg_feats)))
    }

    fn classify(&self, x: Tensor<2>, r: usize) -> Tensor<2> {
        match (&self.cls, &self.cls_normed) {
            (_, Some(n)) => n.forward(x),
            (Some(l), None) => l.forward(x),
            (None, None) => unreachable_cls(r, x),
        }
    }

    /// `rois` `[R, C, 7, 7]` -> class logits `[R, cls_channels]` and deltas `[R, 4 or 4 C]`
    /// (the Double Head reads these features for both branches; see [`Self::forward_pair`]).
    pub fn forward(&self, rois: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        if self.double.is_some() {
            return self.forward_pair(rois.clone(), rois);
        }
        let x = self.fc_input(rois);
        let r = x.dims()[0];
        let mut x = relu(self.fc1.forward(x));
        if let Some(fc2) = &self.fc2 {
            x = relu(fc2.forward(x));
        }
        let cls = self.classify(x.clone(), r);
        (cls, self.reg.forward(x))
    }

    /// The classification and box losses of the sampled RoIs `s` (mmdetection's
    /// `BBoxHead.loss`): `loss_cls` averaged over the RoIs, L1 / smooth L1 over the positives'
    /// deltas divided by the number of RoIs. Updates the classification loss's state.
    ///
    /// # Errors
    /// Logits or labels that do not fit the loss.
    pub fn loss(
        &mut self,
        cls_score: Tensor<2>,
        reg: Tensor<2>,
        s: &SampledRois,
    ) -> Result<(Tensor<1>, Tensor<1>)> {
        // The sampled RoIs of the whole global batch under data parallelism.
        let r = crate::distributed::global_sum(s.rois.len() as f64);
        let cls = self
            .loss_cls
            .forward(cls_score, &s.labels, Some(r.max(1.0)))?
            .mul_scalar(self.spec.loss_cls_weight);
        let bbox = self
            .box_loss(reg, s)?
            .mul_scalar(self.spec.loss_bbox_weight);
        Ok((cls, bbox))
    }

    /// L1 (or smooth L1) over the positives' deltas, averaged over all sampled RoIs; with no
    /// positive, a zero that still reaches the regressor (every parameter stays in the graph).
    fn box_loss(&self, reg: Tensor<2>, s: &SampledRois) -> Result<Tensor<1>> {
        self.box_loss_shifted(reg, s, None)
    }

    /// [`Self::box_loss`] with the positives' targets less `shift` `[P, 4]` (TSD's targets
    /// against the translated proposals, live in the translation).
    pub(crate) fn box_loss_shifted(
        &self,
        reg: Tensor<2>,
        s: &SampledRois,
        shift: Option<Tensor<2>>,
    ) -> Result<Tensor<1>> {
        let device = reg.device();
        // Before the early return: every replica takes part in the sum.
        let r = crate::distributed::global_sum(s.rois.len() as f64);
        if s.pos_rows.is_empty() {
            return Ok(reg.sum().mul_scalar(0.0));
        }
        let coder = self.coder();
        let mut targets = Vec::with_capacity(s.pos_rows.len() * 4);
        for (&row, gt) in s.pos_rows.iter().zip(&s.pos_gt_boxes) {
            let roi = s.rois[row];
            targets.extend(
                coder
                    .encode(&[roi[1], roi[2], roi[3], roi[4]], gt)
                    .map(f64::from),
            );
        }
        let p = s.pos_rows.len();
        let pred = self.label_deltas(reg, s);
        let mut target = float_tensor(targets, [p, 4], &device);
        if let Some(shift) = shift {
            target = target - shift;
        }
        let sum = match self.spec.loss_bbox {
            BoxLossKind::SmoothL1 => smooth_l1_loss(pred, target, 1.0, Reduction::Sum, None)?,
            BoxLossKind::L1 => l1_loss(pred, target, Reduction::Sum, None)?,
        };
        Ok(sum.div_scalar(r.max(1.0)))
    }

    /// The positives' deltas of their label `[P, 4]` (the only ones for class-agnostic
    /// regression) from `reg` `[R, 4 or 4 C]`.
    pub(crate) fn label_deltas(&self, reg: Tensor<2>, s: &SampledRois) -> Tensor<2> {
        let device = reg.device();
        if self.spec.class_agnostic {
            reg.select(0, index_tensor(&s.pos_rows, &device))
        } else {
            let c = self.spec.num_classes;
            let r = s.rois.len();
            let idx: Vec<usize> = s
                .pos_rows
                .iter()
                .map(|&row| row * c + s.labels[row])
                .collect();
            reg.reshape([r * c, 4])
                .select(0, index_tensor(&idx, &device))
        }
    }

    /// Class scores `[R, C]` from logits `[R, cls_channels]`, as the loss defines them
    /// (softmax for CE and Seesaw, sigmoid for the sigmoid losses; background and objectness
    /// left out).
    ///
    /// # Errors
    /// Logits of the wrong width.
    pub fn class_scores(&self, cls_score: Tensor<2>) -> Result<Tensor<2>> {
        self.loss_cls.class_scores(cls_score, self.spec.num_classes)
    }

    pub(crate) fn coder(&self) -> DeltaXywhCoder {
        DeltaXywhCoder {
            stds: self.spec.stds,
            ..Default::default()
        }
    }

    /// Each RoI moved by its deltas (`[R, 4]` or `[R, 4 C]` row-major, of class `labels[r]`)
    /// and clipped to its image.
    ///
    /// # Errors
    /// A RoI naming an image `metas` does not have.
    pub fn decode(
        &self,
        rois: &[[f32; 5]],
        deltas: &[f32],
        labels: &[usize],
        metas: &[ImageMeta],
    ) -> Result<Vec<Box2>> {
        let per_roi = self.boxes_per_roi();
        let coder = self.coder();
        rois.iter()
            .enumerate()
            .map(|(r, roi)| {
                let meta = image_meta(metas, roi, r)?;
                let k = if per_roi == 1 {
                    0
                } else {
                    labels[r].min(per_roi - 1)
                };
                let o = (r * per_roi + k) * 4;
                let d = [deltas[o], deltas[o + 1], deltas[o + 2], deltas[o + 3]];
                Ok(coder.decode(
                    &[roi[1], roi[2], roi[3], roi[4]],
                    &d,
                    Some((meta.img_shape.0 as f32, meta.img_shape.1 as f32)),
                ))
            })
            .collect()
    }

    /// Per RoI and class, the RoI moved by that class's deltas and clipped to its image,
    /// `[R * C]` (the same box for every class when regression is class-agnostic).
    ///
    /// # Errors
    /// A RoI naming an image `metas` does not have.
    pub fn decode_all_classes(
        &self,
        rois: &[[f32; 5]],
        deltas: &[f32],
        metas: &[ImageMeta],
    ) -> Result<Vec<Box2>> {
        let c = self.spec.num_classes;
        let per_roi = self.boxes_per_roi();
        let coder = self.coder();
        let mut boxes = Vec::with_capacity(rois.len() * c);
        for (r, roi) in rois.iter().enumerate() {
            let meta = image_meta(metas, roi, r)?;
            let max_shape = Some((meta.img_shape.0 as f32, meta.img_shape.1 as f32));
            let reference = [roi[1], roi[2], roi[3], roi[4]];
            for k in 0..c {
                let o = (r * per_roi + if per_roi == 1 { 0 } else { k }) * 4;
                let d = [deltas[o], deltas[o + 1], deltas[o + 2], deltas[o + 3]];
                boxes.push(coder.decode(&reference, &d, max_shape));
            }
        }
        Ok(boxes)
    }

    /// mmdetection's `refine_bboxes`: every sampled RoI but the added ground truths (or, given
    /// `base`, its counterpart there: TSD's translated proposals), moved by
    /// its regression (the target class for positives, the best-scoring class for negatives,
    /// when regression is class-specific) and clipped to its image, as the next proposals.
    ///
    /// # Errors
    /// Logits of the wrong width, or RoIs naming missing images.
    pub fn refine(
        &self,
        s: &SampledRois,
        cls_score: Tensor<2>,
        reg: Tensor<2>,
        base: Option<&[[f32; 5]]>,
        metas: &[ImageMeta],
    ) -> Result<Vec<Vec<Box2>>> {
        let c = self.spec.num_classes;
        let (labels, deltas) = if self.spec.class_agnostic {
            (s.labels.clone(), host_f32(reg.detach())?)
        } else {
            // Class scores and deltas side by side: one read back, not two.
            let scores = self.class_scores(cls_score.detach())?;
            let ([rows, k], [_, r]) = (scores.dims(), reg.dims());
            let both = host_f32(Tensor::cat(vec![scores, reg.detach()], 1))?;
            let (mut probs, mut deltas) = (Vec::with_capacity(rows * k), Vec::new());
            for row in both.chunks_exact(k + r) {
                probs.extend_from_slice(&row[..k]);
                deltas.extend_from_slice(&row[k..]);
            }
            let best = argmax_rows(&probs, c);
            let labels = s
                .labels
                .iter()
                .zip(best)
                .map(|(&l, b)| if l == c { b } else { l })
                .collect();
            (labels, deltas)
        };
        let boxes = self.decode(base.unwrap_or(&s.rois), &deltas, &labels, metas)?;
        let mut out = vec![Vec::new(); metas.len()];
        for ((roi, bx), &gt) in s.rois.iter().zip(boxes).zip(&s.is_gt) {
            if !gt {
                out[roi[0] as usize].push(bx);
            }
        }
        Ok(out)
    }

    /// Boxes regressed per RoI: 1 (class-agnostic) or C.
    fn boxes_per_roi(&self) -> usize {
        if self.spec.class_agnostic {
            1
        } else {
            self.spec.num_classes
        }
    }
}

/// The meta of the image RoI `r` names.
pub(crate) fn image_meta<'a>(
    metas: &'a [ImageMeta],
    roi: &[f32; 5],
    r: usize,
) -> Result<&'a ImageMeta> {
    metas.get(roi[0] as usize).ok_or_else(|| {
        ModelError::Input(format!(
            "rois[{r}] names image {} of {}",
            roi[0],
            metas.len()
        ))
    })
}

/// Per row of `scores` (`width` columns), the index of its best column (the first on ties).
pub(crate) fn argmax_rows(scores: &[f32], width: usize) -> Vec<usize> {
    scores
        .chunks_exact(width.max(1))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (j, &v)| {
                    if v > best.1 { (j, v) } else { best }
                })
                .0
        })
        .collect()
}

/// A head built by [`BBoxHeadConfig::init`] always has a classifier; a hand-built one without
/// gets zero logits rather than a panic.
fn unreachable_cls(r: usize, x: Tensor<2>) -> Tensor<2> {
    Tensor::zeros([r, 1], &x.device())
}
