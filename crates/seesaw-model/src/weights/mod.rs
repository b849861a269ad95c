//! PyTorch weights in and out: torchvision ResNets and mmdetection detectors.
//!
//! Files are read through burn's store (`pytorch_reader` for `.pth`/`.pt`, zip or legacy
//! pickle; [`SafetensorsStore`] for `.safetensors`), and applied with burn's
//! [`PyTorchToBurnAdapter`] (Linear weights transposed, norm `weight`/`bias` to
//! `gamma`/`beta`). What this module adds is the naming: [`Naming`] gives, for each of our
//! tensors, the name torchvision or mmdetection gives it, so that one table serves import
//! and export.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::store::pytorch_reader::PytorchReader;
use burn::store::{
    BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, SafetensorsStore, bridge,
};
use burn::tensor::DType;

use crate::backbones::ResNet;
use crate::detectors::{Detector, RoiHead};
use crate::error::{ModelError, Result};
use crate::heads::BBoxHeadKind;
use crate::layers::Norm;
use crate::necks::NeckKind;

mod numpy_pickle;

use numpy_pickle::read_numpy_pickle;

type PackTensor = burn::store::burn_pack::Tensor;

/// Whose parameter names a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// torchvision's `resnet50().state_dict()` (and `resnext*`): `conv1`, `bn1`,
    /// `layer1.0.downsample.0`, plus the ImageNet `fc` (ignored). timm's ResNets and ResNeSts
    /// use the same names, with a deep stem as `conv1.0, 1, 3, 4, 6` and `bn1`.
    Torchvision,
    /// mmdetection 3.x (and 2.x): `backbone.*` as torchvision (a deep stem as `stem.0, 1, 3, 4,
    /// 6, 7`; DCN's `conv2.conv_offset`), `neck.lateral_convs.0.conv`,
    /// `rpn_head.rpn_conv`, `roi_head.bbox_head[.s].shared_fcs.0`, `fc_cls`, `fc_reg`,
    /// `roi_head.mask_head[.s].convs.0.conv`, `conv_logits`, `conv_res.conv`,
    /// `roi_head.glbctx_head` (SCNet's).
    Mmdet,
    /// detectron2's `GeneralizedRCNN` (its model zoo's `.pkl` and its training `.pth`):
    /// `backbone.bottom_up.stem.conv1`, `res2.0.conv1.norm`, `shortcut`, `backbone.fpn_lateral2`,
    /// `fpn_output2`, `proposal_generator.rpn_head.conv`, `objectness_logits`, `anchor_deltas`,
    /// `roi_heads.box_head.fc1`, `box_predictor.cls_score` / `bbox_pred`,
    /// `roi_heads.mask_head.mask_fcn1`, `deconv`, `predictor`.
    Detectron2,
}

impl Layout {
    /// The name `--from` and `--layout` take.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Torchvision => "torchvision",
            Layout::Mmdet => "mmdet",
            Layout::Detectron2 => "detectron2",
        }
    }

    /// `torchvision` (or `timm`, the same names) or `mmdet`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "torchvision" | "timm" => Ok(Layout::Torchvision),
            "mmdet" | "mmdetection" => Ok(Layout::Mmdet),
            "detectron2" | "d2" => Ok(Layout::Detectron2),
            other => Err(ModelError::Input(format!(
                "weights layout {other:?}: expected torchvision, timm, mmdet or detectron2"
            ))),
        }
    }
}

/// One tensor of a weights file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
}

/// The tensors of a PyTorch (`.pth`, `.pt`, `.bin`) or safetensors file, read lazily.
pub struct WeightsFile {
    pub path: PathBuf,
    /// `state_dict` when the weights sat under that key (mmdetection, most trainers).
    pub top_level_key: Option<String>,
    tensors: BTreeMap<String, PackTensor>,
}

fn weights_error(path: &Path, message: impl std::fmt::Display) -> ModelError {
    ModelError::Weights(format!("{}: {message}", path.display()))
}

impl WeightsFile {
    /// Opens `path`; the format is told by its extension (`.safetensors`) or else PyTorch's.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(weights_error(path, "no such file"));
        }
        let is_safetensors = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        if is_safetensors {
            let mut store = SafetensorsStore::from_file(path).map_indices_contiguous(false);
            let tensors = store
                .get_all_tensors()
                .map_err(|e| weights_error(path, e))?
                .clone();
            return Ok(WeightsFile {
                path: path.to_path_buf(),
                top_level_key: None,
                tensors,
            });
        }
        let is_pickle = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pkl"));
        if is_pickle {
            let (tensors, key) = read_numpy_pickle(path)?;
            return Ok(WeightsFile {
                path: path.to_path_buf(),
                top_level_key: key,
                tensors,
            });
        }
        // Checkpoints with a `state_dict` (mmdetection: plus `meta`, `optimizer`, ...) or a
        // `model` (detectron2's training checkpoints) hold the weights there.
        let (reader, key) = match PytorchReader::with_top_level_key(path, "state_dict") {
            Ok(r) => (r, Some("state_dict".to_string())),
            Err(_) => match PytorchReader::with_top_level_key(path, "model") {
                Ok(r) => (r, Some("model".to_string())),
                Err(_) => (
                    PytorchReader::new(path).map_err(|e| weights_error(path, e))?,
                    None,
                ),
            },
        };
        let tensors = reader
            .into_tensors()
            .into_iter()
            .map(|(name, t)| (name, bridge::from_pytorch(t)))
            .collect();
        Ok(WeightsFile {
            path: path.to_path_buf(),
            top_level_key: key,
            tensors,
        })
    }

    /// Every tensor, by name.
    pub fn infos(&self) -> Vec<TensorInfo> {
        self.tensors
            .values()
            .map(|t| TensorInfo {
                name: t.name.clone(),
                shape: t.shape.to_vec(),
                dtype: format!("{:?}", t.dtype).to_lowercase(),
            })
            .collect()
    }

    /// The values of tensor `name`, as stored.
    pub fn data(&self, name: &str) -> Result<burn::tensor::TensorData> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| weights_error(&self.path, format!("has no tensor {name}")))?;
        bridge::to_data(t).map_err(|e| weights_error(&self.path, format!("tensor {name}: {e}")))
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The class names an mmdetection checkpoint records (`meta.dataset_meta.classes`, or
    /// 2.x's `meta.CLASSES`), if any.
    pub fn mmdet_classes(&self) -> Option<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct DatasetMeta {
            classes: Vec<String>,
        }
        #[derive(serde::Deserialize)]
        #[allow(non_snake_case)]
        struct Meta {
            dataset_meta: Option<DatasetMeta>,
            CLASSES: Option<Vec<String>>,
        }
        self.top_level_key.as_ref()?;
        let meta: Meta = PytorchReader::load_config(&self.path, Some("meta")).ok()?;
        meta.dataset_meta.map(|d| d.classes).or(meta.CLASSES)
    }
}

