//! Image files read as PIL reads them for mmdetection and detectron2 (fixtures and PIL's verdict
//! on each made by tests/fixtures/images/make_images.py): EXIF orientation applied, truncated
//! files refused; and the decoded size checked against the annotation file.

use std::path::{Path, PathBuf};

use seesaw_data::{Dataset, Split, read_image};

fn images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images")
}

#[test]
fn every_image_reads_as_pil_reads_it() {
    let table = std::fs::read_to_string(images().join("expected.tsv")).unwrap();
    let mut n = 0;
    for line in table.lines().filter(|l| !l.is_empty()) {
        let (name, verdict) = line.split_once('\t').unwrap();
        let path = images().join(name);
        let got = read_image(&path);
        match verdict.strip_prefix("ok ") {
            Some(size) => {
                let d = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                let (w, h) = d.dimensions();
                assert_eq!(format!("{w}x{h}"), size, "{name}");
            }
            None => {
                assert_eq!(verdict, "truncated");
                let err = got
                    .err()
                    .unwrap_or_else(|| panic!("{name}: read"))
                    .to_string();
                assert!(
                    err.starts_with(&format!("{}: the ", path.display()))
                        && err.contains("truncated"),
                    "{name}: {err}"
                );
            }
        }
        n += 1;
    }
    assert!(n >= 16, "{n} rows");
}

#[test]
fn every_exif_orientation_gives_pils_pixels() {
    for o in 1..=8 {
        let ours = read_image(&images().join(format!("orient{o}.png"))).unwrap();
        let pil = image::open(images().join(format!("orient{o}_pil.png")))
            .unwrap()
            .to_rgb8();
        assert_eq!(ours.orientation.to_exif(), o);
        assert_eq!(ours.rgb.dimensions(), pil.dimensions(), "orientation {o}");
        assert!(ours.rgb == pil, "orientation {o}: pixels differ from PIL's");
    }
    // A JPEG: decoders differ by rounding, not by where the pixels go.
    let ours = read_image(&images().join("orient6_jpeg.jpg")).unwrap().rgb;
    let pil = image::open(images().join("orient6_jpeg_pil.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(ours.dimensions(), (30, 40));
    let diff: f64 = ours
        .as_raw()
        .iter()
        .zip(pil.as_raw())
        .map(|(&a, &b)| f64::from(a.abs_diff(b)))
        .sum::<f64>()
        / ours.as_raw().len() as f64;
    assert!(diff < 3.0, "mean difference {diff}");
}

/// A one-image annotation file whose record says `w` x `h` for `file`.
fn split_of(dir: &Path, file: &str, w: u32, h: u32) -> Split {
    split_with_mask(dir, file, w, h, "[[2, 2, 12, 2, 12, 10, 2, 10]]")
}

/// [`split_of`] with the annotation's `segmentation` written as `mask`.
fn split_with_mask(dir: &Path, file: &str, w: u32, h: u32, mask: &str) -> Split {
    let json = dir.join("gt.json");
    std::fs::write(
        &json,
        format!(
            r#"{{"images": [{{"id": 5, "width": {w}, "height": {h}, "file_name": "{file}"}}],
                "annotations": [{{"id": 1, "image_id": 5, "category_id": 1,
                  "bbox": [2, 2, 10, 8], "area": 80, "segmentation": {mask}}}],
                "categories": [{{"id": 1, "name": "a"}}]}}"#
        ),
    )
    .unwrap();
    Split::new(Dataset::load(&json).unwrap(), &json, &images())
}

#[test]
fn the_decoded_size_must_be_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = seesaw_data::DataConfig::default();
    let sample = |file: &str, w: u32, h: u32| {
        split_of(dir.path(), file, w, h)
            .sample(0, [30, 40], false, &cfg, true)
            .map_err(|e| e.to_string())
    };
    // Annotated on the turned view, as mmcv and detectron2 read it: fine.
    let s = sample("orient6.png", 30, 40).unwrap();
    assert_eq!(s.meta.ori_shape, (40, 30));
    assert_eq!(s.gt.masks.len(), 1);
    sample("ok.jpg", 40, 30).unwrap();
    // Annotated on the stored pixels of a file whose tag turns them: the cause is named.
    let err = sample("orient6.png", 40, 30).unwrap_err();
    let path = images().join("orient6.png");
    assert!(
        err.starts_with(&format!(
            "{}: the image is 30x40 after its EXIF orientation (6) but images[0] (id 5) of {} says 40x30",
            path.display(),
            dir.path().join("gt.json").display()
        )),
        "{err}"
    );
    assert!(err.contains("EXIF orientation tag (6)"), "{err}");
    // Another size: a resized copy.
    let err = sample("ok.png", 80, 60).unwrap_err();
    assert!(
        err.contains("the image is 40x30 but images[0] (id 5)")
            && err.contains("says 80x60")
            && err.contains("resized"),
        "{err}"
    );
    // A truncated file stops loading, naming it.
    let err = sample("no_eoi.jpg", 40, 30).unwrap_err();
    assert!(
        err.contains("no_eoi.jpg: the JPEG file is truncated"),
        "{err}"
    );
}

#[test]
fn training_masks_needs_every_instance_to_have_one() {
    // An empty list of polygons is no mask (pycocotools fails on it, detectron2 drops the
    // instance): training masks stops naming it; training boxes only is fine.
    let dir = tempfile::tempdir().unwrap();
    let split = split_with_mask(dir.path(), "ok.png", 40, 30, "[]");
    let cfg = seesaw_data::DataConfig::default();
    let err = split
        .sample(0, [30, 40], false, &cfg, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with(
            "gt.json: annotations[0].segmentation: annotation id 1 has no mask (the field is \
             absent or an empty list); masks are trained (model.with_mask)"
        ),
        "{err}"
    );
    let s = split.sample(0, [30, 40], false, &cfg, false).unwrap();
    assert_eq!(s.gt.boxes.len(), 1);
}
