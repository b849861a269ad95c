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

/// No file makes loading panic: every prefix of a valid file (truncation at every byte), and
/// seeded random byte corruptions of it, give a value or an error.
#[test]
fn truncated_and_corrupted_files_never_panic() {
    use rand::{Rng, SeedableRng};
    let valid = std::fs::read(fixtures().join("eval/tiny/lvis_gt.json")).unwrap();
    let head = &valid[..valid.len().min(6000)];
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.json");
    let mut errors = 0;
    for cut in 0..head.len() {
        std::fs::write(&f, &head[..cut]).unwrap();
        errors += usize::from(Dataset::load(&f).is_err());
    }
    // A prefix of a document is never a whole document.
    assert_eq!(errors, head.len());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for _ in 0..300 {
        let mut bytes = valid.clone();
        for _ in 0..rng.random_range(1..8) {
            let at = rng.random_range(0..bytes.len());
            bytes[at] = rng.random();
        }
        std::fs::write(&f, &bytes).unwrap();
        let _ = Dataset::load(&f);
        let _ = seesaw_data::load_results(&f);
    }
}