impl WeightsFile {
    /// Whether the file is an mmdetection 1.x two-stage detector: an `rpn_head.*` and RoI head
    /// parts at the top level (`bbox_head.*`, `mask_head.*`, ...) with no `roi_head.*`, as
    /// mmdetection 1.x and its forks (TSD's official code) save them.
    pub fn is_mmdet_v1(&self) -> bool {
        let keys = || self.tensors.keys();
        keys().any(|k| k.starts_with("rpn_head."))
            && keys().any(|k| is_v1_head(k))
            && !keys().any(|k| k.starts_with("roi_head."))
    }

    /// Upgrades an mmdetection 1.x two-stage detector to the 2.x / 3.x layout, as mmdetection's
    /// tools/model_converters/upgrade_model_version.py does: the RoI head parts move under
    /// `roi_head.`; classifiers (`fc_cls`, also TSD's `TSD_fc_cls`) with `num_classes` + 1
    /// rows move the background from the first row to the last; class-specific regressors
    /// (`fc_reg`, `TSD_fc_reg`, 4 (C + 1) rows) drop the background's first four rows; mask
    /// logits (`conv_logits`, C + 1 channels) drop the background's first channel. (The
    /// script's bias branches keep the first C (or 4 C) entries instead, which drops the last
    /// class rather than the background; here weight and bias drop the same rows.) The RPN is
    /// kept as it is. Returns one line per changed tensor.
    ///
    /// # Errors
    /// A tensor whose values cannot be read.
    pub fn upgrade_mmdet_v1(&mut self, num_classes: usize) -> Result<Vec<String>> {
        self.relayout_background_first(
            num_classes,
            &|key| {
                if is_v1_head(key) {
                    format!("roi_head.{key}")
                } else {
                    key.to_string()
                }
            },
            &|key| {
                let leaf = key.rsplit('.').nth(1).unwrap_or("");
                if leaf.ends_with("fc_cls") {
                    Some(ClassRows::Classifier)
                } else if leaf.ends_with("fc_reg") {
                    Some(ClassRows::Regressor)
                } else if leaf == "conv_logits" {
                    Some(ClassRows::MaskLogits)
                } else {
                    None
                }
            },
        )
    }

    /// Whether the file is a whole torchvision detection model (`maskrcnn_resnet50_fpn` and
    /// its kin: `backbone.body.*`, `rpn.head.*`, `roi_heads.*`).
    pub fn is_torchvision_detector(&self) -> bool {
        let keys = || self.tensors.keys();
        keys().any(|k| k.starts_with("rpn.head.")) && keys().any(|k| k.starts_with("roi_heads."))
    }

    /// A torchvision detection model in the layout [`Naming`] reads: the names older
    /// torchvision releases saved (the model zoo's files: `backbone.fpn.inner_blocks.0.weight`,
    /// `rpn.head.conv.weight`, `roi_heads.mask_head.mask_fcn1.weight`) renamed as torchvision's
    /// own `_load_from_state_dict` upgrades them (`inner_blocks.0.0`, `conv.0.0`,
    /// `mask_head.0.0`), and its classes (background first, `num_classes` + 1 outputs: 91 for
    /// the COCO models, whose labels are the COCO category ids) laid out as ours: the background
    /// row of `box_predictor.cls_score` moved last, its four `box_predictor.bbox_pred` rows and
    /// its `mask_predictor.mask_fcn_logits` channel dropped. Returns one line per re-laid
    /// tensor.
    ///
    /// # Errors
    /// A tensor whose values cannot be read.
    pub fn torchvision_detector_to_ours(&mut self, num_classes: usize) -> Result<Vec<String>> {
        self.relayout_background_first(
            num_classes,
            &|key| {
                let parts: Vec<&str> = key.split('.').collect();
                match parts.as_slice() {
                    [
                        "backbone",
                        "fpn",
                        list @ ("inner_blocks" | "layer_blocks"),
                        i,
                        p,
                    ] => {
                        format!("backbone.fpn.{list}.{i}.0.{p}")
                    }
                    ["rpn", "head", "conv", p] => format!("rpn.head.conv.0.0.{p}"),
                    ["roi_heads", "mask_head", m, p] if m.starts_with("mask_fcn") => {
                        match m["mask_fcn".len()..].parse::<usize>() {
                            Ok(k) if k >= 1 => format!("roi_heads.mask_head.{}.0.{p}", k - 1),
                            _ => key.to_string(),
                        }
                    }
                    _ => key.to_string(),
                }
            },
            &|key| match key.rsplit_once('.').map(|(m, _)| m) {
                Some("roi_heads.box_predictor.cls_score") => Some(ClassRows::Classifier),
                Some("roi_heads.box_predictor.bbox_pred") => Some(ClassRows::Regressor),
                Some("roi_heads.mask_predictor.mask_fcn_logits") => Some(ClassRows::MaskLogits),
                _ => None,
            },
        )
    }

