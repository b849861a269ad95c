//! The bad-file table: every file in tests/fixtures/bad must fail to load with exactly the
//! message listed for it in tests/fixtures/expected.tsv (made by tests/fixtures/make_bad.py).

use std::path::{Path, PathBuf};

use seesaw_data::Dataset;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn every_bad_file_gives_its_message() {
    let table = std::fs::read_to_string(fixtures().join("expected.tsv")).unwrap();
    let mut n = 0;
    let mut failures = Vec::new();
    for line in table.lines().filter(|l| !l.is_empty()) {
        let (name, expected) = line.split_once('\t').unwrap();
        let path = fixtures().join("bad").join(name);
        let got = match Dataset::load(&path) {
            Ok(_) => "(loaded without error)".to_string(),
            Err(e) => e.to_string(),
        };
        let want = format!("{}: {expected}", path.display());
        if got != want {
            failures.push(format!("{name}\n  want: {want}\n  got:  {got}"));
        }
        n += 1;
    }
    assert!(
        n >= 15,
        "the table must hold at least 15 bad files, has {n}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_valid_base_of_the_bad_files_loads() {
    // Guards the table: each bad file must differ from a valid one by its one defect.
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.json");
    std::fs::write(
        &ok,
        r#"{"images": [{"id": 1, "width": 8, "height": 6}], "categories": [{"id": 1, "name": "a"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1],
            "area": 1, "segmentation": {"size": [6, 8], "counts": [0, 1, 47]}}]}"#,
    )
    .unwrap();
    Dataset::load(&ok).unwrap();
}
