//! torchvision's resize convention against torch itself (tests/fixtures/resize/make_resize.py):
//! the bilinear resampling of `F.interpolate(align_corners=False)` and the output sizes of its
//! detection transform.

use seesaw_data::transforms::resize::{rescale, rescale_torchvision, resize_bilinear};
use serde_json::Value;

fn fixture() -> Value {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize/resize.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("json")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

#[test]
fn bilinear_resize_matches_torch_interpolate() {
    let f = fixture();
    let input = floats(&f["input"]);
    let (h0, w0) = (
        f["in_h"].as_u64().expect("h") as usize,
        f["in_w"].as_u64().expect("w") as usize,
    );
    for case in f["cases"].as_array().expect("cases") {
        let (h, w) = (
            case["h"].as_u64().expect("h") as usize,
            case["w"].as_u64().expect("w") as usize,
        );
        let got = resize_bilinear(&input, 3, (h0, w0), (h, w));
        let want = floats(&case["out"]);
        assert_eq!(got.len(), want.len());
        for (i, (g, e)) in got.iter().zip(&want).enumerate() {
            assert!((g - e).abs() < 1e-5, "{h}x{w}[{i}]: {g} vs {e}");
        }
    }
}

#[test]
fn torchvision_floors_the_sides_where_mmdetection_rounds() {
    let f = fixture();
    for case in f["torchvision_sizes"].as_array().expect("sizes") {
        let dims = |k: &str| -> (u32, u32) {
            let v = case[k].as_array().expect("pair");
            (
                v[0].as_u64().expect("h") as u32,
                v[1].as_u64().expect("w") as u32,
            )
        };
        let ((h, w), want) = (dims("in"), dims("out"));
        let (nh, nw, _, _) = rescale_torchvision(h, w, [800, 1333]);
        assert_eq!((nh, nw), want, "{h}x{w}");
    }
    // 480 x 640: torchvision 800 x 1066, mmdetection 800 x 1067.
    assert_eq!(rescale(480, 640, [800, 1333]).1, 1067);
}
