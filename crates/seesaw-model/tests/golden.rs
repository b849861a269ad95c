//! Golden tests of the whole detector (as detectron2's `tests/modeling/test_roi_heads.py`):
//! for each RoI-head kind, fixed weights and a fixed input give stored proposals, detections
//! (boxes, scores, labels), mask probabilities and training losses, so that a refactor that
//! drifts fails.
//!
//! The weights are a function of each tensor's mmdetection name (not of the order parameters
//! are drawn in, nor of our module paths), so the stored values survive a reorganisation of
//! the modules. The stored values are `tests/fixtures/golden/<kind>.json`; they are written by
//! this test itself when `SEESAW_BLESS_GOLDEN=1` (only after a change that is meant to move
//! them, with the reason in the commit message).

mod common;

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use common::tiny;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seesaw_model::burn;
use seesaw_model::detectors::{DetectorConfig, DetectorKind};
use seesaw_model::structures::{GtInstances, GtMask, ImageMeta};
use seesaw_model::weights::{Layout, Naming, WeightsFile, export, load, write_safetensors};
use serde_json::{Value, json};

const H: usize = 64;
const W: usize = 96;

fn fixture(kind: DetectorKind) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(format!("{}.json", kind.name()))
}

/// FNV-1a of a tensor's name: the seed of its values.
fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The tiny detector of `kind` with every tensor set from its mmdetection name.
fn golden_config(kind: DetectorKind) -> DetectorConfig {
    let mut cfg = tiny("seesaw");
    cfg.detector = kind;
    cfg.roi.test.max_per_img = 40;
    cfg
}

fn golden_model(cfg: &DetectorConfig, device: &Device) -> seesaw_model::detectors::Detector {
    use rand::Rng;
    let mut model = cfg.init(device).expect("model");
    let naming = Naming::detector(Layout::Mmdet, &model);
    let tensors = export(&model, &naming).expect("export");
    let mut fixed = Vec::new();
    for (name, t) in tensors {
        let shape = t.shape.to_vec();
        let n: usize = shape.iter().product();
        let fan_in = if shape.len() > 1 {
            shape[1..].iter().product::<usize>().max(1)
        } else {
            1
        };
        let mut rng = ChaCha8Rng::seed_from_u64(name_seed(&name));
        let u = |rng: &mut ChaCha8Rng| rng.random::<f32>() * 2.0 - 1.0;
        let values: Vec<f32> = (0..n)
            .map(|_| {
                if name.ends_with("running_var") {
                    1.0 + 0.2 * u(&mut rng).abs()
                } else if name.ends_with("running_mean") || name.ends_with(".bias") {
                    0.05 * u(&mut rng)
                } else if shape.len() == 1 {
                    // Norm weights.
                    1.0 + 0.1 * u(&mut rng)
                } else {
                    u(&mut rng) * (3.0 / fan_in as f32).sqrt()
                }
            })
            .collect();
        let data = TensorData::new(values, shape);
        fixed.push((
            name.clone(),
            burn::store::bridge::from_data(data, name, None),
        ));
    }
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("golden.safetensors");
    write_safetensors(&file, fixed, Default::default()).expect("write");
    let weights = WeightsFile::open(&file).expect("open");
    load(&mut model, &weights, &naming, false).expect("load");
    model
}

/// A fixed image pair: smooth patterns with two bright rectangles.
fn golden_input(device: &Device) -> (Tensor<4>, Vec<ImageMeta>, Vec<GtInstances>) {
    let mut v = Vec::with_capacity(2 * 3 * H * W);
    for b in 0..2 {
        for c in 0..3 {
            for y in 0..H {
                for x in 0..W {
                    let mut p = ((x as f32 * 0.21 + c as f32).sin()
                        + (y as f32 * 0.13 + b as f32 * 0.7).cos())
                        * 0.5;
                    let (bx0, by0) = (10 + 30 * b, 12);
                    if (bx0..bx0 + 30).contains(&x) && (by0..by0 + 36).contains(&y) {
                        p += 1.5;
                    }
                    if (60..88).contains(&x) && (40..60).contains(&y) {
                        p -= 1.0 + 0.3 * c as f32;
                    }
                    v.push(p);
                }
            }
        }
    }
    let images = Tensor::<4>::from_data(TensorData::new(v, [2, 3, H, W]), device);
    let metas: Vec<ImageMeta> = (0..2)
        .map(|i| ImageMeta {
            image_id: i,
            ori_shape: (H as u32, W as u32),
            img_shape: (H, W),
            scale: (1.0, 1.0),
            flip: false,
        })
        .collect();
    let gts = (0..2)
        .map(|b| {
            let boxes = vec![
                [10.0 + 30.0 * b as f32, 12.0, 40.0 + 30.0 * b as f32, 48.0],
                [60.0, 40.0, 88.0, 60.0],
            ];
            GtInstances {
                masks: boxes
                    .iter()
                    .map(|&bx| GtMask::filled_box(H, W, bx))
                    .collect(),
                boxes,
                labels: vec![1 + b, 4],
                ignore: vec![],
            }
        })
        .collect();
    (images, metas, gts)
}

