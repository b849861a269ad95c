//! Data-parallel training from the CLI: `mpirun -n 2 seesaw train` with the global batch split
//! over two processes equals one process on the whole batch: the same loss at every iteration
//! (float tolerance), identical Seesaw class counts, the same parameters after the last step;
//! with SyncBN against BatchNorm on the whole batch; and an interrupted two-process run resumes
//! to the uninterrupted one. Needs a build with `--features mpi` and OpenMPI's `mpirun` (Debian:
//! openmpi-bin); `.ci/run` runs it.
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{seesaw, text};
use seesaw_model::burn::module::{Module, ModuleVisitor, Param};
use seesaw_model::burn::tensor::Tensor;

/// `mpirun -n 2 seesaw args...` (as root too, two ranks on however many cores).
fn mpirun2(args: &[&str]) -> Output {
    Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-n", "2"])
        .arg(env!("CARGO_BIN_EXE_seesaw"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("mpirun runs (Debian: apt-get install openmpi-bin)")
}

const CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../configs/demo_mask_rcnn_seesaw.toml"
);

/// The demo recipe, shrunk: 8 images of 64 px, 3 classes, a global batch of 4, 3 iterations.
fn sets(data: &Path, extra: &[&str]) -> Vec<String> {
    let mut s: Vec<String> = vec![
        "model.num_classes=3".into(),
        format!("data.train_json={}", data.join("train.json").display()),
        format!("data.train_images={}", data.display()),
        format!("data.val_json={}", data.join("val.json").display()),
        format!("data.val_images={}", data.display()),
        "data.train_scales=[[64, 64], [48, 64]]".into(),
        "data.test_scale=[64, 64]".into(),
        "train.batch_size=4".into(),
        "train.iters=3".into(),
        "train.log_every=1".into(),
    ];
    s.extend(extra.iter().map(|e| e.to_string()));
    s.into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
}

fn train_args<'a>(work: &'a Path, sets: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "train",
        CONFIG,
        "--work-dir",
        work.to_str().expect("utf-8"),
        "--quiet",
    ];
    a.extend(sets.iter().map(String::as_str));
    a.extend(more);
    a
}

/// `(iteration, loss, mask loss)` of each line of metrics.jsonl.
fn losses(work: &Path) -> Vec<(u64, f64, f64)> {
    std::fs::read_to_string(work.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            (
                v["iter"].as_u64().expect("iter"),
                v["loss"].as_f64().expect("loss"),
                v["mask"].as_f64().expect("mask"),
            )
        })
        .collect()
}

struct Values(Vec<Vec<f32>>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(
            param
                .val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32"),
        );
    }
}

/// Every parameter of a checkpoint, and its losses' states (Seesaw's counts) as JSON.
fn checkpoint(file: &Path) -> (Vec<Vec<f32>>, serde_json::Value) {
    let loaded = seesaw_engine::train::load_for_inference(file, None).expect("checkpoint");
    let mut v = Values(Vec::new());
    loaded.model.visit(&mut v);
    let states = serde_json::to_value(&loaded.meta.loss_states).expect("states");
    (v.0, states)
}

fn assert_same_run(one: &Path, two: &Path, what: &str) {
    let (a, b) = (losses(one), losses(two));
    assert_eq!(a.len(), 3, "{what}: {a:?}");
    assert_eq!(a.len(), b.len(), "{what}");
    for ((i, l1, m1), (j, l2, m2)) in a.iter().zip(&b) {
        assert_eq!(i, j);
        assert!(
            (l1 - l2).abs() <= 1e-5 * (1.0 + l1.abs()),
            "{what}, iteration {i}: loss {l1} on one process, {l2} on two"
        );
        assert!(
            (m1 - m2).abs() <= 1e-5 * (1.0 + m1.abs()),
            "{what}, mask loss {i}"
        );
    }
    let (pa, sa) = checkpoint(&one.join("latest.ckpt"));
    let (pb, sb) = checkpoint(&two.join("latest.ckpt"));
    assert_eq!(sa, sb, "{what}: Seesaw's counts differ");
    assert!(
        sa.to_string().contains("seesaw"),
        "{what}: no Seesaw state: {sa}"
    );
    assert_eq!(pa.len(), pb.len());
    let mut worst = 0f32;
    for (x, y) in pa.iter().zip(&pb) {
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            worst = worst.max((p - q).abs() / (1.0 + p.abs()));
        }
    }
    assert!(worst <= 1e-4, "{what}: parameters differ by {worst}");
}