    /// Whose detector the names look like: torchvision's (`rpn.head.*` + `roi_heads.*`),
    /// detectron2's (`backbone.bottom_up.*`, `proposal_generator.*`) or mmdetection's
    /// (`roi_head.*`, `rpn_head.*`, or 1.x's top-level heads); None otherwise (a backbone).
    pub fn looks_like(&self) -> Option<Layout> {
        if self.is_torchvision_detector() {
            Some(Layout::Torchvision)
        } else if self.is_detectron2() {
            Some(Layout::Detectron2)
        } else if self
            .tensors
            .keys()
            .any(|k| k.starts_with("roi_head.") || k.starts_with("rpn_head.") || is_v1_head(k))
        {
            Some(Layout::Mmdet)
        } else {
            None
        }
    }

    /// Whether the file is a detectron2 model (`backbone.bottom_up.*` or
    /// `proposal_generator.*`).
    pub fn is_detectron2(&self) -> bool {
        self.tensors
            .keys()
            .any(|k| k.starts_with("backbone.bottom_up.") || k.starts_with("proposal_generator."))
    }

    /// A detectron2 model for our RGB pipeline: its model zoo's networks read BGR images
    /// (`INPUT.FORMAT = "BGR"`), so the stem's first convolution
    /// (`backbone.bottom_up.stem.conv1.weight`) has its input channels reversed; the config
    /// then gives the mean and std in RGB order (configs/mask_rcnn_r50_fpn_detectron2_lvis.toml).
    /// Its classes are laid out as ours already (background last, no background regressor or
    /// mask). Returns what it changed.
    ///
    /// # Errors
    /// A stem convolution whose values cannot be read.
    pub fn detectron2_to_ours(&mut self) -> Result<Vec<String>> {
        let name = DETECTRON2_STEM;
        let Some(t) = self.tensors.remove(name) else {
            return Ok(vec![]);
        };
        let t = reverse_input_channels(t).map_err(|e| weights_error(&self.path, e))?;
        self.tensors.insert(name.to_string(), t);
        Ok(vec![format!(
            "{name}: input channels reversed (BGR -> RGB)"
        )])
    }

    /// Renames every tensor with `rename` and re-lays the class-indexed ones `kind` names
    /// (after renaming) from background-first with `num_classes` + 1 classes to ours; tensors
    /// of other row counts (class-agnostic regressors) are left as they are.
    fn relayout_background_first(
        &mut self,
        num_classes: usize,
        rename: &dyn Fn(&str) -> String,
        kind: &dyn Fn(&str) -> Option<ClassRows>,
    ) -> Result<Vec<String>> {
        let k = num_classes + 1;
        let mut notes = Vec::new();
        let old = std::mem::take(&mut self.tensors);
        for (key, t) in old {
            let new_key = rename(&key);
            let rows = t.shape.first().copied().unwrap_or(0);
            // (what, the row order of the re-laid tensor in blocks of `block` rows)
            let plan: Option<(&str, usize, Vec<usize>)> = match kind(&new_key) {
                Some(ClassRows::Classifier) if rows == k => {
                    Some(("background row moved last", 1, (1..k).chain([0]).collect()))
                }
                Some(ClassRows::Regressor) if rows == 4 * k => {
                    Some(("background's 4 rows dropped", 4, (1..k).collect()))
                }
                Some(ClassRows::MaskLogits) if rows == k => {
                    Some(("background channel dropped", 1, (1..k).collect()))
                }
                _ => None,
            };
            let mut t = match plan {
                None => t,
                Some((what, block, order)) => {
                    let data = bridge::to_data(&t)
                        .map_err(|e| weights_error(&self.path, format!("tensor {key}: {e}")))?
                        .convert::<f32>();
                    let shape = data.shape().to_vec();
                    let values = data
                        .try_to_vec::<f32>()
                        .map_err(|e| weights_error(&self.path, format!("tensor {key}: {e:?}")))?;
                    let per_row = values.len() / rows.max(1);
                    let mut out = Vec::with_capacity(order.len() * block * per_row);
                    for b in &order {
                        out.extend_from_slice(
                            &values[b * block * per_row..(b + 1) * block * per_row],
                        );
                    }
                    let mut new_shape = shape;
                    new_shape[0] = order.len() * block;
                    notes.push(format!("{key} -> {new_key}: {what}"));
                    bridge::from_data(
                        burn::tensor::TensorData::new(out, new_shape),
                        new_key.clone(),
                        None,
                    )
                }
            };
            t.name = new_key.clone();
            self.tensors.insert(new_key, t);
        }
        Ok(notes)
    }
}

/// Which class-indexed tensor [`WeightsFile::relayout_background_first`] re-lays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClassRows {
    /// One row per class, background first: moved last.
    Classifier,
    /// Four rows per class: the background's dropped.
    Regressor,
    /// One channel per class: the background's dropped.
    MaskLogits,
}

