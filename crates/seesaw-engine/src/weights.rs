//! PyTorch checkpoints as Seesaw checkpoints and back: pretrained backbones for training,
//! `seesaw weights convert` (torchvision / mmdetection to ours) and `seesaw weights export`
//! (ours to safetensors with PyTorch names).

use std::collections::BTreeMap;
use std::path::Path;

use seesaw_model::backbones::BackboneKind;
use seesaw_model::burn::tensor::Device;
use seesaw_model::detectors::Detector;
use seesaw_model::weights::{self, Layout, LoadReport, Naming, WeightsFile};

use crate::checkpoint::{self, CheckpointMeta};
use crate::config::Config;
use crate::data::Split;
use crate::error::{EngineError, Result};
use crate::train::load_for_inference;

/// Loads `model.backbone.init` (when set) into `model`'s backbone; every backbone tensor must
/// be found (the ImageNet classifier and BN counters are ignored), DCN offset convolutions
/// excepted (they start at zero, as in mmdetection).
pub fn init_backbone(cfg: &Config, model: &mut Detector) -> Result<Option<LoadReport>> {
    let path = &cfg.model.backbone.init;
    if path.is_empty() {
        return Ok(None);
    }
    let file = Path::new(path);
    if !file.is_file() {
        // mmdetection's `torchvision://` and `open-mmlab://` names are downloads; we read files.
        let source = if path.contains("://") {
            "a download name, not a file: download it and give its path (mmdetection's \
             open-mmlab://X is download.openmmlab.com/pretrain/third_party/, torchvision://X \
             is download.pytorch.org/models/)"
        } else {
            match cfg.model.backbone.kind {
                BackboneKind::Resnext | BackboneKind::Resnest => {
                    "open-mmlab's ImageNet weights, the config's file name under \
                     download.openmmlab.com/pretrain/third_party/; timm's and torchvision's \
                     files of the same network also fit"
                }
                _ => {
                    "torchvision's ImageNet weights, e.g. resnet50-0676ba61.pth from \
                     download.pytorch.org/models"
                }
            }
        };
        let shown = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        return Err(EngineError::Request(format!(
            "model.backbone.init: {}: no such file ({source}; relative paths are from the \
             working directory; or --set model.backbone.init=\"\" to start from scratch)",
            shown.display()
        )));
    }
    let file = WeightsFile::open(file)?;
    let report = weights::load_backbone(&mut model.backbone, &file, false)?;
    tracing::info!("backbone: {} tensors from {path}", report.loaded);
    if !report.initialised.is_empty() {
        tracing::info!(
            "backbone: {} DCN offset tensors not in {path} keep their zero initialisation",
            report.initialised.len()
        );
    }
    Ok(Some(report))
}

/// Class names and dataset ids for a converted model: the checkpoint's own (mmdetection's
/// meta) when they fit, else the config's training set when it can be read and has the model's
/// class count, else ids 1..=C with the training set's names where it has those ids (a
/// torchvision COCO model's 90 classes are COCO's category ids, 80 of them annotated; the
/// others are named "N/A", as torchvision names them) and `class_i` without a training set.
fn classes(cfg: &Config, file: &WeightsFile) -> (Vec<String>, Vec<u64>) {
    let c = cfg.model.num_classes;
    // Only the categories are read: a file the trainer would refuse for another reason (an
    // LVIS image without its lists) still names them.
    let split = seesaw_data::Dataset::load_with_warnings(&cfg.data.train_json)
        .ok()
        .map(|(ds, _)| Split::new(ds, &cfg.data.train_json, &cfg.data.train_images));
    let ids: Vec<u64> = match &split {
        Some(s) if s.num_classes() == c => s.category_ids.clone(),
        _ => (1..=c as u64).collect(),
    };
    if let Some(names) = file.mmdet_classes().filter(|n| n.len() == c) {
        return (names, ids);
    }
    match split {
        Some(s) if s.num_classes() == c => (s.class_names(), ids),
        Some(s)
            if s.category_ids
                .iter()
                .all(|&id| (1..=c as u64).contains(&id)) =>
        {
            let name_of: std::collections::HashMap<u64, String> = s
                .dataset
                .categories
                .iter()
                .map(|k| (k.id, k.name.clone()))
                .collect();
            let names = ids
                .iter()
                .map(|id| name_of.get(id).cloned().unwrap_or_else(|| "N/A".into()))
                .collect();
            (names, ids)
        }
        _ => ((0..c).map(|i| format!("class_{i}")).collect(), ids),
    }
}

