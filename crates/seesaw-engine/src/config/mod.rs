//! Run configs: TOML files in `configs/`, named after mmdetection's, with `--set a.b=value`
//! overrides. Every key has a documented default; an unknown key is an error that lists the
//! valid ones. The resolved config is what a work dir and a checkpoint keep.

use std::path::Path;

pub use seesaw_data::config::DataConfig;
use seesaw_model::detectors::DetectorConfig;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

mod inheritance;

pub use inheritance::{apply_set, valid_keys};
use inheritance::{check_keys, defaults_table, merge, resolve};

/// The optimisation schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Seed of initial weights, data order, flips, scales and RoI sampling. Default 0.
    pub seed: u64,
    /// Images per iteration. Default 16 (8 GPUs x 2 in mmdetection).
    pub batch_size: usize,
    /// Iterations in all. Default: 24 epochs of LVIS v1 train (100,170 images) at 16.
    pub iters: usize,
    /// Base learning rate. Default 0.02.
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Linear warm-up iterations and start ratio. Default 500 and 1e-3.
    pub warmup_iters: usize,
    pub warmup_ratio: f64,
    /// The learning-rate decay after warm-up. Default step.
    pub schedule: Schedule,
    pub steps: Vec<usize>,
    pub gamma: f64,
    /// Clip each parameter's gradient to this L2 norm; 0 = off. Default 0.
    pub grad_clip: f64,
    /// Iterations between log lines (metrics.jsonl). Default 50.
    pub log_every: usize,
    /// Iterations between checkpoints; 0 = only the last. Default 5000.
    pub checkpoint_every: usize,
    /// Iterations between validations; 0 = none. Default 0.
    pub eval_every: usize,
    /// mmdetection's `load_from`: a Seesaw checkpoint (from `seesaw train` or `seesaw weights
    /// convert`) whose weights start a fresh run at iteration 0; the optimizer and the loss's
    /// class counts start afresh. Default "" (none; `model.backbone.init` or random).
    pub load_from: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            batch_size: 16,
            iters: 150_264,
            lr: 0.02,
            momentum: 0.9,
            weight_decay: 1e-4,
            warmup_iters: 500,
            warmup_ratio: 1e-3,
            schedule: Schedule::Step,
            steps: vec![100_176, 137_742],
            gamma: 0.1,
            grad_clip: 0.0,
            log_every: 50,
            checkpoint_every: 5000,
            eval_every: 0,
            load_from: String::new(),
        }
    }
}

/// How the learning rate decays after warm-up (mmdetection's `param_scheduler`); a name that
/// is not one of these is an error listing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// `step`: multiplied by `gamma` at each of `steps` (`MultiStepLR`).
    Step,
    /// `cosine`: to 0 at `iters` (`CosineAnnealingLR`).
    Cosine,
}

impl TrainConfig {
    /// Learning rate at iteration `iter` (0-based): mmdetection's linear warm-up
    /// `lr * (1 - (1 - iter / warmup) * (1 - ratio))`, then steps or cosine.
    pub fn lr_at(&self, iter: usize) -> f64 {
        let base = match self.schedule {
            Schedule::Cosine => {
                let t = iter as f64 / self.iters.max(1) as f64;
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
            }
            Schedule::Step => {
                let k = self.steps.iter().filter(|&&s| iter >= s).count();
                self.lr * self.gamma.powi(k as i32)
            }
        };
        if iter < self.warmup_iters {
            let k = (1.0 - iter as f64 / self.warmup_iters as f64) * (1.0 - self.warmup_ratio);
            base * (1.0 - k)
        } else {
            base
        }
    }
}

/// Inference over the validation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestConfig {
    /// Images per forward pass. Default 1.
    pub batch_size: usize,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self { batch_size: 1 }
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub model: DetectorConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub test: TestConfig,
}

