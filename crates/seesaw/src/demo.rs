//! `seesaw demo`: the main job on built-in data, with no download.
//!
//! It makes the long-tailed dataset, prints its statistics, plots its long tail and draws a few
//! validation images with their instances; then trains the small Mask R-CNN twice with the same
//! seed, data order and budget (cross-entropy, then Seesaw Loss + NormedLinear), evaluates both
//! on the validation split and prints one table of box and mask AP, APr, APc, APf. It prints
//! only what it computed. `--detector` picks other RoI heads (cascade, htc, htc_lite; several
//! compare them), `--loss` the losses each is trained with and `--backbone` the demo-sized
//! backbone (the basic-block ResNet, a ResNeXt, a ResNeSt, or the ResNet with DCNv2).

use std::path::{Path, PathBuf};

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Instant;

use anyhow::{Result, anyhow};
use clap::{Args, ValueEnum};
use seesaw_data::{DatasetStats, Frequency};
use seesaw_engine::Config;
use seesaw_engine::data::Split;
use seesaw_engine::device::DeviceSpec;
use seesaw_engine::predict::{evaluate, predict_split};
use seesaw_engine::train::{TrainOptions, load_for_inference_on, train};
use seesaw_eval::Evaluation;
use seesaw_model::detectors::DetectorKind;
use seesaw_model::losses::LossKind;

use crate::data_cmd::{self, SynthArgs};
use crate::viz;

#[derive(Args)]
pub struct DemoArgs {
    /// Where everything is written.
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// Random seed of the dataset.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Training iterations per loss (default 500; 40 with --quick).
    #[arg(long)]
    pub iters: Option<usize>,
    /// A smaller dataset (200 training images) and a short schedule: a smoke test.
    #[arg(long)]
    pub quick: bool,
    /// RoI heads: mask_rcnn, cascade, htc or htc_lite; several (comma-separated) are trained
    /// one after another with the same seed, data and budget.
    #[arg(long, value_delimiter = ',', default_value = "mask_rcnn")]
    pub detector: Vec<String>,
    /// Classification losses each detector is trained with (ce, bce, eql, eqlv2, federated,
    /// seesaw; Seesaw with NormedLinear, the rest with a linear classifier).
    #[arg(long, value_delimiter = ',', default_value = "ce,seesaw")]
    pub loss: Vec<String>,
    /// The demo-sized backbone every run uses: resnet (the demo's own, configs/
    /// demo_mask_rcnn_seesaw.toml), or resnext, resnest, dcnv2
    /// (configs/demo_mask_rcnn_seesaw_<name>.toml).
    #[arg(long, value_enum, ignore_case = true, default_value_t = DemoBackbone::Resnet)]
    pub backbone: DemoBackbone,
    /// The neck every run uses: fpn (the demo's own), or pafpn, fpn_carafe, fpg, nas_fpn
    /// (configs/demo_mask_rcnn_seesaw_<name>.toml).
    #[arg(long, value_enum, ignore_case = true, default_value_t = DemoNeck::Fpn)]
    pub neck: DemoNeck,
    /// The RoI head variant every run uses: conv_fc (the demo's Shared2FC), double
    /// (Double-Head R-CNN) or mask_scoring (Mask Scoring R-CNN)
    /// (configs/demo_mask_rcnn_seesaw_{double_head,mask_scoring}.toml).
    #[arg(long, value_enum, ignore_case = true, default_value_t = DemoHead::ConvFc)]
    pub head: DemoHead,
    /// cpu (default); cuda or cuda:N (a build with `--features cuda`); wgpu, wgpu:N,
    /// wgpu:integrated[:N] or wgpu:cpu (`--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// The demo's backbones: each keeps the demo network's output widths (32 to 256) and strides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoBackbone {
    /// One basic block per stage, widths 32 to 256, the small stem.
    Resnet,
    /// One bottleneck per stage with 3x3 convs in 4 groups (base_width 4).
    Resnext,
    /// One split-attention bottleneck per stage (radix 2), deep stem, average-pool shortcuts.
    Resnest,
    /// The ResNet with DCNv2 in stages c3-c5.
    Dcnv2,
}

