//! Replays every `seesaw-oracle/v1` vector file (tests/fixtures/seesaw, plus the directory named
//! by `SEESAW_LOSS_VECTORS`) through `SeesawLoss`, iteration by iteration from the initial
//! counts, and compares every expected field: counts exactly, the rest at f32 rtol 1e-5 /
//! atol 1e-6. `cargo test --workspace --release seesaw_conformance` runs it.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::losses::{Reduction, SeesawLossConfig};
use serde_json::Value;

const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;

fn device() -> Device {
    Device::flex().autodiff()
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(floats).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap_or(f64::NAN)],
        _ => vec![],
    }
}

fn tensor_values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

struct Mismatch(String);

fn compare(file: &str, it: usize, field: &str, got: &[f64], want: &[f64]) -> Result<(), Mismatch> {
    if got.len() != want.len() {
        return Err(Mismatch(format!(
            "{file}: iteration {it}: {field}: {} values, expected {}",
            got.len(),
            want.len()
        )));
    }
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        if g.is_nan() || (g - w).abs() > ATOL + RTOL * w.abs() {
            return Err(Mismatch(format!(
                "{file}: iteration {it}: {field}[{k}]: got {g}, expected {w}"
            )));
        }
    }
    Ok(())
}

/// Replays one vector file; the first mismatch names file, iteration, field and index.
fn replay(path: &Path) -> Result<usize, Mismatch> {
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cfg = &doc["config"];
    let c = cfg["num_classes"].as_u64().unwrap() as usize;
    let mut config = SeesawLossConfig::new(c);
    config.p = cfg["p"].as_f64().unwrap();
    config.q = cfg["q"].as_f64().unwrap();
    config.eps = cfg["eps"].as_f64().unwrap();
    config.loss_weight = cfg["loss_weight"].as_f64().unwrap();
    config.reduction = cfg["reduction"].as_str().unwrap().parse().unwrap();
    let mut loss = config.init();
    let initial: Vec<u64> = floats(&doc["initial_cum_samples"])
        .iter()
        .map(|&x| x as u64)
        .collect();
    loss.set_counts(initial).unwrap();

    let iterations = doc["iterations"].as_array().unwrap();
    for (it, iteration) in iterations.iter().enumerate() {
        let input = &iteration["input"];
        let want = &iteration["expected"];
        let n = input["labels"].as_array().unwrap().len();
        let labels: Vec<usize> = floats(&input["labels"])
            .iter()
            .map(|&x| x as usize)
            .collect();
        let score: Vec<f32> = floats(&input["cls_score"])
            .iter()
            .map(|&x| x as f32)
            .collect();
        let dev = device();
        let cls_score =
            Tensor::<2>::from_data(TensorData::new(score, [n, c + 2]), &dev).require_grad();
        let weights = (!input["label_weights"].is_null()).then(|| {
            let w: Vec<f32> = floats(&input["label_weights"])
                .iter()
                .map(|&x| x as f32)
                .collect();
            Tensor::<1>::from_data(TensorData::new(w, [n]), &dev)
        });
        let avg = input["avg_factor"].as_f64();
        let reduction: Option<Reduction> = input["reduction_override"]
            .as_str()
            .map(|s| s.parse().unwrap());

        let out = loss
            .forward(cls_score.clone(), &labels, weights, avg, reduction)
            .unwrap();
        let counts: Vec<f64> = loss.counts().iter().map(|&x| x as f64).collect();
        let want_counts = floats(&want["cum_samples_after"]);
        if counts != want_counts {
            return Err(Mismatch(format!(
                "{file}: iteration {it}: cum_samples_after: got {counts:?}, expected {want_counts:?}"
            )));
        }
        let classes = tensor_values(out.loss_cls_classes.clone());
        let objectness = tensor_values(out.loss_cls_objectness.clone());
        compare(
            &file,
            it,
            "loss_cls_classes",
            &classes,
            &floats(&want["loss_cls_classes"]),
        )?;
        compare(
            &file,
            it,
            "loss_cls_objectness",
            &objectness,
            &floats(&want["loss_cls_objectness"]),
        )?;
        let total = out.total();
        compare(
            &file,
            it,
            "loss_total",
            &tensor_values(total.clone()),
            &floats(&want["loss_total"]),
        )?;
        let grads = total.backward();
        let grad = cls_score
            .grad(&grads)
            .map(tensor_values)
            .unwrap_or_default();
        compare(
            &file,
            it,
            "grad_cls_score",
            &grad,
            &floats(&want["grad_cls_score"]),
        )?;

        let plain = cls_score.clone().detach();
        let act = loss.get_activation(plain.clone()).unwrap();
        compare(
            &file,
            it,
            "activation",
            &tensor_values(act),
            &floats(&want["activation"]),
        )?;
        let (acc_obj, acc_cls) = loss.get_accuracy(plain.clone(), &labels).unwrap();
        compare(
            &file,
            it,
            "acc_objectness",
            &[acc_obj],
            &floats(&want["acc_objectness"]),
        )?;
        compare(
            &file,
            it,
            "acc_classes",
            &[acc_cls],
            &floats(&want["acc_classes"]),
        )?;

        let pos: Vec<usize> = (0..n).filter(|&k| labels[k] < c).collect();
        let pos_labels: Vec<usize> = pos.iter().map(|&k| labels[k]).collect();
        let log_s = if pos.is_empty() {
            Vec::new()
        } else {
            let idx: Vec<i64> = pos.iter().map(|&k| k as i64).collect();
            let idx = Tensor::from_data(TensorData::new(idx, [pos.len()]), &dev);
            let z = plain.select(0, idx).slice([0..pos.len(), 0..c]);
            loss.log_seesaw_weights(z, &pos_labels).unwrap()
        };
        compare(
            &file,
            it,
            "seesaw_log_weights_pos",
            &log_s,
            &floats(&want["seesaw_log_weights_pos"]),
        )?;
    }
    Ok(iterations.len())
}

fn vector_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn seesaw_conformance() {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seesaw")];
    if let Some(extra) = std::env::var_os("SEESAW_LOSS_VECTORS") {
        dirs.push(PathBuf::from(extra));
    }
    let mut replayed = 0;
    let mut failures = Vec::new();
    for dir in dirs {
        for f in vector_files(&dir) {
            match replay(&f) {
                Ok(n) => replayed += n,
                Err(Mismatch(m)) => failures.push(m),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(replayed >= 12, "only {replayed} iterations replayed");
}

#[test]
fn seesaw_conformance_fails_on_an_altered_vector() {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seesaw/01_basic_default.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&src).unwrap()).unwrap();
    let g = &mut doc["iterations"][0]["expected"]["grad_cls_score"][1][2];
    *g = Value::from(g.as_f64().unwrap() + 1e-3);
    let dir = tempfile::tempdir().unwrap();
    let altered = dir.path().join("01_altered.json");
    std::fs::write(&altered, serde_json::to_string(&doc).unwrap()).unwrap();
    let Err(Mismatch(m)) = replay(&altered) else {
        panic!("an altered gradient must fail the replay");
    };
    assert!(
        m.starts_with("01_altered.json: iteration 0: grad_cls_score["),
        "{m}"
    );
}