impl Config {
    /// Parses TOML text (named `file` in errors; `_base_` files are found relative to it)
    /// with `sets` applied on top.
    ///
    /// # Errors
    /// Unreadable or malformed files, unknown keys, values of the wrong type or out of range.
    pub fn from_toml(text: &str, file: &Path, sets: &[String]) -> Result<Self> {
        let start = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
        let mut table = resolve(text, file, &mut vec![start])?;
        let defaults = defaults_table()?;
        for s in sets {
            apply_set(&mut table, s)?;
            inheritance::expand_shorthands(&mut table);
            check_keys(&table, &defaults, "", Path::new("--set"))?;
        }
        // Keys not given keep their defaults, at any depth (`model.rpn.train.nms_pre` alone
        // leaves the rest of `model.rpn.train` as it was).
        let mut merged = defaults;
        merge(&mut merged, table);
        let mut cfg: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| EngineError::config(file, e.to_string()))?;
        // What a backbone `type` fixes is written out, so the resolved config says what runs.
        cfg.model.backbone = cfg.model.backbone.normalized();
        cfg.model.neck = cfg.model.neck.normalized();
        cfg.check(file)?;
        Ok(cfg)
    }

    /// Reads a config file (and its `_base_` files) and applies `sets`.
    ///
    /// # Errors
    /// As [`Config::from_toml`].
    pub fn load(file: &Path, sets: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| EngineError::io(file, "cannot read the config", e))?;
        Self::from_toml(&text, file, sets)
    }

    /// The resolved config as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| EngineError::Request(format!("config: {e}")))
    }

    /// Range checks serde cannot express.
    pub fn check(&self, file: &Path) -> Result<()> {
        let bad = |m: String| Err(EngineError::config(file, m));
        let t = &self.train;
        if t.batch_size == 0 || self.test.batch_size == 0 {
            return bad("train.batch_size and test.batch_size must be positive".into());
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return bad(format!("train.lr must be positive (got {})", t.lr));
        }
        if self.data.train_scales.is_empty()
            || self
                .data
                .train_scales
                .iter()
                .any(|s| s[0] == 0 || s[1] == 0)
        {
            return bad("data.train_scales needs at least one positive [short, long]".into());
        }
        if self.data.size_divisor == 0 || self.data.std.iter().any(|&s| s <= 0.0) {
            return bad("data.size_divisor and data.std must be positive".into());
        }
        self.data.instaboost.check("data.instaboost").or_else(bad)?;
        if let Err(e) = self.model.num_stages() {
            return bad(format!("model.{e}"));
        }
        let neck = &self.model.neck;
        let divisor = neck.required_size_divisor();
        if self.data.size_divisor % divisor != 0 {
            return bad(format!(
                "data.size_divisor = {} but model.neck.type = \"{}\" with start_level {} and \
                 num_outs {} needs a multiple of {divisor} (its extra levels halve by flooring; \
                 mmdetection's NAS-FPN recipe pads to 128)",
                self.data.size_divisor,
                neck.kind.name(),
                neck.start_level,
                neck.num_outs
            ));
        }
        if let Ok(channels) = self.model.backbone.out_channels()
            && let Err(e) = neck.check(&channels)
        {
            return bad(e.to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seesaw_data::SamplerKind;

    #[test]
    fn overrides_unknown_keys_and_round_trip() {
        let f = Path::new("x.toml");
        let cfg = Config::from_toml(
            "[train]\nlr = 0.04\n[model]\nnum_classes = 40\n",
            f,
            &[
                "model.rpn.train.nms_pre=600".into(),
                "data.sampler=rfs".into(),
            ],
        )
        .expect("valid");
        assert_eq!(cfg.train.lr, 0.04);
        assert_eq!(cfg.model.num_classes, 40);
        assert_eq!(cfg.model.rpn.train.nms_pre, 600);
        assert_eq!(cfg.data.sampler, SamplerKind::Rfs);
        let again = Config::from_toml(&cfg.to_toml().expect("toml"), f, &[]).expect("again");
        assert_eq!(again, cfg);

        let e = Config::from_toml("[train]\nlrr = 1\n", f, &[])
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("unknown key `train.lrr`"), "{e}");
        assert!(e.contains("train.lr,"), "{e}");
        let e = Config::from_toml("", f, &["model.bogus=1".into()])
            .expect_err("unknown")
            .to_string();
        assert!(
            e.contains("model.bogus") && e.contains("model.num_classes"),
            "{e}"
        );
        let e = Config::from_toml("[train]\nlr = \"fast\"\n", f, &[])
            .expect_err("type")
            .to_string();
        assert!(e.contains("x.toml") && e.contains("lr"), "{e}");
        let e = Config::from_toml("", f, &["model.loss=focal".into()])
            .expect_err("loss")
            .to_string();
        assert!(e.contains("model.loss"), "{e}");
        // A typo in a typed value names the file, the key and every valid value.
        let e = Config::from_toml("[data]\nsampler = \"rsf\"\n", f, &[])
            .expect_err("sampler")
            .to_string();
        assert!(
            e.contains("x.toml") && e.contains("sampler") && e.contains("rsf"),
            "{e}"
        );
        assert!(
            ["`random`", "`rfs`", "`class_aware`"]
                .iter()
                .all(|v| e.contains(v)),
            "{e}"
        );
        let e = Config::from_toml("", f, &["data.rfs_rounding=floor".into()])
            .expect_err("rounding")
            .to_string();
        assert!(e.contains("`ceil`") && e.contains("`stochastic`"), "{e}");
        let e = Config::from_toml("", f, &["data.train_scale_mode=ranges".into()])
            .expect_err("scale mode")
            .to_string();
        assert!(e.contains("`value`") && e.contains("`range`"), "{e}");
        // data.filter_empty_gt: on unless turned off, and a boolean.
        assert!(
            Config::from_toml("", f, &[])
                .expect("default")
                .data
                .filter_empty_gt
        );
        let off = Config::from_toml("", f, &["data.filter_empty_gt=false".into()]).expect("off");
        assert!(!off.data.filter_empty_gt);
        let e = Config::from_toml("", f, &["data.filter_empty_gt=\"no\"".into()])
            .expect_err("bool")
            .to_string();
        assert!(e.contains("filter_empty_gt"), "{e}");
    }

    #[test]
    fn bases_are_inherited_overridden_and_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
            std::fs::write(&p, text).expect("write");
            p
        };
        write(
            "_base_/model.toml",
            "[model]\nnum_classes = 40\nloss = \"ce\"\n",
        );
        write("_base_/train.toml", "[train]\nlr = 0.04\niters = 10\n");
        let child = write(
            "child.toml",
            "_base_ = [\"_base_/model.toml\", \"_base_/train.toml\"]\n[train]\niters = 20\n",
        );
        let cfg = Config::load(&child, &["model.loss=seesaw".into()]).expect("inherits");
        assert_eq!(cfg.model.num_classes, 40);
        assert_eq!((cfg.train.lr, cfg.train.iters), (0.04, 20));
        assert_eq!(cfg.model.loss, seesaw_model::losses::LossKind::Seesaw);
        // A grandchild inherits through its parent; the saved config has no `_base_`.
        let grand = write(
            "grand.toml",
            "_base_ = \"child.toml\"\n[model]\nnum_classes = 7\n",
        );
        let g = Config::load(&grand, &[]).expect("grandchild");
        assert_eq!((g.model.num_classes, g.train.iters), (7, 20));
        assert!(!g.to_toml().expect("toml").contains("_base_"));

        let e = |text: &str, name: &str| {
            let f = write(name, text);
            Config::load(&f, &[]).expect_err(name).to_string()
        };
        let msg = e(
            "_base_ = [\"_base_/train.toml\", \"_base_/train.toml\"]\n",
            "twice.toml",
        );
        assert!(
            msg.contains("twice.toml") && msg.contains("set `train."),
            "{msg}"
        );
        write("loop_a.toml", "_base_ = \"loop_b.toml\"\n");
        let msg = e("_base_ = \"loop_a.toml\"\n", "loop_b.toml");
        assert!(msg.contains("cycle"), "{msg}");
        write("_base_/typo.toml", "[train]\nlrr = 1\n");
        let msg = e("_base_ = \"_base_/typo.toml\"\n", "uses_typo.toml");
        assert!(
            msg.contains("typo.toml") && msg.contains("train.lrr"),
            "{msg}"
        );
        let msg = e("_base_ = \"missing.toml\"\n", "uses_missing.toml");
        assert!(msg.contains("missing.toml"), "{msg}");
        let msg = e("_base_ = 3\n", "number.toml");
        assert!(msg.contains("_base_"), "{msg}");
    }

    #[test]
    fn typed_values_list_the_valid_ones() {
        let f = Path::new("x.toml");
        for (set, valid) in [
            ("model.detector=retinanet", "htc_lite"),
            ("model.loss=focal", "eqlv2"),
            ("model.bbox_head.loss_bbox=giou", "smooth_l1"),
            ("train.schedule=poly", "cosine"),
        ] {
            let e = Config::from_toml("", f, &[set.into()])
                .expect_err(set)
                .to_string();
            assert!(e.contains("x.toml") && e.contains(valid), "{set}: {e}");
        }
        let cfg = Config::from_toml(
            "[model]\nloss = \"eqlv2\"\n[model.losses.eqlv2]\ngamma = 6.0\n",
            f,
            &["model.losses.seesaw.p=0.5".into()],
        )
        .expect("loss settings");
        assert_eq!(cfg.model.losses.eqlv2.gamma, 6.0);
        assert_eq!(cfg.model.losses.eqlv2.mu, 0.8);
        assert_eq!(cfg.model.losses.seesaw.p, 0.5);
    }

    #[test]
    fn warmup_then_steps_and_cosine() {
        let t = TrainConfig {
            lr: 0.02,
            warmup_iters: 500,
            warmup_ratio: 1e-3,
            steps: vec![1000, 2000],
            ..Default::default()
        };
        assert!((t.lr_at(0) - 0.02 * 1e-3).abs() < 1e-12);
        assert!((t.lr_at(250) - 0.02 * (1.0 - 0.5 * 0.999)).abs() < 1e-12);
        assert_eq!(t.lr_at(500), 0.02);
        assert!((t.lr_at(1000) - 0.002).abs() < 1e-12);
        assert!((t.lr_at(2500) - 0.0002).abs() < 1e-12);
        let c = TrainConfig {
            schedule: Schedule::Cosine,
            warmup_iters: 0,
            iters: 100,
            ..t
        };
        assert!((c.lr_at(50) - 0.01).abs() < 1e-12);
        assert!(c.lr_at(100).abs() < 1e-12);
    }
}

