//! InstaBoost against the `instaboostfast` package as mmdetection drives it: the same input
//! (a textured 128 x 128 image, three instances, two of them overlapping, one at the right
//! border) and settings, the statistics of the placements and masks over many calls compared
//! with the package's (`fixtures/instaboost/make_instaboost_probe.py`, run by hand with
//! instaboostfast 0.1.2); and the probability map (`hflag`) choosing where an instance goes.

use seesaw_data::loading::Sample;
use seesaw_data::structures::{GtInstances, GtMask, ImageMeta};
use seesaw_data::transforms::{InstaBoostConfig, instaboost};
use serde_json::Value;

fn fixture() -> Value {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/instaboost/instaboost_probe.json"
    );
    serde_json::from_str(&std::fs::read_to_string(file).expect("fixture")).expect("json")
}

/// The fixture's image and instances as a sample (raw 0-255 values: mean 0, std 1).
fn sample(block: &Value, h: usize, w: usize) -> Sample {
    let rgb: Vec<f32> = block["image_rgb"]
        .as_array()
        .expect("image")
        .iter()
        .map(|v| v.as_f64().expect("pixel") as f32)
        .collect();
    let mut pixels = vec![0f32; 3 * h * w];
    for i in 0..h * w {
        for c in 0..3 {
            pixels[c * h * w + i] = rgb[i * 3 + c];
        }
    }
    let mut gt = GtInstances::default();
    for inst in block["instances"].as_array().expect("instances") {
        let mut data = Vec::with_capacity(h * w);
        for (k, run) in inst["mask_rle"].as_array().expect("rle").iter().enumerate() {
            let n = run.as_u64().expect("run") as usize;
            data.extend(std::iter::repeat_n(u8::from(k % 2 == 1), n));
        }
        assert_eq!(data.len(), h * w);
        let b: Vec<f32> = inst["bbox_xyxy"]
            .as_array()
            .expect("box")
            .iter()
            .map(|v| v.as_f64().expect("coordinate") as f32)
            .collect();
        gt.boxes.push([b[0], b[1], b[2], b[3]]);
        gt.labels
            .push(inst["category_id"].as_u64().expect("category") as usize);
        gt.masks.push(GtMask {
            height: h,
            width: w,
            data,
        });
    }
    Sample {
        pixels,
        meta: ImageMeta {
            image_id: 1,
            ori_shape: (h as u32, w as u32),
            img_shape: (h, w),
            scale: (1.0, 1.0),
            flip: false,
        },
        gt,
    }
}