impl DemoBackbone {
    /// Config overrides onto the demo's recipe; `configs/demo_mask_rcnn_seesaw_<name>.toml`
    /// holds the same keys.
    pub fn overrides(self) -> Vec<String> {
        let keys: &[&str] = match self {
            DemoBackbone::Resnet => &[],
            DemoBackbone::Resnext => &[
                "type=\"resnext\"",
                "block=\"bottleneck\"",
                "base_channels=8",
                "stem_channels=32",
                "groups=4",
                "base_width=4",
            ],
            DemoBackbone::Resnest => &[
                "type=\"resnest\"",
                "stem=\"deep\"",
                "block=\"bottleneck\"",
                "base_channels=8",
                "stem_channels=32",
            ],
            DemoBackbone::Dcnv2 => &["dcn.type=\"dcnv2\""],
        };
        keys.iter().map(|k| format!("model.backbone.{k}")).collect()
    }

    fn name(self) -> &'static str {
        match self {
            DemoBackbone::Resnet => "resnet",
            DemoBackbone::Resnext => "resnext",
            DemoBackbone::Resnest => "resnest",
            DemoBackbone::Dcnv2 => "dcnv2",
        }
    }
}

/// The demo's necks: each keeps the demo's 64 channels and reads the same backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoNeck {
    /// FPN, 4 levels (P2-P5).
    Fpn,
    /// PAFPN: the FPN plus its bottom-up path.
    Pafpn,
    /// FPN_CARAFE: CARAFE in the top-down path.
    #[value(name = "fpn_carafe")]
    FpnCarafe,
    /// FPG: the recipe's 9 bottom-up pathways with BN, 4 levels.
    Fpg,
    /// NAS-FPN: 7 stages over P3-P7 (stride 8 to 128, images padded to 128), anchors from
    /// 16 px as the demo's.
    #[value(name = "nas_fpn")]
    NasFpn,
}

impl DemoNeck {
    /// Config overrides onto the demo's recipe; `configs/demo_mask_rcnn_seesaw_<name>.toml`
    /// holds the same keys.
    pub fn overrides(self) -> Vec<String> {
        let keys: &[&str] = match self {
            DemoNeck::Fpn => &[],
            DemoNeck::Pafpn => &["model.neck.type=\"pafpn\""],
            DemoNeck::FpnCarafe => &["model.neck.type=\"fpn_carafe\""],
            DemoNeck::Fpg => &["model.neck.type=\"fpg\"", "model.neck.norm.type=\"bn\""],
            DemoNeck::NasFpn => &[
                "model.neck.type=\"nas_fpn\"",
                "model.neck.start_level=1",
                "model.neck.num_outs=5",
                "model.neck.norm.type=\"bn\"",
                "model.rpn.anchor_strides=[8.0, 16.0, 32.0, 64.0, 128.0]",
                "model.rpn.anchor_scales=[2.0]",
                "model.roi.strides=[8.0, 16.0, 32.0, 64.0]",
                "data.size_divisor=128",
            ],
        };
        keys.iter().map(|k| k.to_string()).collect()
    }

    fn name(self) -> &'static str {
        match self {
            DemoNeck::Fpn => "fpn",
            DemoNeck::Pafpn => "pafpn",
            DemoNeck::FpnCarafe => "fpn_carafe",
            DemoNeck::Fpg => "fpg",
            DemoNeck::NasFpn => "nas_fpn",
        }
    }
}

/// The demo's box heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoHead {
    /// Shared2FC (the demo's own).
    #[value(name = "conv_fc")]
    ConvFc,
    /// Double-Head R-CNN: fully connected layers classify, a conv branch on 1.3x RoIs
    /// regresses.
    Double,
    /// Mask Scoring R-CNN: the demo's box head with a MaskIoU head rescoring the masks.
    #[value(name = "mask_scoring")]
    MaskScoring,
    /// TSD: deformably pooled classification and translated regression branches beside the
    /// demo's head (the sibling), with the progressive constraint.
    Tsd,
}

impl DemoHead {
    /// Config overrides onto the demo's recipe; `configs/demo_mask_rcnn_seesaw_<name>.toml`
    /// holds the same keys.
    pub fn overrides(self) -> Vec<String> {
        if self == DemoHead::MaskScoring {
            return [
                "enabled=true",
                "conv_out_channels=64",
                "fc_out_channels=256",
            ]
            .iter()
            .map(|k| format!("model.mask_iou_head.{k}"))
            .collect();
        }
        let keys: &[&str] = match self {
            DemoHead::ConvFc | DemoHead::MaskScoring => &[],
            DemoHead::Tsd => &[
                "type=\"tsd\"",
                "offset_channels=256",
                "loss_bbox=\"smooth_l1\"",
            ],
            DemoHead::Double => &[
                "type=\"double\"",
                "num_convs=2",
                "conv_out_channels=128",
                "reg_roi_scale_factor=1.3",
                "loss_bbox=\"smooth_l1\"",
                "loss_cls_weight=2.0",
                "loss_bbox_weight=2.0",
            ],
        };
        keys.iter()
            .map(|k| format!("model.bbox_head.{k}"))
            .collect()
    }