/// detectron2's first convolution, the one that reads the image.
pub const DETECTRON2_STEM: &str = "backbone.bottom_up.stem.conv1.weight";

/// A convolution weight `[O, I, kh, kw]` with its input channels in reverse order (BGR <->
/// RGB).
///
/// # Errors
/// A tensor that is not 4-D or whose values cannot be read.
pub fn reverse_input_channels(t: PackTensor) -> std::result::Result<PackTensor, String> {
    let name = t.name.clone();
    let data = bridge::to_data(&t)
        .map_err(|e| format!("tensor {name}: {e}"))?
        .convert::<f32>();
    let shape = data.shape().to_vec();
    let [o, i, kh, kw] = shape[..] else {
        return Err(format!(
            "tensor {name}: shape {shape:?}, not a convolution weight"
        ));
    };
    let v = data
        .try_to_vec::<f32>()
        .map_err(|e| format!("tensor {name}: {e:?}"))?;
    let plane = kh * kw;
    let mut out = vec![0f32; v.len()];
    for oo in 0..o {
        for ii in 0..i {
            let src = (oo * i + ii) * plane;
            let dst = (oo * i + (i - 1 - ii)) * plane;
            out[dst..dst + plane].copy_from_slice(&v[src..src + plane]);
        }
    }
    Ok(bridge::from_data(
        burn::tensor::TensorData::new(out, shape),
        name,
        None,
    ))
}

/// mmdetection 1.x's top-level RoI head parts (upgrade_model_version.py's `is_head`).
fn is_v1_head(key: &str) -> bool {
    [
        "bbox_head",
        "mask_head",
        "semantic_head",
        "grid_head",
        "mask_iou_head",
    ]
    .iter()
    .any(|h| key.starts_with(h))
}

/// What loading matched, and what it did not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Tensors loaded.
    pub loaded: usize,
    /// DCN offset convolutions (`conv_offset`) a backbone file lacks: they keep their zero
    /// initialisation, as mmdetection's non-strict `init_cfg` leaves them (ImageNet
    /// checkpoints have none).
    pub initialised: Vec<String>,
    /// Our tensors the file lacks, by the file's name for them.
    pub missing: Vec<String>,
    /// File tensors nothing of ours takes (bookkeeping such as `num_batches_tracked` and
    /// torchvision's `fc` excepted).
    pub unexpected: Vec<String>,
    /// `(name in the file, our shape, the file's shape)`.
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl LoadReport {
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// One line per problem, at most `max` of each kind.
    pub fn problems(&self, max: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut list = |what: &str, items: Vec<String>| {
            let n = items.len();
            for i in items.into_iter().take(max) {
                out.push(format!("{what}: {i}"));
            }
            if n > max {
                out.push(format!("... and {} more {what}", n - max));
            }
        };
        list("missing", self.missing.clone());
        list("unexpected", self.unexpected.clone());
        list(
            "mis-shaped",
            self.mismatched
                .iter()
                .map(|(n, ours, theirs)| format!("{n} (model {ours:?}, file {theirs:?})"))
                .collect(),
        );
        out
    }
}

/// The map from our tensor names (module paths with PyTorch's parameter names, as
/// [`BurnToPyTorchAdapter`] gives them) to a layout's names.
#[derive(Debug, Clone)]
pub struct Naming {
    layout: Layout,
    /// SCNet's residual context encoder: `convs.0.{block}.conv{1,2}`.
    glbctx_res: bool,
    /// The backbone's shortcuts start with an average pool (`downsample.1` is the conv).
    avg_down: bool,
    /// The backbone's norms are group norms: mmdetection names them `gn1`, ... (torchvision
    /// keeps the attribute names `bn1`, ...).
    group_norm: bool,
    /// Names are the backbone's own, without `backbone.` (a backbone checkpoint).
    backbone_only: bool,
    /// The neck's type: FPN and PAFPN keep bare convs and norm lists, the others mmcv's
    /// ConvModules.
    neck: NeckKind,
    /// mmcv's name stem of the neck's norms (`lateral_convs.0.gn`): `gn` or `bn`.
    neck_norm: &'static str,
    /// The same for the RoI heads' ConvModules (`shared_convs.0.gn`, `convs.0.gn`).
    head_norm: &'static str,
    /// The box heads are Double Heads: their fully connected layers are `fc_branch.i`, and
    /// this is the name stem of their bottlenecks' norms (`conv_branch.0.bn1`).
    double_head: Option<&'static str>,
    /// Shared convs of the (first) box head: torchvision's v2 box head numbers its fc after
    /// them.
    box_convs: usize,
}

/// mmcv's name stem of a norm layer (`build_norm_layer`'s abbreviation).
fn norm_abbr(norm: Option<&Norm>) -> &'static str {
    match norm {
        Some(Norm::Group(_)) => "gn",
        _ => "bn",
    }
}

impl Naming {
    /// For a whole detector.
    pub fn detector(layout: Layout, det: &Detector) -> Self {
        let glbctx_res = match &det.roi_head {
            RoiHead::HtcLite(h) => h.glbctx_head.conv_to_res,
            _ => false,
        };
        let ops = det.roi_head.ops();
        let head_norm = ops
            .bbox_heads()
            .iter()
            .find_map(|h| h.shared_norms.first())
            .or_else(|| ops.mask_heads().iter().find_map(|h| h.norms.first()));
        Naming {
            layout,
            glbctx_res,
            avg_down: det.backbone.avg_down,
            group_norm: det.backbone.group_norm,
            backbone_only: false,
            neck: det.config().neck.kind,
            neck_norm: det.config().neck.norm.abbr(),
            head_norm: norm_abbr(head_norm),
            double_head: (det.config().bbox_head.kind == BBoxHeadKind::Double)
                .then(|| det.config().bbox_head.norm.abbr()),
            box_convs: det.config().bbox_head.num_shared_convs,
        }
    }