fn round(x: f32) -> f64 {
    f64::from(x)
}

/// Everything the golden file stores, computed now.
fn compute(kind: DetectorKind) -> Value {
    let cfg = golden_config(kind);
    let device = Device::flex().autodiff();
    let model = golden_model(&cfg, &device);
    let (images, metas, gts) = golden_input(&device);

    // Training losses of one step.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut model_train = model;
    let parts = model_train
        .forward_train(
            images.clone(),
            &metas,
            &gts,
            &mut seesaw_model::structures::image_rngs(&mut rng, metas.len()),
        )
        .expect("forward_train");
    let losses: Vec<f64> = parts
        .to_vec()
        .into_iter()
        .map(|t| {
            t.into_data()
                .convert::<f64>()
                .try_to_vec::<f64>()
                .expect("loss")[0]
        })
        .collect();

    // Inference.
    let plain = model_train.valid();
    let flex = Device::flex();
    let images = Tensor::<4>::from_data(images.to_data(), &flex);
    let feats = plain.features(images.clone());
    let proposals = plain.proposals(&feats, &metas).expect("proposals");
    let dets = plain.predict(images, &metas).expect("predict");
    let props: Vec<Value> = proposals
        .iter()
        .map(|p| {
            json!(
                p.iter()
                    .take(20)
                    .map(|(b, s)| json!([b.map(round), round(*s)]))
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    let dets: Vec<Value> = dets
        .iter()
        .map(|d| {
            json!({
                "count": d.boxes.len(),
                "boxes": d.boxes.iter().take(20).map(|b| b.map(round)).collect::<Vec<_>>(),
                "scores": d.scores.iter().take(20).map(|&s| round(s)).collect::<Vec<_>>(),
                "labels": d.labels.iter().take(20).collect::<Vec<_>>(),
                "mask_sums": d.masks.iter().take(20)
                    .map(|m| m.iter().map(|&v| f64::from(v)).sum::<f64>())
                    .collect::<Vec<_>>(),
                "mask_size": d.mask_size,
            })
        })
        .collect();
    json!({
        "detector": kind.name(),
        "losses": losses,
        "proposals": props,
        "detections": dets,
    })
}

/// Compares numbers at a relative tolerance, everything else exactly.
fn assert_close(got: &Value, want: &Value, path: &str) {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) if w.is_f64() || g.is_f64() => {
            let (g, w) = (
                g.as_f64().unwrap_or(f64::NAN),
                w.as_f64().unwrap_or(f64::NAN),
            );
            let tol = 1e-4 * w.abs().max(1e-2);
            assert!((g - w).abs() <= tol, "{path}: got {g}, stored {w}");
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{path}: length");
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                assert_close(a, b, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(g), Value::Object(w)) => {
            assert_eq!(
                g.keys().collect::<Vec<_>>(),
                w.keys().collect::<Vec<_>>(),
                "{path}: keys"
            );
            for (k, b) in w {
                assert_close(&g[k], b, &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{path}"),
    }
}

#[test]
fn every_roi_head_kind_reproduces_its_stored_outputs() {
    let bless = std::env::var("SEESAW_BLESS_GOLDEN").is_ok_and(|v| v == "1");
    for kind in DetectorKind::ALL {
        let got = compute(kind);
        let file = fixture(kind);
        if bless {
            std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
            let text = serde_json::to_string_pretty(&got).expect("json");
            std::fs::write(&file, text + "\n").expect("write");
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!("{}: {e} (SEESAW_BLESS_GOLDEN=1 writes it)", file.display())
        });
        let want: Value = serde_json::from_str(&text).expect("golden json");
        assert_close(&got, &want, kind.name());
        // The stored case is not degenerate: it has proposals, detections with masks, and
        // every loss part but the context head's (zero outside htc_lite) is positive.
        let dets = &want["detections"][0];
        assert!(dets["count"].as_u64().unwrap_or(0) > 0, "{}", kind.name());
        assert_eq!(dets["mask_size"], 28);
        let losses = want["losses"].as_array().expect("losses");
        assert!(losses[..5].iter().all(|l| l.as_f64().unwrap_or(0.0) > 0.0));
    }
}