    fn name(self) -> &'static str {
        match self {
            DemoHead::ConvFc => "conv_fc",
            DemoHead::Double => "double_head",
            DemoHead::MaskScoring => "mask_scoring",
            DemoHead::Tsd => "tsd",
        }
    }
}

impl DemoArgs {
    fn iters(&self) -> usize {
        self.iters.unwrap_or(if self.quick { 40 } else { 500 })
    }
}

pub(crate) const CE_CONFIG: &str = include_str!("../../../configs/demo_mask_rcnn_ce.toml");
const SEESAW_CONFIG: &str = include_str!("../../../configs/demo_mask_rcnn_seesaw.toml");

/// Number of validation images drawn into `samples/`.
const SAMPLES: usize = 4;

pub fn run(a: &DemoArgs) -> Result<()> {
    let data_dir = a.out.join("data");
    let synth = SynthArgs {
        out: data_dir.clone(),
        classes: 40,
        train_images: if a.quick { 200 } else { 1000 },
        val_images: None,
        size: 128,
        seed: a.seed,
    };
    println!("== 1. the built-in long-tailed dataset ==");
    let out = data_cmd::synth(&synth)?;
    let train_stats = DatasetStats::of(&out.train);
    let val_stats = DatasetStats::of(&out.val);
    data_cmd::print_stats(&out.train_json, &train_stats);
    data_cmd::print_stats(&out.val_json, &val_stats);

    println!("== 2. pictures ==");
    let plot = a.out.join("train_classes.png");
    viz::plot_class_histogram(
        &train_stats,
        "built-in dataset, train: images per class",
        &plot,
    )?;
    println!("wrote {}", plot.display());

    // Samples: the validation images with the most instances of rare classes, then the busiest.
    let rare: std::collections::HashSet<u64> = out
        .val
        .categories
        .iter()
        .filter(|c| c.frequency == Some(Frequency::Rare))
        .map(|c| c.id)
        .collect();
    let mut ranked: Vec<(usize, usize, u64)> = out
        .val
        .images
        .iter()
        .zip(out.val.annotations_per_image())
        .map(|(im, anns)| {
            let n_rare = anns
                .iter()
                .filter(|&&k| rare.contains(&out.val.annotations[k].category_id))
                .count();
            (n_rare, anns.len(), im.id)
        })
        .collect();
    ranked.sort_by(|x, y| (y.0, y.1).cmp(&(x.0, x.1)).then(x.2.cmp(&y.2)));
    let samples = a.out.join("samples");
    std::fs::create_dir_all(&samples)?;
    for &(_, _, id) in ranked.iter().take(SAMPLES) {
        let file = samples.join(format!("val_{id:06}.png"));
        viz::draw_annotated(&out.val, &out.val_json, id, &data_dir, &file)?;
        println!("wrote {}", file.display());
    }

    let plan = demo_runs(&a.detector, &a.loss, (a.backbone, a.neck, a.head))?;
    println!(
        "== 3. {} on the demo's {} + {} + {}: {} ({iters} iterations each, same seed and \
         data order) ==",
        a.detector.join(", "),
        a.backbone.name(),
        a.neck.name(),
        a.head.name(),
        a.loss.join(" against "),
        iters = a.iters()
    );
    let tty = std::io::stderr().is_terminal();
    let val = Split::new(out.val.clone(), &out.val_json, &data_dir);
    let mut runs = Vec::new();
    let device = a.device.open()?;
    for (name, mut cfg) in plan {
        cfg.data.train_json = out.train_json.clone();
        cfg.data.val_json = out.val_json.clone();
        cfg.data.train_images = data_dir.clone();
        cfg.data.val_images = data_dir.clone();
        cfg.train.iters = a.iters();
        cfg.train.seed = a.seed;
        let work_dir = a.out.join("work").join(&name);
        let t0 = Instant::now();
        let trained = train(
            &cfg,
            &TrainOptions {
                work_dir: work_dir.clone(),
                resume: false,
                progress: tty,
                stop_at: None,
                device: a.device,
            },
        )?;
        let train_secs = t0.elapsed().as_secs_f64();
        let loaded = load_for_inference_on(&trained.checkpoint, Some(&cfg), &device)?;
        let t1 = Instant::now();
        let dets = predict_split(&loaded.model, &val, &cfg, tty)?;
        let test_secs = t1.elapsed().as_secs_f64();
        let results = work_dir.join("results.json");
        seesaw_data::save_results(&results, &dets)?;
        let (bbox, segm) = evaluate(&val.dataset, dets.clone(), true)?;
        let segm = segm.ok_or_else(|| anyhow!("mask evaluation missing"))?;
        println!(
            "{name}: trained in {train_secs:.0} s ({:.2} it/s), tested {} images in {test_secs:.1} s; box AP {}, mask AP {}",
            trained.iters_per_sec,
            val.dataset.images.len(),
            ap_cell(bbox.stat("AP")),
            ap_cell(segm.stat("AP")),
        );
        runs.push(Run {
            name,
            detector: cfg.model.detector.name().to_string(),
            loss: cfg.model.loss.name().to_string(),
            bbox,
            segm,
            dets,
            train_secs,
            iters_per_sec: trained.iters_per_sec,
            test_images_per_sec: val.dataset.images.len() as f64 / test_secs.max(1e-9),
        });
    }

    println!("== 4. results (AP x 100 on the validation split) ==");
    let width = runs.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<width$} | {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} {:>6} | {:>5}",
        "run", "boxAP", "APr", "APc", "APf", "mskAP", "APr", "APc", "APf", "it/s"
    );
    let mut undefined = false;
    for r in &runs {
        let cells: Vec<String> = [&r.bbox, &r.segm]
            .iter()
            .flat_map(|e| ["AP", "APr", "APc", "APf"].map(|k| ap_cell(e.stat(k))))
            .collect();
        undefined |= cells.iter().any(|c| c == "-");
        println!(
            "{:<width$} | {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} {:>6} | {:>5.2}",
            r.name,
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            cells[7],
            r.iters_per_sec,
        );
    }
    if undefined {
        println!(
            "-: undefined, no class of that frequency group has ground truth in the validation \
             split (lvis-api reports -1; summary.json keeps it)"
        );
    }
    let summary = serde_json::json!({
        "iters": a.iters(),
        "seed": a.seed,
        "runs": runs.iter().map(|r| serde_json::json!({
            "run": r.name,
            "detector": r.detector,
            "loss": r.loss,
            "bbox": r.bbox.to_json()["stats"],
            "segm": r.segm.to_json()["stats"],
            "train_seconds": r.train_secs,
            "train_iters_per_sec": r.iters_per_sec,
            "test_images_per_sec": r.test_images_per_sec,
        })).collect::<Vec<_>>(),
    });
    let summary_file = a.out.join("summary.json");
    seesaw_data::io::write_json(&summary_file, &summary)?;
    println!("wrote {}", summary_file.display());
    for (iou, pick) in [("bbox", 0), ("segm", 1)] {
        let evs: Vec<(&str, &Evaluation)> = runs
            .iter()
            .map(|r| (r.name.as_str(), if pick == 0 { &r.bbox } else { &r.segm }))
            .collect();
        let plot = a.out.join(format!("ap_vs_frequency_{iou}.png"));
        let markers = [
            "circles",
            "triangles",
            "crosses",
            "larger crosses",
            "largest crosses",
        ];
        let legend: Vec<String> = runs
            .iter()
            .zip(markers.iter().chain(std::iter::repeat(&"crosses")))
            .map(|(r, m)| format!("{} ({m})", r.name))
            .collect();
        viz::plot_ap_vs_frequency(
            &evs,
            &out.train,
            &format!("{iou} AP per class: {}", legend.join(" vs ")),
            &plot,
        )?;
        println!("wrote {}", plot.display());
    }
    let pred_dir = a.out.join("predictions");
    std::fs::create_dir_all(&pred_dir)?;
    let names: HashMap<u64, String> = out
        .val
        .categories
        .iter()
        .map(|c| (c.id, c.name.clone()))
        .collect();
    for &(_, _, id) in ranked.iter().take(SAMPLES) {
        let Some(im) = out.val.images.iter().find(|im| im.id == id) else {
            continue;
        };
        let path = data_dir.join(im.relative_path().unwrap_or_default());
        for r in &runs {
            let shown: Vec<_> = r
                .dets
                .iter()
                .filter(|d| d.image_id == id && d.score >= 0.3)
                .cloned()
                .collect();
            let file = pred_dir.join(format!("{}_val_{id:06}.png", r.name));
            viz::draw_detections(&path, &shown, &names, &file)?;
        }
    }
    println!(
        "wrote predictions of every run on {SAMPLES} validation images into {}",
        pred_dir.display()
    );
    Ok(())
}

