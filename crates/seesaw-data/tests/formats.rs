//! The reference evaluation fixtures load, keep their LVIS and COCO fields, and round-trip
//! through write -> read, plain and gzip-compressed.

use std::path::{Path, PathBuf};

use seesaw_data::{Dataset, Format, Frequency, RleCounts, Segmentation};

fn eval_fixture(case: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eval")
        .join(case)
        .join(name)
}

#[test]
fn reference_ground_truth_loads_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    for case in ["tiny", "edge"] {
        for (name, format) in [
            ("lvis_gt.json", Format::Lvis),
            ("coco_gt.json", Format::Coco),
        ] {
            let ds = Dataset::load(&eval_fixture(case, name)).unwrap();
            assert_eq!(ds.format(), format, "{case}/{name}");
            assert!(!ds.annotations.is_empty());
            for ext in ["json", "json.gz"] {
                let out = dir.path().join(format!("{case}_{name}.{ext}"));
                ds.save(&out).unwrap();
                let back = Dataset::load(&out).unwrap();
                assert_eq!(back, ds, "{case}/{name} as .{ext}");
            }
        }
    }
}

#[test]
fn lvis_and_coco_specific_fields_are_read() {
    let lvis = Dataset::load(&eval_fixture("tiny", "lvis_gt.json")).unwrap();
    assert!(
        lvis.images
            .iter()
            .any(|im| !im.neg_category_ids.as_ref().unwrap().is_empty())
    );
    assert!(
        lvis.images
            .iter()
            .all(|im| im.not_exhaustive_category_ids.is_some())
    );
    assert!(lvis.categories.iter().all(|c| c.frequency.is_some()));
    let groups: std::collections::HashSet<Frequency> =
        lvis.categories.iter().filter_map(|c| c.frequency).collect();
    assert_eq!(groups.len(), 3);

    let coco = Dataset::load(&eval_fixture("tiny", "coco_gt.json")).unwrap();
    let crowd: Vec<_> = coco.annotations.iter().filter(|a| a.is_crowd()).collect();
    assert!(!crowd.is_empty(), "the tiny case has crowd regions");
    for a in crowd {
        assert!(matches!(
            a.segmentation,
            Some(Segmentation::Rle(ref r)) if matches!(r.counts, RleCounts::Uncompressed(_))
        ));
    }
    let edge = Dataset::load(&eval_fixture("edge", "lvis_gt.json")).unwrap();
    assert!(edge.annotations.iter().any(|a| a.ignore == Some(1)));
}

#[test]
fn reference_detections_load_and_match_their_ground_truth() {
    for case in ["tiny", "edge"] {
        for fmt in ["lvis", "coco"] {
            let gt = Dataset::load(&eval_fixture(case, &format!("{fmt}_gt.json"))).unwrap();
            let file = eval_fixture(case, &format!("{fmt}_dt.json"));
            let dets = seesaw_data::load_results(&file).unwrap();
            assert!(!dets.is_empty());
            assert!(
                dets.iter()
                    .all(|d| d.bbox.is_some() && d.segmentation.is_some())
            );
            seesaw_data::check_results_against(&file, &dets, &gt).unwrap();
        }
    }
}

#[test]
fn bad_results_are_named_by_index_and_field() {
    let gt = Dataset::load(&eval_fixture("tiny", "lvis_gt.json")).unwrap();
    let image = gt.images[0].id;
    let (h, w) = (gt.images[0].height, gt.images[0].width);
    let cat = gt.categories[0].id;
    let dir = tempfile::tempdir().unwrap();
    let ok = format!(
        r#"{{"image_id": {image}, "category_id": {cat}, "bbox": [1, 2, 3, 4], "score": 0.5}}"#
    );
    let cases = [
        (
            format!(
                r#"[{ok}, {{"image_id": 123456789, "category_id": {cat}, "bbox": [1, 2, 3, 4], "score": 0.5}}]"#
            ),
            "[1].image_id: image id 123456789 is not in the ground truth".to_string(),
        ),
        (
            format!(
                r#"[{ok}, {{"image_id": {image}, "category_id": 99999, "bbox": [1, 2, 3, 4], "score": 0.5}}]"#
            ),
            "[1].category_id: category id 99999 is not in the ground truth".to_string(),
        ),
        (
            format!(
                r#"[{ok}, {ok}, {{"image_id": {image}, "category_id": {cat}, "segmentation": {{"size": [{h}, {}], "counts": "0"}}, "score": 0.5}}]"#,
                w + 1
            ),
            format!(
                "[2].segmentation.size: RLE size [{h}, {}] disagrees with the image ([{h}, {w}])",
                w + 1
            ),
        ),
    ];
    for (k, (text, want)) in cases.iter().enumerate() {
        let f = dir.path().join(format!("r{k}.json"));
        std::fs::write(&f, text).unwrap();
        let dets = seesaw_data::load_results(&f).unwrap();
        let err = seesaw_data::check_results_against(&f, &dets, &gt).unwrap_err();
        assert_eq!(err.to_string(), format!("{}: {want}", f.display()));
    }
    let alone = [
        (
            format!(
                r#"[{ok}, {{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": NaN}}]"#
            ),
            "[1].score: NaN and Infinity are not numbers in JSON",
        ),
        (
            format!(
                r#"[{ok}, {{"image_id": 1, "category_id": 1, "bbox": [1, 2, -3, 4], "score": 0.1}}]"#
            ),
            "[1].bbox: width is negative (-3.0)",
        ),
        (
            format!(r#"[{ok}, {{"image_id": 1, "category_id": 1, "score": 0.1}}]"#),
            "[1]: a detection needs a bbox or a segmentation",
        ),
        (
            format!(
                r#"[{ok}, {{"image_id": 1, "category_id": 1, "segmentation": [[1, 2, 3, 4, 5, 6]], "score": 0.1}}]"#
            ),
            "[1].segmentation: result masks must be RLE",
        ),
        ("".to_string(), "the file is empty"),
    ];
    for (k, (text, want)) in alone.iter().enumerate() {
        let f = dir.path().join(format!("s{k}.json"));
        std::fs::write(&f, text).unwrap();
        let err = seesaw_data::load_results(&f).unwrap_err().to_string();
        let prefix = format!("{}: {want}", f.display());
        assert!(err.starts_with(&prefix), "got {err}\nwant {prefix}...");
    }
    // An empty list is a valid result file.
    let f = dir.path().join("empty.json");
    std::fs::write(&f, "[]").unwrap();
    assert!(seesaw_data::load_results(&f).unwrap().is_empty());
}