    /// For a backbone on its own (a torchvision or timm checkpoint, or the `backbone.*` of an
    /// mmdetection one with the prefix taken off).
    pub fn backbone(layout: Layout, backbone: &ResNet) -> Self {
        Naming {
            layout,
            glbctx_res: false,
            avg_down: backbone.avg_down,
            group_norm: backbone.group_norm,
            backbone_only: true,
            neck: NeckKind::Fpn,
            neck_norm: "bn",
            head_norm: "bn",
            double_head: None,
            box_convs: 0,
        }
    }

    /// The file's name for our tensor `ours`, or None for a tensor the layout has no name for.
    pub fn name(&self, ours: &str) -> Option<String> {
        let (module, param) = ours.rsplit_once('.')?;
        let parts: Vec<&str> = module.split('.').collect();
        let mapped = match self.layout {
            Layout::Mmdet if !self.backbone_only => self.mmdet_module(&parts)?,
            Layout::Torchvision if !self.backbone_only => {
                self.torchvision_detector_module(&parts)?
            }
            Layout::Detectron2 => self.detectron2_module(&parts)?,
            _ => self.backbone_module(&parts)?,
        };
        Some(format!("{mapped}.{param}"))
    }

    fn mmdet_module(&self, parts: &[&str]) -> Option<String> {
        Some(match parts {
            ["backbone", rest @ ..] => format!("backbone.{}", self.backbone_module(rest)?),
            ["neck", rest @ ..] if !matches!(self.neck, NeckKind::Fpn | NeckKind::Pafpn) => {
                format!("neck.{}", self.convmodule_neck(rest))
            }
            // `lateral_norms.i` -> `lateral_convs.i.gn` (also fpn_, downsample_, pafpn_).
            ["neck", list, i] if list.ends_with("_norms") => format!(
                "neck.{}_convs.{i}.{}",
                list.trim_end_matches("_norms"),
                self.neck_norm
            ),
            ["neck", list, i] => format!("neck.{list}.{i}.conv"),
            ["rpn_head", m] => format!("rpn_head.rpn_{m}"),
            // Our RoI head kinds name their parts as mmdetection's (`bbox_head`, `mask_head` as
            // lists exactly when mmdetection's are `ModuleList`s, `glbctx_head`); burn leaves
            // the enum's variant out of the path, as mmdetection has no such level.
            ["roi_head", rest @ ..] => format!("roi_head.{}", self.roi_part(rest)?),
            _ => return None,
        })
    }

    /// torchvision's detection models' names (`maskrcnn_resnet50_fpn`, as
    /// torchvision/models/detection/ builds them at 0.29; older files' names are renamed
    /// first by [`WeightsFile::torchvision_detector_to_ours`]): the backbone under
    /// `backbone.body.`, the FPN's `backbone.fpn.inner_blocks.i.0` / `layer_blocks.i.0`,
    /// `rpn.head.conv.0.0`, `cls_logits`, `bbox_pred`, `roi_heads.box_head.fc6` / `fc7`,
    /// `roi_heads.box_predictor.cls_score` / `bbox_pred`, `roi_heads.mask_head.i.0`,
    /// `roi_heads.mask_predictor.conv5_mask` / `mask_fcn_logits`. Parts torchvision's Mask
    /// R-CNN does not have get no name.
    fn torchvision_detector_module(&self, parts: &[&str]) -> Option<String> {
        Some(match parts {
            ["backbone", rest @ ..] => format!("backbone.body.{}", self.backbone_module(rest)?),
            ["neck", "lateral_convs", i] => format!("backbone.fpn.inner_blocks.{i}.0"),
            ["neck", "fpn_convs", i] => format!("backbone.fpn.layer_blocks.{i}.0"),
            // v2's FPN: Conv2dNormActivation with a batch norm.
            ["neck", "lateral_norms", i] => format!("backbone.fpn.inner_blocks.{i}.1"),
            ["neck", "fpn_norms", i] => format!("backbone.fpn.layer_blocks.{i}.1"),
            ["rpn_head", "conv"] => "rpn.head.conv.0.0".into(),
            // v2's RPNHead(conv_depth=2).
            ["rpn_head", "extra_convs", i] => {
                format!("rpn.head.conv.{}.0", i.parse::<usize>().ok()? + 1)
            }
            // v2's FastRCNNConvFCHead: a Sequential of conv + BN blocks, a Flatten, the fc.
            ["roi_head", "bbox_head", "shared_convs", i] => format!("roi_heads.box_head.{i}.0"),
            ["roi_head", "bbox_head", "shared_norms", i] => format!("roi_heads.box_head.{i}.1"),
            ["roi_head", "bbox_head", "fc1"] if self.box_convs > 0 => {
                format!("roi_heads.box_head.{}", self.box_convs + 1)
            }
            // v2's MaskRCNNHeads with a norm.
            ["roi_head", "mask_head", "norms", i] => format!("roi_heads.mask_head.{i}.1"),
            ["rpn_head", "cls"] => "rpn.head.cls_logits".into(),
            ["rpn_head", "reg"] => "rpn.head.bbox_pred".into(),
            ["roi_head", "bbox_head", m] => match *m {
                "fc1" => "roi_heads.box_head.fc6",
                "fc2" => "roi_heads.box_head.fc7",
                "cls" => "roi_heads.box_predictor.cls_score",
                "reg" => "roi_heads.box_predictor.bbox_pred",
                _ => return None,
            }
            .into(),
            ["roi_head", "mask_head", "convs", i] => format!("roi_heads.mask_head.{i}.0"),
            ["roi_head", "mask_head", "upsample"] => "roi_heads.mask_predictor.conv5_mask".into(),
            ["roi_head", "mask_head", "logits"] => {
                "roi_heads.mask_predictor.mask_fcn_logits".into()
            }
            _ => return None,
        })
    }