struct Run {
    name: String,
    detector: String,
    loss: String,
    bbox: Evaluation,
    segm: Evaluation,
    dets: Vec<seesaw_data::Detection>,
    train_secs: f64,
    iters_per_sec: f64,
    test_images_per_sec: f64,
}

/// The demo configs of every (detector, loss) pair, named `loss` when one detector is asked
/// for and `detector-loss` otherwise. The cascade kinds take the Mask R-CNN demo recipe with
/// the settings of mmdetection's cascade configs ([`cascade_overrides`]).
pub fn demo_runs(
    detectors: &[String],
    losses: &[String],
    (backbone, neck, head): (DemoBackbone, DemoNeck, DemoHead),
) -> Result<Vec<(String, Config)>> {
    let mut plan = Vec::new();
    for d in detectors {
        let kind: DetectorKind = d.parse()?;
        for l in losses {
            let kind_l: LossKind = l.parse()?;
            let (text, file) = if kind_l == LossKind::Seesaw {
                (SEESAW_CONFIG, "configs/demo_mask_rcnn_seesaw.toml")
            } else {
                (CE_CONFIG, "configs/demo_mask_rcnn_ce.toml")
            };
            let mut sets = vec![
                format!("model.loss=\"{}\"", kind_l.name()),
                format!("model.detector=\"{}\"", kind.name()),
            ];
            if kind.is_cascade() {
                sets.extend(cascade_overrides());
            }
            sets.extend(backbone.overrides());
            sets.extend(neck.overrides());
            sets.extend(head.overrides());
            let cfg = Config::from_toml(text, Path::new(file), &sets)?;
            let name = if detectors.len() == 1 {
                kind_l.name().to_string()
            } else if losses.len() == 1 {
                kind.name().to_string()
            } else {
                format!("{}-{}", kind.name(), kind_l.name())
            };
            plan.push((name, cfg));
        }
    }
    if plan.is_empty() {
        return Err(anyhow!("--detector and --loss must name at least one each"));
    }
    Ok(plan)
}