#[cfg(test)]
mod shipped {
    use super::*;
    use seesaw_data::SamplerKind;
    use seesaw_model::backbones::{BackboneKind, DcnKind};
    use seesaw_model::layers::{ConvKind, NormConfig, NormKind};
    use seesaw_model::losses::LossKind;

    #[test]
    fn every_shipped_config_parses_and_names_its_recipe() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("configs/") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let cfg = Config::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let seesaw = name.contains("seesaw");
            let detector = if name.starts_with("cascade") {
                "cascade"
            } else if name.contains("htc_lite") {
                "htc_lite"
            } else if name.starts_with("htc") {
                "htc"
            } else {
                "mask_rcnn"
            };
            if name.starts_with("demo") {
                assert!(
                    cfg.model.backbone.init.is_empty(),
                    "the demo trains from scratch"
                );
            }
            assert_eq!(cfg.model.detector.name(), detector, "{name}");
            // The neck is in the name (`carafe_mask` alone is the mask head's upsampler).
            let neck = if name.contains("pafpn") {
                "pafpn"
            } else if name.contains("fpn_carafe") && !name.contains("carafe_mask") {
                "fpn_carafe"
            } else if name.contains("fpg") {
                "fpg"
            } else if name.contains("nasfpn") || name.contains("nas_fpn") {
                "nas_fpn"
            } else {
                "fpn"
            };
            assert_eq!(cfg.model.neck.kind.name(), neck, "{name}");
            assert_eq!(
                cfg.model.bbox_head.kind == seesaw_model::heads::BBoxHeadKind::Double,
                name.contains("double_head"),
                "{name}"
            );
            assert_eq!(
                cfg.model.bbox_head.kind == seesaw_model::heads::BBoxHeadKind::Tsd,
                name.contains("tsd"),
                "{name}"
            );
            assert_eq!(
                cfg.model.mask_iou_head.enabled,
                name.contains("mask_scoring"),
                "{name}"
            );
            assert_eq!(
                cfg.model.bbox_head.dual_cls,
                name.contains("dual_cls_finetune"),
                "{name}"
            );
            assert_eq!(
                cfg.model.num_stages().expect("stages"),
                if detector == "mask_rcnn" { 1 } else { 3 },
                "{name}"
            );
            assert_eq!(cfg.model.loss == LossKind::Seesaw, seesaw, "{name}");
            assert_eq!(cfg.model.bbox_head.normed_classifier, seesaw, "{name}");
            if name.contains("lvis") {
                assert_eq!(cfg.model.num_classes, 1203, "{name}");
                assert_eq!(cfg.model.roi.test.max_per_img, 300, "{name}");
                // The backbone is named as mmdetection's configs name it: r50, r101,
                // x101_32x4d, s101, s200, with `dcnv2` for DCNv2 in stages c3-c5.
                let bb = &cfg.model.backbone;
                let (kind, depth) = [
                    ("r50", BackboneKind::Resnet, 50),
                    ("r101", BackboneKind::Resnet, 101),
                    ("x101_32x4d", BackboneKind::Resnext, 101),
                    ("x101_64x4d", BackboneKind::Resnext, 101),
                    ("s101", BackboneKind::Resnest, 101),
                    ("s200", BackboneKind::Resnest, 200),
                ]
                .into_iter()
                .find(|(tag, ..)| name.contains(&format!("_{tag}_")))
                .map(|(_, k, d)| (k, d))
                .unwrap_or_else(|| panic!("{name}: no backbone in the name"));
                assert_eq!((bb.kind, bb.depth), (kind, depth), "{name}");
                if name.contains("x101_") {
                    let groups = if name.contains("64x4d") { 64 } else { 32 };
                    assert_eq!((bb.groups, bb.base_width), (groups, 4), "{name}");
                }
                assert_eq!(
                    bb.dcn.kind == DcnKind::Dcnv2,
                    name.contains("dcnv2"),
                    "{name}"
                );
                // gn_ws_all: GN + ConvWS in backbone, neck and both heads (Shared4Conv1FC).
                let m = &cfg.model;
                let gn_ws =
                    |n: &NormConfig, c: ConvKind| n.kind == NormKind::Gn && c == ConvKind::Ws;
                assert_eq!(
                    [
                        gn_ws(&bb.norm, bb.conv),
                        gn_ws(&m.neck.norm, m.neck.conv),
                        gn_ws(&m.bbox_head.norm, m.bbox_head.conv)
                            && m.bbox_head.num_shared_convs == 4
                            && m.bbox_head.num_shared_fcs == 1,
                        gn_ws(&m.mask_head.norm, m.mask_head.conv),
                    ],
                    [name.contains("gn_ws_all"); 4],
                    "{name}"
                );
                assert_eq!(
                    cfg.data.sampler,
                    // detectron2's LVIS baselines train with repeat factor sampling.
                    if name.contains("rfs")
                        || name.contains("dual_cls")
                        || name.contains("detectron2")
                    {
                        SamplerKind::Rfs
                    } else {
                        SamplerKind::Random
                    }
                );
                assert_eq!(cfg.model.mask_head.normed, name.contains("normed_mask"));
                // ImageNet initialisation, as mmdetection's torchvision://resnetXX and
                // open-mmlab://resnext101_32x4d, resnest101, ...
                let prefix = match bb.kind {
                    BackboneKind::Resnext => {
                        format!("resnext{}_{}x4d-", bb.depth, bb.groups)
                    }
                    BackboneKind::Resnest => format!("resnest{}_d2-", bb.depth),
                    // open-mmlab://jhu/resnet50_gn_ws
                    _ if name.contains("gn_ws") => format!("resnet{}_gn_ws-", bb.depth),
                    _ => format!("resnet{}-", bb.depth),
                };
                if name.contains("detectron2") {
                    // A converted model: the whole detector comes from the file, and its
                    // ResNet has the stride in the 1x1.
                    assert!(bb.init.is_empty(), "{name}");
                    assert_eq!(bb.style, seesaw_model::backbones::ResNetStyle::Caffe);
                } else {
                    assert!(
                        bb.init.starts_with(&format!("checkpoints/{prefix}")),
                        "{name}: {}",
                        bb.init
                    );
                }
                assert_eq!((cfg.train.lr, cfg.train.warmup_iters), (0.02, 500));
            }
            seen += 1;
        }
        assert!(seen >= 42, "{seen} configs");
    }
}