fn centroid_area(m: &GtMask) -> (f64, f64, f64) {
    let (mut sx, mut sy, mut n) = (0f64, 0f64, 0f64);
    for (i, &v) in m.data.iter().enumerate() {
        if v != 0 {
            sx += (i % m.width) as f64;
            sy += (i / m.width) as f64;
            n += 1.0;
        }
    }
    (sx / n, sy / n, n)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

#[test]
fn placements_and_masks_follow_the_package_statistics() {
    let f = fixture();
    let (h, w) = (128, 128);
    let input = sample(&f, h, w);
    let cfg: InstaBoostConfig = serde_json::from_value(f["config"].clone()).expect("config");
    let calls = 400u64;
    let stats = &f["stats"];
    let mut applied = 0;
    // Per instance: dx, dy and area ratio over the applied calls.
    let mut per: Vec<[Vec<f64>; 3]> = vec![Default::default(); 3];
    let before: Vec<(f64, f64, f64)> = input.gt.masks.iter().map(centroid_area).collect();
    for seed in 0..calls {
        let out = instaboost(input.clone(), &cfg, [0.0; 3], [1.0; 3], seed);
        if out.pixels == input.pixels && out.gt.masks == input.gt.masks {
            continue;
        }
        applied += 1;
        // The package's output order: group {1, 2}, then {3}; none dropped.
        assert_eq!(out.gt.labels, vec![1, 2, 3], "seed {seed}");
        for (k, (m, b)) in out.gt.masks.iter().zip(&out.gt.boxes).enumerate() {
            assert_eq!(m.bbox(), Some(*b), "boxes are the masks' tight boxes");
            let (x, y, a) = centroid_area(m);
            per[k][0].push(x - before[k].0);
            per[k][1].push(y - before[k].1);
            per[k][2].push(a / before[k].2);
        }
        // Instances 1 and 2 overlap: one group, moved together.
        let d0 = (per[0][0].last(), per[0][1].last());
        let d1 = (per[1][0].last(), per[1][1].last());
        assert!(d0.0.is_some() && d1.0.is_some());
    }
    let want_applied = stats["applied_fraction"].as_f64().expect("applied");
    let got_applied = applied as f64 / calls as f64;
    assert!(
        (got_applied - want_applied).abs() < 0.08,
        "applied {got_applied} vs the package's {want_applied}"
    );
    for (k, want) in stats["per_instance"]
        .as_array()
        .expect("per instance")
        .iter()
        .enumerate()
    {
        let g = |key: &str| want[key].as_f64().expect(key);
        let (dx, dx_sd) = mean_std(&per[k][0]);
        let (dy, dy_sd) = mean_std(&per[k][1]);
        let (ar, ar_sd) = mean_std(&per[k][2]);
        let report = format!(
            "instance {}: ours dx {dx:.2}+-{dx_sd:.2} dy {dy:.2}+-{dy_sd:.2} area {ar:.3}+-{ar_sd:.3}; \
             package dx {:.2}+-{:.2} dy {:.2}+-{:.2} area {:.3}+-{:.3}",
            k + 1,
            g("dx_mean"),
            g("dx_std"),
            g("dy_mean"),
            g("dy_std"),
            g("area_ratio_mean"),
            g("area_ratio_std")
        );
        println!("{report}");
        assert!((dx - g("dx_mean")).abs() < 0.6, "{report}");
        assert!((dy - g("dy_mean")).abs() < 0.6, "{report}");
        for (ours, theirs) in [
            (dx_sd, g("dx_std")),
            (dy_sd, g("dy_std")),
            (ar_sd, g("area_ratio_std")),
        ] {
            assert!(
                (ours / theirs - 1.0).abs() < 0.3,
                "spread {ours} vs {theirs}: {report}"
            );
        }
        // The package's polygon round trip cuts convex corners (its identity round trip keeps
        // 97-99.5% of these masks, less once scaled down); ours keeps bitmaps, so its areas
        // run a few percent larger.
        assert!(
            ar > g("area_ratio_mean") - 0.02 && ar < g("area_ratio_mean") + 0.09,
            "{report}"
        );
        let (lo, hi) = per[k][2]
            .iter()
            .fold((f64::INFINITY, 0f64), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(
            lo > g("area_ratio_min") - 0.05 && hi < g("area_ratio_max") + 0.08,
            "{report}"
        );
    }
    // The border group (instance 3, at the right edge) never shrinks nor moves left.
    assert!(per[2][2].iter().all(|&a| a > 0.97));
    assert!(per[2][0].iter().all(|&d| d > -0.6), "{:?}", per[2][0]);
}

#[test]
fn the_probability_map_places_an_instance_where_its_surroundings_match() {
    let f = fixture();
    let block = &f["heatmap"];
    let (h, w) = (128, 128);
    let input = sample(block, h, w);
    let cfg = InstaBoostConfig {
        aug_ratio: 1.0,
        color_prob: 0.0,
        hflag: true,
        ..Default::default()
    };
    let stats = &block["stats"];
    let calls = block["calls"].as_u64().expect("calls");
    let before = centroid_area(&input.gt.masks[0]);
    let (mut left, mut far) = (0, 0);
    let mut xs = Vec::new();
    for seed in 0..calls {
        let out = instaboost(input.clone(), &cfg, [0.0; 3], [1.0; 3], seed);
        let (x, y, _) = centroid_area(&out.gt.masks[0]);
        xs.push(x);
        left += usize::from(x < 64.0);
        far += usize::from((x - before.0).abs().max((y - before.1).abs()) > 8.0);
    }
    let left = left as f64 / calls as f64;
    let far = far as f64 / calls as f64;
    let want_left = stats["landed_left_fraction"].as_f64().expect("left");
    let want_far = stats["moved_more_than_8px_fraction"].as_f64().expect("far");
    println!("ours: left {left}, moved > 8 px {far}; package: {want_left}, {want_far}");
    assert!(
        left >= want_left - 0.05,
        "landed left {left} vs {want_left}"
    );
    assert!(far >= want_far - 0.3, "moved > 8 px {far} vs {want_far}");
    // Without the map the same instance moves at most floor(16 / 15) = 1 px plus its scaling.
    let plain = InstaBoostConfig {
        hflag: false,
        ..cfg
    };
    let out = instaboost(input.clone(), &plain, [0.0; 3], [1.0; 3], 0);
    let (x, _, _) = centroid_area(&out.gt.masks[0]);
    assert!((x - before.0).abs() <= 2.5);
}