#[test]
fn two_processes_train_as_one_on_the_whole_batch() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let data = d.join("data");
    let out = seesaw(&[
        "data",
        "synth",
        "--out",
        data.to_str().expect("utf-8"),
        "--classes",
        "3",
        "--train-images",
        "8",
        "--val-images",
        "2",
        "--size",
        "64",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Frozen BN statistics (every LVIS recipe's norm_eval).
    let frozen = sets(&data, &["model.backbone.norm_eval=true"]);
    let one = d.join("one");
    let out = seesaw(&train_args(&one, &frozen, &[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let two = d.join("two");
    let out = mpirun2(&train_args(&two, &frozen, &[]));
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.matches("trained 3 iterations").count(),
        1,
        "rank 0 alone reports: {stdout}"
    );
    assert!(
        text(&out.stderr).contains("replica 1 of 2: 2 of each global batch of 4 images"),
        "{}",
        text(&out.stderr)
    );
    assert_same_run(&one, &two, "frozen BN");

    // Interrupted after 2 iterations on two processes, resumed: the uninterrupted run.
    let resumed = d.join("resumed");
    let out = mpirun2(&train_args(&resumed, &frozen, &["--stop-at", "2"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(losses(&resumed).len(), 2);
    let out = mpirun2(&train_args(&resumed, &frozen, &["--resume"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_same_run(&one, &resumed, "resumed");

    // SyncBN on two processes against BatchNorm (train mode) on one, in the backbone. (With
    // the neck's norms synchronised too, the losses agree to 1e-7 for two iterations and then
    // one negative RoI of the third flips: rounding differences decide an NMS or IoU-threshold
    // tie. SyncBN itself is checked against BatchNorm exactly in seesaw-model's norm tests.)
    let bn = sets(&data, &["model.backbone.norm.type=bn"]);
    let sync = sets(&data, &["model.backbone.norm.type=syncbn"]);
    let one_bn = d.join("one_bn");
    let out = seesaw(&train_args(&one_bn, &bn, &[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let two_sync = d.join("two_sync");
    let out = mpirun2(&train_args(&two_sync, &sync, &[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_same_run(&one_bn, &two_sync, "SyncBN");
    // Plain BN on two processes normalises each half on its own: not the same run.
    let two_bn = d.join("two_bn");
    let out = mpirun2(&train_args(&two_bn, &bn, &[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (a, b) = (losses(&one_bn), losses(&two_bn));
    assert!(
        (a[0].1 - b[0].1).abs() > 1e-4,
        "per-replica BN should differ: {a:?} {b:?}"
    );

    // SyncBN in the mask head, where a replica may hold no positive RoI: with one annotated
    // image of eight (and unannotated images kept), one replica has none in the first
    // iteration and still takes part in the head's sums, as one process on the whole batch.
    let mut sparse: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("train.json")).expect("json"))
            .expect("json");
    let keep = sparse["images"][0]["id"].clone();
    let anns = sparse["annotations"]
        .as_array()
        .expect("annotations")
        .iter()
        .filter(|a| a["image_id"] == keep)
        .cloned()
        .collect();
    sparse["annotations"] = serde_json::Value::Array(anns);
    let sparse_json = data.join("train_sparse.json");
    std::fs::write(&sparse_json, sparse.to_string()).expect("write");
    let sparse_set = format!("data.train_json={}", sparse_json.display());
    let base = [
        sparse_set.as_str(),
        "data.filter_empty_gt=false",
        "model.backbone.norm_eval=true",
    ];
    let head_bn = sets(
        &data,
        &[&base[..], &["model.mask_head.norm.type=bn"]].concat(),
    );
    let head_sync = sets(
        &data,
        &[&base[..], &["model.mask_head.norm.type=syncbn"]].concat(),
    );
    let one_head = d.join("one_head");
    let out = seesaw(&train_args(&one_head, &head_bn, &[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let two_head = d.join("two_head");
    let out = mpirun2(&train_args(&two_head, &head_sync, &[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (a, b) = (losses(&one_head), losses(&two_head));
    assert!(a[0].2 > 0.0, "the first batch has a positive: {a:?}");
    for ((i, l1, m1), (_, l2, m2)) in a.iter().zip(&b) {
        assert!(
            (l1 - l2).abs() <= 1e-5 * (1.0 + l1.abs()),
            "SyncBN head, {i}: {l1} vs {l2}"
        );
        assert!(
            (m1 - m2).abs() <= 1e-5 * (1.0 + m1.abs()),
            "SyncBN head, {i}: {m1} vs {m2}"
        );
    }

    // A global batch that the replicas cannot share evenly is refused by name.
    let odd = sets(&data, &["train.batch_size=3"]);
    let out = mpirun2(&train_args(&d.join("odd"), &odd, &[]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("train.batch_size 3 is the global batch"),
        "{}",
        text(&out.stderr)
    );
}