/// What the cascade kinds change in a Mask R-CNN recipe: class-agnostic regression with
/// smooth L1 (each stage's stds and IoU come with the `cascade` defaults).
pub fn cascade_overrides() -> Vec<String> {
    vec![
        "model.bbox_head.class_agnostic=true".into(),
        "model.bbox_head.loss_bbox=\"smooth_l1\"".into(),
    ]
}

/// An AP (0-1) as the demo's table prints it, x 100 with one decimal; `-` where the evaluator
/// reports none or lvis-api's -1 (a frequency group without ground truth in the split).
fn ap_cell(stat: Option<f64>) -> String {
    match stat {
        Some(v) if v >= 0.0 => format!("{:.1}", 100.0 * v),
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_frequency_group_prints_a_dash_not_minus_100() {
        assert_eq!(ap_cell(Some(-1.0)), "-");
        assert_eq!(ap_cell(None), "-");
        assert_eq!(ap_cell(Some(0.0)), "0.0");
        assert_eq!(ap_cell(Some(0.17849)), "17.8");
    }

    #[test]
    fn demo_runs_name_and_configure_each_pair() {
        let ds = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let plan = demo_runs(
            &ds(&["mask_rcnn"]),
            &ds(&["ce", "seesaw"]),
            (DemoBackbone::Resnet, DemoNeck::Fpn, DemoHead::ConvFc),
        )
        .expect("plan");
        let names: Vec<&str> = plan.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(names, ["ce", "seesaw"]);
        assert!(!plan[0].1.model.bbox_head.normed_classifier);
        assert!(plan[1].1.model.bbox_head.normed_classifier);

        let plan = demo_runs(
            &ds(&["mask_rcnn", "htc-lite"]),
            &ds(&["seesaw"]),
            (DemoBackbone::Resnet, DemoNeck::Fpn, DemoHead::ConvFc),
        )
        .expect("plan");
        let names: Vec<&str> = plan.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(names, ["mask_rcnn", "htc_lite"]);
        // The shipped HTC-Lite demo config is exactly what the demo trains.
        let file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/demo_htc_lite_seesaw.toml");
        let shipped = Config::load(&file, &[]).expect("shipped");
        assert_eq!(plan[1].1.model, shipped.model);
        assert_eq!(plan[1].1.train, shipped.train);

        let plan = demo_runs(
            &ds(&["cascade", "htc"]),
            &ds(&["ce", "seesaw"]),
            (DemoBackbone::Resnet, DemoNeck::Fpn, DemoHead::ConvFc),
        )
        .expect("plan");
        assert_eq!(plan.len(), 4);
        assert_eq!(plan[3].0, "htc-seesaw");
        assert!(plan.iter().all(|p| p.1.model.bbox_head.class_agnostic));
        assert!(
            demo_runs(
                &ds(&["retinanet"]),
                &ds(&["ce"]),
                (DemoBackbone::Resnet, DemoNeck::Fpn, DemoHead::ConvFc)
            )
            .is_err()
        );
        assert!(
            demo_runs(
                &ds(&["cascade"]),
                &ds(&["focal"]),
                (DemoBackbone::Resnet, DemoNeck::Fpn, DemoHead::ConvFc)
            )
            .is_err()
        );
    }

    #[test]
    fn each_demo_backbone_is_its_shipped_config_and_builds() {
        let ds = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let device = seesaw_model::burn::tensor::Device::flex();
        for b in [
            DemoBackbone::Resnext,
            DemoBackbone::Resnest,
            DemoBackbone::Dcnv2,
        ] {
            let plan = demo_runs(
                &ds(&["mask_rcnn"]),
                &ds(&["seesaw"]),
                (b, DemoNeck::Fpn, DemoHead::ConvFc),
            )
            .expect("plan");
            let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
                "../../configs/demo_mask_rcnn_seesaw_{}.toml",
                b.name()
            ));
            let shipped = Config::load(&file, &[]).expect("shipped");
            assert_eq!(plan[0].1.model, shipped.model, "{}", b.name());
            let bb = &shipped.model.backbone;
            // Same output widths as the demo's ResNet, so the neck and heads are unchanged.
            assert_eq!(bb.out_channels().expect("resolves"), [32, 64, 128, 256]);
            shipped.model.init(&device).expect("builds");
        }
    }

    #[test]
    fn each_demo_neck_is_its_shipped_config_and_builds() {
        let ds = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let device = seesaw_model::burn::tensor::Device::flex();
        for n in [
            DemoNeck::Pafpn,
            DemoNeck::FpnCarafe,
            DemoNeck::Fpg,
            DemoNeck::NasFpn,
        ] {
            let plan = demo_runs(
                &ds(&["mask_rcnn"]),
                &ds(&["seesaw"]),
                (DemoBackbone::Resnet, n, DemoHead::ConvFc),
            )
            .expect("plan");
            let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
                "../../configs/demo_mask_rcnn_seesaw_{}.toml",
                n.name()
            ));
            let shipped = Config::load(&file, &[]).expect("shipped");
            assert_eq!(plan[0].1.model, shipped.model, "{}", n.name());
            assert_eq!(plan[0].1.data.size_divisor, shipped.data.size_divisor);
            assert_eq!(shipped.model.neck.kind.name(), n.name());
            shipped.model.init(&device).expect("builds");
        }
    }

    #[test]
    fn each_demo_head_is_its_shipped_config_and_builds() {
        let ds = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let device = seesaw_model::burn::tensor::Device::flex();
        for h in [DemoHead::Double, DemoHead::MaskScoring, DemoHead::Tsd] {
            let parts = (DemoBackbone::Resnet, DemoNeck::Fpn, h);
            let plan = demo_runs(&ds(&["mask_rcnn"]), &ds(&["seesaw"]), parts).expect("plan");
            let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
                "../../configs/demo_mask_rcnn_seesaw_{}.toml",
                h.name()
            ));
            let shipped = Config::load(&file, &[]).expect("shipped");
            assert_eq!(plan[0].1.model, shipped.model, "{}", h.name());
            shipped.model.init(&device).expect("builds");
        }
    }
}
