//! TSD, task-aware spatial disentanglement (Song, Liu, Wang, "Revisiting the Sibling Head in
//! Object Detector", CVPR 2020, arXiv:2003.07540), as its official code builds it
//! (Sense-X/TSD, an mmdetection 1.x fork: `mmdet/models/bbox_heads/tsd_bbox_head.py`
//! `TSDSharedFCBBoxHead`, `mmdet/core/bbox/bbox_target.py` `bbox_target_tsd`,
//! `mmdet/models/detectors/two_stage.py` `tsd_simple_test_bboxes`).
//!
//! From the RoI feature F of a proposal P (`[R, C, 7, 7]`), one shared fully connected layer
//! (`shared_fc`, 256 units, a literal in the official head) feeds two offset predictors:
//! - `delta_c` (`[R, 2 * 49]`): a point-wise deformation, one (dx, dy) per bin; the
//!   classification branch pools P with every bin moved by `gamma * delta_c * (w, h)`;
//! - `delta_r` (`[R, 2]`): a proposal-wise translation; the regression branch pools P with
//!   every bin moved by the same `gamma * delta_r * (w, h)`, and regresses relative to the
//!   translated proposal `P_r = P + gamma * delta_r * (w, h)`.
//!
//! Both poolings are the official deformable RoI pooling ([`crate::ops::deform_roi_pool`])
//! on the pyramid level of P; each feeds its own fully connected layers (`TSD_pc_fcs`,
//! `TSD_pr_fcs`) and its own classifier or regressor (`TSD_fc_cls`, `TSD_fc_reg`). The
//! box head's own layers stay as the "sibling" head, trained alongside and unused at test
//! time. The progressive constraint (the paper's Eq. 7-8, with the official code's adaptive
//! margins) asks TSD to beat the sibling by a margin:
//! - `M_cls = relu(p + min(1 - p, m_c) - q)` over every sampled RoI of an image with a
//!   positive, p and q the sibling's and TSD's probability of the RoI's label (background for
//!   negatives);
//! - `M_loc = relu(IoU + min(1 - IoU, m_r) - IoU_D)` over the positives, the IoUs of the
//!   sibling's and TSD's decoded boxes with the ground truth;
//! - the sibling's side detached; an image without a positive adds one zero to each mean.
//!
//! TSD's own box targets are encoded against `P_r` and are not detached (the regression loss
//! reaches `delta_r` through them, as in the official code).
//!
//! Box arithmetic is Seesaw's (mmdetection 2.x / 3.x: no "+1" widths in the coder, the IoU or
//! the translation), as a TSD port to mmdetection 2.x would be; the pooling kernel is the
//! official one exactly. docs/heads.md says where this differs from the 1.x code.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::heads::BBoxHead;
use crate::heads::rpn_head::zeros_param;
use crate::layers::{NormedLinear, NormedLinearConfig};
use crate::losses::common::{float_tensor, host_f32, index_tensor};
use crate::roi_heads::sampling::SampledRois;

/// TSD's settings besides the box head's, with the official defaults
/// (configs/TSD_configs/*.py and `DeltaCPooling` / `DeltaRPooling`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TsdSpec {
    /// The classification margin m_c. The official configs set 0.3.
    pub cls_pc_margin: f32,
    /// The localisation margin m_r. The official configs set 0.3.
    pub loc_pc_margin: f32,
    /// gamma: offsets times this times the RoI's size move the bins and the proposal.
    /// Official 0.1.
    pub trans_std: f32,
    /// Samples per bin and axis of the deformable pooling. Official 4.
    pub sample_per_part: usize,
}

/// TSD's layers on a box head (official names in brackets).
#[derive(Module, Debug)]
pub struct TsdBranch {
    /// `[C * 49 -> d]`, ReLU after (`shared_fc.0`).
    pub shared_fc: Linear,
    /// `[d -> d]`, ReLU, `[d -> 2 * 49]` (`delta_c.0`, `delta_c.2`).
    pub delta_c: Vec<Linear>,
    /// `[d -> d]`, ReLU, `[d -> 2]` (`delta_r.0`, `delta_r.2`).
    pub delta_r: Vec<Linear>,
    /// The classification branch's fully connected layers, ReLU after each (`TSD_pc_fcs.i`).
    pub pc_fcs: Vec<Linear>,
    /// The regression branch's (`TSD_pr_fcs.i`).
    pub pr_fcs: Vec<Linear>,
    /// TSD's classifier (`TSD_fc_cls`): plain, or a cosine one as the head's.
    pub fc_cls: Option<Linear>,
    pub fc_cls_normed: Option<NormedLinear>,
    /// TSD's regressor (`TSD_fc_reg`).
    pub fc_reg: Linear,
    #[module(skip)]
    pub spec: TsdSpec,
}

