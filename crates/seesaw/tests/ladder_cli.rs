//! `seesaw ladder --quick`: every rung of the deck's ladder trains (or, for TTA, tests) on the
//! built-in data from one command; each rung is a config inheriting the previous one that
//! `seesaw train` takes as it is; the table, summary.json and chart are written.

mod common;

use common::{seesaw, text};

#[test]
fn the_quick_ladder_runs_every_rung_and_writes_configs_table_and_chart() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("ladder");
    let run = seesaw(&["ladder", "--quick", "--out", out.to_str().expect("utf-8")]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    for title in [
        "Baseline",
        "SyncBN",
        "HTC-Lite",
        "Seesaw Loss",
        "Test Time Aug.",
    ] {
        assert!(stdout.contains(title), "{title} missing from\n{stdout}");
    }
    assert!(stdout.contains("38.8"), "the deck's numbers: {stdout}");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
            .expect("json");
    let rungs = summary["rungs"].as_array().expect("rungs");
    let names: Vec<&str> = rungs.iter().filter_map(|r| r["rung"].as_str()).collect();
    assert_eq!(
        names,
        [
            "baseline",
            "syncbn",
            "carafe",
            "htc_lite",
            "tsd",
            "mask_scoring",
            "augmentation",
            "fpg",
            "resnest_dcnv2",
            "seesaw",
            "finetune",
            "tta"
        ]
    );
    for r in rungs {
        assert!(r["segm"]["AP"].is_number(), "{r}");
        assert!(r["deck_mask_ap"].is_number(), "{r}");
    }
    assert!(rungs[11]["sec_per_iter"].is_null(), "TTA does not train");
    assert!(rungs[0]["sec_per_iter"].as_f64().unwrap_or(0.0) > 0.0);
    let png = std::fs::read(out.join("ladder.png")).expect("chart");
    assert_eq!(&png[1..4], b"PNG");

    // Each rung's config inherits the previous one, and trains as it is.
    let configs = out.join("configs");
    let seesaw_rung = std::fs::read_to_string(configs.join("10_seesaw.toml")).expect("rung 10");
    assert!(
        seesaw_rung.contains("_base_ = \"09_resnest_dcnv2.toml\""),
        "{seesaw_rung}"
    );
    assert!(seesaw_rung.contains("loss = \"seesaw\""), "{seesaw_rung}");
    let finetune = std::fs::read_to_string(configs.join("11_finetune.toml")).expect("rung 11");
    assert!(finetune.contains("load_from"), "{finetune}");
    let work = dir.path().join("work");
    let train = seesaw(&[
        "train",
        configs.join("05_tsd.toml").to_str().expect("utf-8"),
        "--work-dir",
        work.to_str().expect("utf-8"),
        "--set",
        "train.iters=1",
    ]);
    assert!(train.status.success(), "{}", text(&train.stderr));
    let resolved = std::fs::read_to_string(work.join("config.toml")).expect("config");
    for key in [
        "detector = \"htc_lite\"",
        "type = \"tsd\"",
        "type = \"fpn_carafe\"",
        "syncbn",
    ] {
        assert!(resolved.contains(key), "{key} not inherited:\n{resolved}");
    }

    // A rung that is not one is named with the list.
    let bad = seesaw(&[
        "ladder",
        "--quick",
        "--rungs",
        "sync_bn",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("no rung \"sync_bn\""),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn the_lvis_ladder_in_configs_is_what_the_ladder_writes_and_every_rung_builds() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("ladder");
    let base = repo.join("configs/mask_rcnn_r50_fpn_ce_2x_lvis.toml");
    let run = seesaw(&[
        "ladder",
        "--base",
        base.to_str().expect("utf-8"),
        "--configs-only",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("each loads and builds its model"));
    let shipped = repo.join("configs/ladder");
    let mut names: Vec<String> = std::fs::read_dir(&shipped)
        .expect("configs/ladder")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    assert_eq!(names.len(), 12, "{names:?}");
    for name in names {
        let want = std::fs::read_to_string(shipped.join(&name)).expect("shipped");
        let got = std::fs::read_to_string(out.join(&name))
            .expect("written")
            .replace(out.to_str().expect("utf-8"), "configs/ladder");
        // Rung 1 names the base config relative to where it is written.
        let strip = |t: &str| -> String {
            t.lines()
                .filter(|l| !(name.starts_with("01_") && l.starts_with("_base_")))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            strip(&got),
            strip(&want),
            "{name} differs from `seesaw ladder --base configs/mask_rcnn_r50_fpn_ce_2x_lvis.toml \
             --configs-only --out configs/ladder`"
        );
    }
}