    /// detectron2's names (see [`Layout::Detectron2`]): the ResNet under
    /// `backbone.bottom_up.` with its stem `stem.conv1` (norm `stem.conv1.norm`), stages
    /// `res2`..`res5`, each conv's norm under it (`conv1.norm`) and the projection `shortcut`;
    /// the FPN's `fpn_lateral{2..5}` / `fpn_output{2..5}`; the RPN, box and mask heads as
    /// detectron2's `StandardRPNHead`, `FastRCNNConvFCHead` + `FastRCNNOutputLayers` and
    /// `MaskRCNNConvUpsampleHead` name them. Parts detectron2's Mask R-CNN does not have get no
    /// name.
    fn detectron2_module(&self, parts: &[&str]) -> Option<String> {
        Some(match parts {
            ["backbone", "conv1"] => "backbone.bottom_up.stem.conv1".into(),
            ["backbone", "bn1"] => "backbone.bottom_up.stem.conv1.norm".into(),
            ["backbone", layer, b, m] => {
                let stage: usize = layer.strip_prefix("layer")?.parse().ok()?;
                let m = match *m {
                    "downsample_conv" => "shortcut".to_string(),
                    "downsample_bn" => "shortcut.norm".to_string(),
                    bn if bn.starts_with("bn") => format!("conv{}.norm", &bn[2..]),
                    conv if conv.starts_with("conv") => conv.to_string(),
                    _ => return None,
                };
                format!("backbone.bottom_up.res{}.{b}.{m}", stage + 1)
            }
            ["neck", "lateral_convs", i] => {
                format!("backbone.fpn_lateral{}", i.parse::<usize>().ok()? + 2)
            }
            ["neck", "fpn_convs", i] => {
                format!("backbone.fpn_output{}", i.parse::<usize>().ok()? + 2)
            }
            ["rpn_head", "conv"] => "proposal_generator.rpn_head.conv".into(),
            ["rpn_head", "cls"] => "proposal_generator.rpn_head.objectness_logits".into(),
            ["rpn_head", "reg"] => "proposal_generator.rpn_head.anchor_deltas".into(),
            ["roi_head", "bbox_head", m] => match *m {
                "fc1" => "roi_heads.box_head.fc1",
                "fc2" => "roi_heads.box_head.fc2",
                "cls" => "roi_heads.box_predictor.cls_score",
                "reg" => "roi_heads.box_predictor.bbox_pred",
                _ => return None,
            }
            .into(),
            ["roi_head", "mask_head", "convs", i] => {
                format!(
                    "roi_heads.mask_head.mask_fcn{}",
                    i.parse::<usize>().ok()? + 1
                )
            }
            ["roi_head", "mask_head", "upsample"] => "roi_heads.mask_head.deconv".into(),
            ["roi_head", "mask_head", "logits"] => "roi_heads.mask_head.predictor".into(),
            _ => return None,
        })
    }