/// What TSD gives for a set of RoIs.
#[derive(Debug, Clone)]
pub struct TsdOutput {
    /// TSD's class logits `[R, cls_channels]`.
    pub cls: Tensor<2>,
    /// TSD's deltas `[R, 4 or 4 C]`, relative to the translated proposals.
    pub reg: Tensor<2>,
    /// Per-bin offsets `[R, 2 * 49]` (x of the 49 bins, then y).
    pub delta_c: Tensor<2>,
    /// The proposal translation `[R, 2]` (x, y).
    pub delta_r: Tensor<2>,
}

/// Sizes of [`TsdBranch::new`].
#[derive(Debug, Clone, Copy)]
pub struct TsdShape {
    /// Channels C of the RoI features.
    pub in_channels: usize,
    /// Width of `shared_fc` and the offset predictors (256 officially).
    pub offset_channels: usize,
    /// Units of each branch's fully connected layers (the head's `fc_channels`).
    pub fc: usize,
    /// Layers per branch (the head's `num_shared_fcs`).
    pub num_fcs: usize,
    pub cls_channels: usize,
    pub reg_out: usize,
    /// A cosine classifier's temperature; None for a plain one.
    pub tau: Option<f64>,
}

const BINS: usize = 49;

impl TsdBranch {
    /// The official init: Kaiming normal with a = 1 (std `1 / sqrt(fan_in)`) and zero bias for
    /// `shared_fc`, the offset predictors and the branches' layers; PyTorch's default `Linear`
    /// init for `TSD_fc_cls` / `TSD_fc_reg` (the official `init_weights` leaves them out);
    /// a cosine classifier as the head's.
    pub fn new(shape: TsdShape, spec: TsdSpec, device: &Device) -> Self {
        let kaiming = |i: usize, o: usize| {
            let mut l = LinearConfig::new(i, o)
                .with_initializer(Initializer::KaimingNormal {
                    gain: 1.0,
                    fan_out_only: false,
                })
                .init(device);
            l.bias = l.bias.take().map(zeros_param);
            l
        };
        let d = shape.offset_channels;
        let fc_in = shape.in_channels * BINS;
        let branch = || {
            (0..shape.num_fcs)
                .map(|k| kaiming(if k == 0 { fc_in } else { shape.fc }, shape.fc))
                .collect::<Vec<_>>()
        };
        let (fc_cls, fc_cls_normed) = match shape.tau {
            Some(tau) => {
                let mut c = NormedLinearConfig::new(shape.fc, shape.cls_channels);
                c.tempearture = tau;
                (None, Some(c.init(device)))
            }
            None => (
                Some(LinearConfig::new(shape.fc, shape.cls_channels).init(device)),
                None,
            ),
        };
        TsdBranch {
            shared_fc: kaiming(fc_in, d),
            delta_c: vec![kaiming(d, d), kaiming(d, 2 * BINS)],
            delta_r: vec![kaiming(d, d), kaiming(d, 2)],
            pc_fcs: branch(),
            pr_fcs: branch(),
            fc_cls,
            fc_cls_normed,
            fc_reg: LinearConfig::new(shape.fc, shape.reg_out).init(device),
            spec,
        }
    }

    /// The offsets `delta_c` `[R, 98]` and `delta_r` `[R, 2]` of the RoI features `x`
    /// `[R, C, 7, 7]`.
    pub fn offsets(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let [r, c, h, w] = x.dims();
        let shared = relu(self.shared_fc.forward(x.reshape([r, c * h * w])));
        let two = |layers: &[Linear], x: Tensor<2>| {
            let mut x = x;
            for (k, l) in layers.iter().enumerate() {
                x = l.forward(x);
                if k + 1 < layers.len() {
                    x = relu(x);
                }
            }
            x
        };
        (
            two(&self.delta_c, shared.clone()),
            two(&self.delta_r, shared),
        )
    }