/// Reads a torchvision or mmdetection checkpoint into the detector `cfg` describes and writes
/// it as a Seesaw checkpoint (iteration 0) that `seesaw test`, `infer` and `train --set
/// train.load_from` take. A torchvision classification file fills the backbone; a torchvision
/// detection model (`maskrcnn_resnet50_fpn`) the whole detector, as does an mmdetection one
/// (1.x files upgraded on the way).
pub fn convert(
    input: &Path,
    layout: Layout,
    cfg: &Config,
    out: &Path,
    allow_partial: bool,
) -> Result<LoadReport> {
    let mut file = WeightsFile::open(input)?;
    if layout == Layout::Mmdet && file.is_mmdet_v1() {
        let notes = file.upgrade_mmdet_v1(cfg.model.num_classes)?;
        tracing::info!(
            "{}: an mmdetection 1.x checkpoint, upgraded to the 2.x layout as \
             upgrade_model_version.py does (RoI head parts under roi_head.; {} class-indexed \
             tensors re-laid, background last)",
            input.display(),
            notes.len()
        );
        for n in notes {
            tracing::info!("{n}");
        }
    }
    let device = Device::flex();
    let mut model = cfg.model.init(&device)?;
    let tv_detector = layout == Layout::Torchvision && file.is_torchvision_detector();
    if tv_detector {
        let notes = file.torchvision_detector_to_ours(cfg.model.num_classes)?;
        tracing::info!(
            "{}: a torchvision detection model: {} class-indexed tensors re-laid (background \
             last)",
            input.display(),
            notes.len()
        );
        for n in notes {
            tracing::info!("{n}");
        }
    }
    if layout == Layout::Detectron2 {
        for n in file.detectron2_to_ours()? {
            tracing::info!("{}: a detectron2 model: {n}", input.display());
        }
        // Conventions the file can not tell: say what detectron2's model zoo uses.
        if cfg.model.backbone.style != seesaw_model::backbones::ResNetStyle::Caffe {
            tracing::warn!(
                "model.backbone.style is \"pytorch\": detectron2's MSRA-initialised R50/R101 \
                 models put a block's stride on its 1x1 (STRIDE_IN_1X1), style \"caffe\" \
                 (configs/mask_rcnn_r50_fpn_detectron2_lvis.toml)"
            );
        }
        if cfg.data.mean[0] < cfg.data.mean[2] {
            tracing::warn!(
                "data.mean {:?} is in BGR order; the conversion makes the model read RGB \
                 images, so give detectron2's PIXEL_MEAN reversed ([123.675, 116.28, 103.53])",
                cfg.data.mean
            );
        }
    }
    let report = match layout {
        Layout::Detectron2 => {
            let naming = Naming::detector(Layout::Detectron2, &model);
            weights::load(&mut model, &file, &naming, allow_partial)?
        }
        Layout::Torchvision if tv_detector => {
            let naming = Naming::detector(Layout::Torchvision, &model);
            weights::load(&mut model, &file, &naming, allow_partial)?
        }
        Layout::Torchvision => weights::load_backbone(&mut model.backbone, &file, allow_partial)?,
        Layout::Mmdet => {
            let naming = Naming::detector(Layout::Mmdet, &model);
            weights::load(&mut model, &file, &naming, allow_partial)?
        }
    };
    if report.loaded == 0 {
        let hint = match file.looks_like() {
            Some(l) if l != layout => format!(
                ": it looks like a {} file, try --from {}",
                l.name(),
                l.name()
            ),
            _ => String::new(),
        };
        return Err(EngineError::Request(format!(
            "{}: none of its tensors fits the model read as {}{hint}; no checkpoint written",
            input.display(),
            layout.name()
        )));
    }
    let (class_names, category_ids) = classes(cfg, &file);
    let meta = CheckpointMeta {
        iter: 0,
        config: cfg.to_toml()?,
        class_names,
        category_ids,
        loss_states: Default::default(),
        last_loss: None,
    };
    checkpoint::save(out, &meta, &model, None)?;
    Ok(report)
}

/// Writes a Seesaw checkpoint's weights as safetensors under `layout`'s names (mmdetection's
/// or detectron2's for the whole detector, the latter with its BGR stem; torchvision's for the
/// backbone alone), in PyTorch's layout.
pub fn export(ckpt: &Path, layout: Layout, out: &Path) -> Result<usize> {
    let loaded = load_for_inference(ckpt, None)?;
    let model = &loaded.model;
    let tensors = match layout {
        Layout::Mmdet => weights::export(model, &Naming::detector(layout, model))?,
        // detectron2 reads BGR: the stem gets its channel order back.
        Layout::Detectron2 => weights::export(model, &Naming::detector(layout, model))?
            .into_iter()
            .map(|(name, t)| {
                if name == weights::DETECTRON2_STEM {
                    weights::reverse_input_channels(t)
                        .map(|t| (name, t))
                        .map_err(EngineError::Request)
                } else {
                    Ok((name, t))
                }
            })
            .collect::<Result<Vec<_>>>()?,
        Layout::Torchvision => {
            weights::export(&model.backbone, &Naming::backbone(layout, &model.backbone))?
        }
    };
    let n = tensors.len();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert(
        "classes".to_string(),
        serde_json::to_string(&loaded.meta.class_names)
            .map_err(|e| EngineError::Request(format!("class names: {e}")))?,
    );
    meta.insert("seesaw_config".to_string(), loaded.meta.config.clone());
    weights::write_safetensors(out, tensors, meta)?;
    Ok(n)
}