    fn roi_part(&self, parts: &[&str]) -> Option<String> {
        // A stage index, when the part is a list.
        let (head, stage, rest) = match parts {
            [head, i, rest @ ..] if i.parse::<usize>().is_ok() => (*head, format!(".{i}"), rest),
            [head, rest @ ..] => (*head, String::new(), rest),
            [] => return None,
        };
        // Mask Scoring's head sits beside the mask head in mmdetection (`roi_head.
        // mask_iou_head.convs.0`); ours rides on the mask head it scores.
        if head == "mask_head" && rest.first() == Some(&"mask_iou_head") {
            return Some(rest.join("."));
        }
        let m = match (head, rest) {
            ("bbox_head", ["shared_convs", i]) => format!("shared_convs.{i}.conv"),
            ("bbox_head", ["shared_norms", i]) => format!("shared_convs.{i}.{}", self.head_norm),
            ("mask_head", ["norms", i]) => format!("convs.{i}.{}", self.head_norm),
            // The Double Head's regression branch: mmcv ConvModules (norm `bn`) in
            // `res_block`, bottlenecks with `bn1`..`bn3` (`gn1`.. with group norm).
            ("bbox_head", ["double", rest @ ..]) => {
                let norm = self.double_head.unwrap_or("bn");
                rest.iter()
                    .map(|p| match *p {
                        "norm" => "bn".to_string(),
                        bn if bn.len() == 3 && bn.starts_with("bn") => {
                            format!("{norm}{}", &bn[2..])
                        }
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(".")
            }
            // The fine-tuning step's second classification branch (no mmdetection
            // counterpart): named as the head's own layers under `dual_cls.`.
            ("bbox_head", ["dual_cls", m]) => match *m {
                "fc1" => "dual_cls.shared_fcs.0".to_string(),
                "fc2" => "dual_cls.shared_fcs.1".to_string(),
                "cls" | "cls_normed" => "dual_cls.fc_cls".to_string(),
                _ => return None,
            },
            // TSD's branches (official `TSDSharedFCBBoxHead` names; the head's own layers are
            // its sibling, `shared_fcs`, `fc_cls`, `fc_reg`).
            ("bbox_head", ["tsd", rest @ ..]) => match rest {
                ["shared_fc"] => "shared_fc.0".to_string(),
                [m @ ("delta_c" | "delta_r"), i] => format!("{m}.{}", 2 * i.parse::<usize>().ok()?),
                ["pc_fcs", i] => format!("TSD_pc_fcs.{i}"),
                ["pr_fcs", i] => format!("TSD_pr_fcs.{i}"),
                ["fc_cls" | "fc_cls_normed"] => "TSD_fc_cls".to_string(),
                ["fc_reg"] => "TSD_fc_reg".to_string(),
                _ => return None,
            },
            ("bbox_head", [m]) if self.double_head.is_some() && m.starts_with("fc") => match *m {
                "fc1" => "fc_branch.0".to_string(),
                "fc2" => "fc_branch.1".to_string(),
                _ => return None,
            },
            ("bbox_head", [m]) => match *m {
                "fc1" => "shared_fcs.0".to_string(),
                "fc2" => "shared_fcs.1".to_string(),
                "cls" | "cls_normed" => "fc_cls".to_string(),
                "reg" => "fc_reg".to_string(),
                _ => return None,
            },
            ("mask_head", rest) => match rest {
                ["convs", i] => format!("convs.{i}.conv"),
                ["conv_res"] => "conv_res.conv".into(),
                ["upsample"] => "upsample".into(),
                // mmcv's CARAFEPack sits where the deconvolution would.
                ["upsample_carafe", part] => format!("upsample.{part}"),
                ["logits"] | ["logits_normed"] => "conv_logits".into(),
                _ => return None,
            },
            ("glbctx_head", ["convs", i]) => {
                let i: usize = i.parse().ok()?;
                if self.glbctx_res {
                    format!("convs.0.{}.conv{}", i / 2, i % 2 + 1)
                } else {
                    format!("convs.{i}.conv")
                }
            }
            ("glbctx_head", ["fc"]) => "fc".into(),
            _ => return None,
        };
        Some(format!("{head}{stage}.{m}"))
    }
}

impl Naming {
    /// The checkpoint's names inside a neck made of mmcv ConvModules (FPN_CARAFE, FPG,
    /// NAS-FPN): ours are theirs but for the norm's name (`norm` -> `bn` / `gn`) and NAS-FPN's
    /// extra levels, Sequentials of the ConvModule and a pool (`extra_downsamples.0.0.conv`).
    fn convmodule_neck(&self, parts: &[&str]) -> String {
        let mut names: Vec<&str> = parts
            .iter()
            .map(|p| if *p == "norm" { self.neck_norm } else { p })
            .collect();
        if self.neck == NeckKind::NasFpn && names.first() == Some(&"extra_downsamples") {
            names.insert(2.min(names.len()), "0");
        }
        names.join(".")
    }

    /// The checkpoint's names inside a ResNet: ours differ in the deep stem and the shortcut.
    fn backbone_module(&self, parts: &[&str]) -> Option<String> {
        let mmdet = self.layout == Layout::Mmdet;
        match parts {
            ["stem", list, i] => {
                let i: usize = i.parse().ok()?;
                let norm = *list == "norms";
                Some(match (mmdet, norm) {
                    (true, _) => format!("stem.{}", 3 * i + usize::from(norm)),
                    // timm: the last norm sits outside the stem's Sequential.
                    (false, true) if i == 2 => "bn1".into(),
                    (false, _) => format!("conv1.{}", 3 * i + usize::from(norm)),
                })
            }
            _ => {
                let shift = usize::from(self.avg_down);
                let names: Vec<String> = parts
                    .iter()
                    .map(|p| match *p {
                        "downsample_conv" => format!("downsample.{shift}"),
                        "downsample_bn" => format!("downsample.{}", 1 + shift),
                        // mmcv's ContextBlock keeps its transform in one Sequential.
                        "add_squeeze" => "channel_add_conv.0".into(),
                        "add_norm" => "channel_add_conv.1".into(),
                        "add_expand" => "channel_add_conv.3".into(),
                        // mmcv's build_norm_layer names a group norm `gn` + postfix.
                        bn if mmdet
                            && self.group_norm
                            && bn
                                .strip_prefix("bn")
                                .is_some_and(|d| d.parse::<u8>().is_ok()) =>
                        {
                            format!("gn{}", &bn[2..])
                        }
                        other => other.to_string(),
                    })
                    .collect();
                Some(names.join("."))
            }
        }
    }
}

/// File tensors that are bookkeeping, not weights.
fn ignored(layout: Layout, name: &str) -> bool {
    name.ends_with("num_batches_tracked")
        || (layout == Layout::Torchvision && (name == "fc.weight" || name == "fc.bias"))
}

/// The error of a file that does not fit, listing what is wrong.
fn misfit(file: &WeightsFile, layout: Layout, report: &LoadReport) -> ModelError {
    let hint = match file.looks_like() {
        Some(l) if l != layout => format!(
            "; it looks like a {} file: try --from {}",
            l.name(),
            l.name()
        ),
        _ => String::new(),
    };
    weights_error(
        &file.path,
        format!(
            "does not fit the model read as {} ({} missing, {} unexpected, {} mis-shaped; \
             --allow-partial loads what fits{hint}):\n  {}",
            layout.name(),
            report.missing.len(),
            report.unexpected.len(),
            report.mismatched.len(),
            report.problems(20).join("\n  ")
        ),
    )
}

/// Loads `file` into `module` under `naming`. Unless `allow_partial`, a missing, unexpected
/// or mis-shaped tensor is an error naming every one of them; with it they are left as they
/// were (and reported).
pub fn load<M: ModuleSnapshot>(
    module: &mut M,
    file: &WeightsFile,
    naming: &Naming,
    allow_partial: bool,
) -> Result<LoadReport> {
    let ours = module.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
    let mut report = LoadReport::default();
    let mut used = BTreeSet::new();
    let mut tensors = Vec::new();
    for t in &ours {
        let Some(theirs) = naming.name(&t.name) else {
            report.missing.push(t.name.clone());
            continue;
        };
        match file.tensors.get(&theirs) {
            None => report.missing.push(theirs),
            Some(f) => {
                used.insert(theirs.clone());
                if f.shape.to_vec() != t.shape.to_vec() {
                    report
                        .mismatched
                        .push((theirs, t.shape.to_vec(), f.shape.to_vec()));
                    continue;
                }
                let mut f = f.clone();
                f.name = t.name.clone();
                tensors.push(f);
            }
        }
    }
    report.unexpected = file
        .tensors
        .keys()
        .filter(|k| !used.contains(*k) && !ignored(naming.layout, k))
        .cloned()
        .collect();
    if !allow_partial && !report.is_complete() {
        return Err(misfit(file, naming.layout, &report));
    }
    // Half-precision files load as float32: burn's applier keeps a source's width otherwise.
    let adapter = PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32));
    let result = module.apply(tensors, None, Some(Box::new(adapter)), true);
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| format!("{e:?}")).collect();
        return Err(weights_error(
            &file.path,
            format!("applying the weights failed: {}", errors.join("; ")),
        ));
    }
    report.loaded = result.applied.len();
    Ok(report)
}