    /// TSD on the RoI features `x` `[R, C, 7, 7]`; `pool` pools the same RoIs deformably from
    /// the pyramid with an offset `[R, 2, 7, 7]` (per bin) or `[R, 2, 1, 1]` (one for all).
    ///
    /// # Errors
    /// What `pool` returns.
    pub fn forward(
        &self,
        x: Tensor<4>,
        pool: &dyn Fn(Tensor<4>) -> Result<Tensor<4>>,
    ) -> Result<TsdOutput> {
        let (delta_c, delta_r) = self.offsets(x);
        self.forward_offsets(delta_c, delta_r, pool)
    }

    /// TSD's branches given the offsets `delta_c` `[R, 98]` and `delta_r` `[R, 2]`
    /// ([`Self::offsets`]); `pool` as in [`Self::forward`].
    ///
    /// # Errors
    /// What `pool` returns.
    pub fn forward_offsets(
        &self,
        delta_c: Tensor<2>,
        delta_r: Tensor<2>,
        pool: &dyn Fn(Tensor<4>) -> Result<Tensor<4>>,
    ) -> Result<TsdOutput> {
        let r = delta_c.dims()[0];
        let cls_feats = pool(delta_c.clone().reshape([r, 2, 7, 7]))?;
        let loc_feats = pool(delta_r.clone().reshape([r, 2, 1, 1]))?;
        let fcs = |layers: &[Linear], feats: Tensor<4>| {
            let [r, c, h, w] = feats.dims();
            let mut x = feats.reshape([r, c * h * w]);
            for l in layers {
                x = relu(l.forward(x));
            }
            x
        };
        let xc = fcs(&self.pc_fcs, cls_feats);
        let cls = match (&self.fc_cls_normed, &self.fc_cls) {
            (Some(n), _) => n.forward(xc),
            (None, Some(l)) => l.forward(xc),
            (None, None) => {
                return Err(ModelError::Input("TSD branch without a classifier".into()));
            }
        };
        let reg = self.fc_reg.forward(fcs(&self.pr_fcs, loc_feats));
        Ok(TsdOutput {
            cls,
            reg,
            delta_c,
            delta_r,
        })
    }

    /// The translated proposals `P_r = P + gamma * delta_r * (w, h)` (both corners; `rois`
    /// `[image, x1, y1, x2, y2]`, `delta_r` `[R * 2]` row-major).
    pub fn translate(&self, rois: &[[f32; 5]], delta_r: &[f32]) -> Vec<[f32; 5]> {
        let g = self.spec.trans_std;
        rois.iter()
            .zip(delta_r.chunks_exact(2))
            .map(|(r, d)| {
                let dx = g * d[0] * (r[3] - r[1]);
                let dy = g * d[1] * (r[4] - r[2]);
                [r[0], r[1] + dx, r[2] + dy, r[3] + dx, r[4] + dy]
            })
            .collect()
    }
}

/// IoU of aligned pairs of boxes as tensors `[P]` per coordinate (mmdetection's
/// `bbox_overlaps(is_aligned=True)`: no +1, the union clamped to 1e-6), against constant
/// boxes `b` (`[P, 4]` on the host).
pub(crate) fn aligned_iou(a: [Tensor<1>; 4], b: &[[f32; 4]], device: &Device) -> Tensor<1> {
    let col = |k: usize| -> Tensor<1> {
        let v: Vec<f32> = b.iter().map(|x| x[k]).collect();
        Tensor::from_floats(v.as_slice(), device)
    };
    let [x1, y1, x2, y2] = a;
    let (bx1, by1, bx2, by2) = (col(0), col(1), col(2), col(3));
    let area_a = (x2.clone() - x1.clone()) * (y2.clone() - y1.clone());
    let area_b = (bx2.clone() - bx1.clone()) * (by2.clone() - by1.clone());
    let iw = (x2.min_pair(bx2) - x1.max_pair(bx1)).clamp_min(0.0);
    let ih = (y2.min_pair(by2) - y1.max_pair(by1)).clamp_min(0.0);
    let inter = iw * ih;
    let union = (area_a + area_b - inter.clone()).clamp_min(1e-6);
    inter / union
}