/// Loads a torchvision or timm checkpoint (or an mmdetection one's `backbone.*`, or
/// open-mmlab's ImageNet weights in mmdetection's names) into `backbone`. DCN offset
/// convolutions the file lacks keep their zero initialisation ([`LoadReport::initialised`]).
///
/// # Errors
/// [`ModelError::Weights`] naming every tensor that is missing, unexpected or mis-shaped
/// (unless `allow_partial`).
pub fn load_backbone(
    backbone: &mut ResNet,
    file: &WeightsFile,
    allow_partial: bool,
) -> Result<LoadReport> {
    // An mmdetection checkpoint holds the backbone under `backbone.`; take just that part.
    let prefixed = file.tensors.keys().any(|k| k.starts_with("backbone."));
    let tensors: BTreeMap<String, PackTensor> = if prefixed {
        file.tensors
            .iter()
            .filter_map(|(k, t)| {
                k.strip_prefix("backbone.").map(|rest| {
                    let mut t = t.clone();
                    t.name = rest.to_string();
                    (rest.to_string(), t)
                })
            })
            .collect()
    } else {
        file.tensors.clone()
    };
    // mmdetection names a deep stem `stem.*` (timm `conv1.*`) and group norms `gn1`, ...
    // (torchvision keeps `bn1`); everything else is shared.
    let mmdet_names =
        |k: &String| k.starts_with("stem.") || k.starts_with("gn1.") || k.contains(".gn1.");
    let layout = if tensors.keys().any(mmdet_names) {
        Layout::Mmdet
    } else {
        Layout::Torchvision
    };
    let naming = Naming::backbone(layout, backbone);
    let sub = WeightsFile {
        path: file.path.clone(),
        top_level_key: file.top_level_key.clone(),
        tensors,
    };
    // DCN offsets absent from the file are expected: load what there is, then judge the rest.
    let mut report = load(backbone, &sub, &naming, true)?;
    let (offsets, missing): (Vec<String>, Vec<String>) = std::mem::take(&mut report.missing)
        .into_iter()
        .partition(|name| name.contains(".conv_offset."));
    report.missing = missing;
    report.initialised = offsets;
    if !allow_partial && !report.is_complete() {
        return Err(misfit(file, layout, &report));
    }
    Ok(report)
}

/// Our tensors under `naming`'s names, in PyTorch's layout (Linear weights `[out, in]`).
pub fn export(module: &impl ModuleSnapshot, naming: &Naming) -> Result<Vec<(String, PackTensor)>> {
    module
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|t| {
            let name = naming.name(&t.name).ok_or_else(|| {
                ModelError::Weights(format!(
                    "this model's {} has no counterpart in {}'s layout, which has no such part",
                    t.name,
                    naming.layout.name()
                ))
            })?;
            Ok((name, t))
        })
        .collect()
}

/// Writes `tensors` as a safetensors file (float32), atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: Vec<(String, PackTensor)>,
    metadata: BTreeMap<String, String>,
) -> Result<()> {
    let mut owned = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let data =
            bridge::into_data(t).map_err(|e| weights_error(path, format!("tensor {name}: {e}")))?;
        let data = if data.dtype() == DType::F32 {
            data
        } else {
            data.convert::<f32>()
        };
        let shape = data.shape().to_vec();
        owned.push((name, shape, data.into_bytes()));
    }
    let views = owned
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| weights_error(path, format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta: std::collections::HashMap<String, String> = metadata.into_iter().collect();
    let bytes =
        safetensors::tensor::serialize(views, Some(meta)).map_err(|e| weights_error(path, e))?;
    seesaw_data::io::write_atomic(path, |w| std::io::Write::write_all(w, &bytes))
        .map_err(|e| weights_error(path, e))
}