/// The same IoU on the host.
pub(crate) fn aligned_iou_host(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |x: &[f32; 4]| (x[2] - x[0]) * (x[3] - x[1]);
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    inter / (area(a) + area(b) - inter).max(1e-6)
}

/// TSD's part of the training loss, each a scalar `[1]`.
#[derive(Debug, Clone)]
pub struct TsdLosses {
    /// TSD's classification loss (`loss_TSD_cls`).
    pub cls: Tensor<1>,
    /// TSD's box loss against the translated proposals (`loss_TSD_bbox`).
    pub bbox: Tensor<1>,
    /// The progressive constraint on classification (`loss_pc_cls`).
    pub pc_cls: Tensor<1>,
    /// The progressive constraint on localisation (`loss_pc_loc`).
    pub pc_loc: Tensor<1>,
}

impl BBoxHead {
    /// TSD's training losses on the sampled RoIs `s` of `num_images` images, given TSD's
    /// outputs `tsd` and the sibling head's logits `sibling_cls` and deltas `sibling_reg`
    /// (official `TSDConvFCBBoxHead.loss` and `bbox_target_tsd`): TSD's classification loss
    /// (the head's own loss, as the official head's one `loss_cls` module), TSD's box loss
    /// against the translated proposals, and the two progressive-constraint terms. Updates
    /// the classification loss's state.
    ///
    /// # Errors
    /// A head without TSD; logits or labels that do not fit.
    pub fn tsd_loss(
        &mut self,
        tsd: &TsdOutput,
        sibling_cls: Tensor<2>,
        sibling_reg: Tensor<2>,
        s: &SampledRois,
        num_images: usize,
    ) -> Result<TsdLosses> {
        let spec = self
            .tsd
            .as_ref()
            .ok_or_else(|| ModelError::Input("bbox head: no TSD branch".into()))?
            .spec;
        let device = tsd.cls.device();
        let r = s.rois.len();
        let c = self.spec.num_classes;
        let zero = |t: &Tensor<2>| t.clone().sum().mul_scalar(0.0);
        // The progressive constraint: an image with a positive contributes each of its RoIs
        // to M_cls and each positive to M_loc; one without contributes a single zero to each.
        let mut has_pos = vec![false; num_images];
        for &(i, _) in &s.pos_gt {
            if let Some(h) = has_pos.get_mut(i) {
                *h = true;
            }
        }
        let mut rows_of = vec![0usize; num_images];
        let mut mask = Vec::with_capacity(r);
        for roi in &s.rois {
            let i = roi[0] as usize;
            if let Some(n) = rows_of.get_mut(i) {
                *n += 1;
            }
            mask.push(if has_pos.get(i) == Some(&true) {
                1.0
            } else {
                0.0
            });
        }
        let empty = has_pos.iter().filter(|h| !**h).count();
        let cls_entries: usize = (0..num_images)
            .map(|i| if has_pos[i] { rows_of[i] } else { 1 })
            .sum();
        let p = s.pos_rows.len();
        // The normalisers over the whole global batch under data parallelism (every replica
        // takes part, RoIs or not).
        let mut norms = [r as f64, cls_entries as f64, (p + empty) as f64];
        if let Some(g) = crate::distributed::current() {
            g.sum_f64(&mut norms);
        }
        let [r_all, cls_entries_all, loc_entries_all] = norms;
        if r == 0 {
            // The collectives the others make in the losses below.
            self.loss_cls.skip_collectives(c);
            crate::distributed::global_sum(0.0);
            let z = zero(&tsd.cls) + zero(&tsd.reg);
            return Ok(TsdLosses {
                cls: z.clone(),
                bbox: z.clone(),
                pc_cls: z.clone(),
                pc_loc: z,
            });
        }
        let cls = self
            .loss_cls
            .forward(tsd.cls.clone(), &s.labels, Some(r_all.max(1.0)))?
            .mul_scalar(self.spec.loss_cls_weight);
        let g = spec.trans_std;
        let stds = self.spec.stds;
        let pos_idx = index_tensor(&s.pos_rows, &device);
        let shift = (p > 0).then(|| {
            let dr = tsd.delta_r.clone().select(0, pos_idx.clone());
            let scale: Tensor<2> = float_tensor(
                vec![f64::from(g / stds[0]), f64::from(g / stds[1])],
                [1, 2],
                &device,
            );
            Tensor::cat(vec![dr * scale, Tensor::zeros([p, 2], &device)], 1)
        });
        let bbox = self
            .box_loss_shifted(tsd.reg.clone(), s, shift)?
            .mul_scalar(self.spec.loss_bbox_weight);
        let sib = self
            .loss_cls
            .label_probs(sibling_cls.detach(), &s.labels, c)?;
        let q = self.loss_cls.label_probs(tsd.cls.clone(), &s.labels, c)?;
        let target = sib.clone() + sib.neg().add_scalar(1.0).clamp_max(spec.cls_pc_margin);
        let mask: Tensor<1> = float_tensor(mask, [r], &device);
        let pc_cls = (relu(target - q) * mask)
            .sum()
            .div_scalar(cls_entries_all.max(1.0));
        let pc_loc = if p == 0 {
            zero(&tsd.reg)
        } else {
            // The sibling's boxes and IoUs, constants.
            let coder = self.coder();
            let sib_d = host_f32(self.label_deltas(sibling_reg.detach(), s))?;
            let mut floor = Vec::with_capacity(p);
            let (mut px, mut py, mut pw, mut ph) = (vec![], vec![], vec![], vec![]);
            for (k, (&row, gt)) in s.pos_rows.iter().zip(&s.pos_gt_boxes).enumerate() {
                let roi = s.rois[row];
                let b = [roi[1], roi[2], roi[3], roi[4]];
                let d = [
                    sib_d[4 * k],
                    sib_d[4 * k + 1],
                    sib_d[4 * k + 2],
                    sib_d[4 * k + 3],
                ];
                let iou = aligned_iou_host(&coder.decode(&b, &d, None), gt);
                floor.push(f64::from(iou + (1.0 - iou).min(spec.loc_pc_margin)));
                px.push(f64::from((b[0] + b[2]) * 0.5));
                py.push(f64::from((b[1] + b[3]) * 0.5));
                pw.push(f64::from(b[2] - b[0]));
                ph.push(f64::from(b[3] - b[1]));
            }
            // TSD's boxes, decoded from the translated proposals, live in its deltas and in
            // the translation.
            let col = |t: &Tensor<2>, k: usize| t.clone().slice([0..p, k..k + 1]).reshape([p]);
            let vec1 = |v: Vec<f64>| -> Tensor<1> { float_tensor(v, [p], &device) };
            let (pw_t, ph_t) = (vec1(pw.clone()), vec1(ph.clone()));
            let dr = tsd.delta_r.clone().select(0, pos_idx);
            let cx = vec1(px) + col(&dr, 0) * pw_t.clone().mul_scalar(f64::from(g));
            let cy = vec1(py) + col(&dr, 1) * ph_t.clone().mul_scalar(f64::from(g));
            let d = self.label_deltas(tsd.reg.clone(), s);
            let de = |k: usize| {
                col(&d, k)
                    .mul_scalar(f64::from(stds[k]))
                    .add_scalar(f64::from(coder.means[k]))
            };
            let max_ratio = f64::from(coder.wh_ratio_clip.ln().abs());
            let gx = cx + pw_t.clone() * de(0);
            let gy = cy + ph_t.clone() * de(1);
            let gw = pw_t * de(2).clamp(-max_ratio, max_ratio).exp();
            let gh = ph_t * de(3).clamp(-max_ratio, max_ratio).exp();
            let half_w = gw.mul_scalar(0.5);
            let half_h = gh.mul_scalar(0.5);
            let boxes = [
                gx.clone() - half_w.clone(),
                gy.clone() - half_h.clone(),
                gx + half_w,
                gy + half_h,
            ];
            let tiou = aligned_iou(boxes, &s.pos_gt_boxes, &device);
            relu(vec1(floor) - tiou)
                .sum()
                .div_scalar(loc_entries_all.max(1.0))
        };
        Ok(TsdLosses {
            cls,
            bbox,
            pc_cls,
            pc_loc,
        })
    }
}
