//! PAFPN against PyTorch at 1e-4: mmdetection's `PAFPN` (FPN + bottom-up path) re-created in
//! plain torch by tests/fixtures/weights/make_pafpn.py, loaded from an mmdetection-layout
//! checkpoint (`neck.downsample_convs.0.conv`, `neck.pafpn_convs.0.conv`), on even and odd
//! map sizes.

mod common;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor};
use seesaw_model::necks::NeckKind;
use seesaw_model::weights::{self, Layout, Naming, WeightsFile};

fn open(name: &str) -> WeightsFile {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name);
    WeightsFile::open(&path).expect("fixture opens")
}

#[test]
fn mmdet_pafpn_matches_pytorch_on_even_and_odd_sizes() {
    let device = Device::flex();
    // The tiny detector's backbone gives 8, 16, 32, 64 channels: the fixture's inputs.
    let mut cfg = common::tiny("ce");
    cfg.neck.kind = NeckKind::Pafpn;
    let mut det = cfg.init(&device).expect("config");
    assert_eq!(det.neck.downsample_convs.len(), 3);
    let naming = Naming::detector(Layout::Mmdet, &det);
    let report = weights::load(&mut det, &open("mmdet_pafpn.pth"), &naming, true).expect("loads");
    assert!(
        report.unexpected.is_empty() && report.mismatched.is_empty(),
        "{report:?}"
    );
    assert!(
        report.missing.iter().all(|n| !n.starts_with("neck.")),
        "every neck tensor is in the file: {report:?}"
    );
    let out = open("mmdet_pafpn_out.safetensors");
    let t = |name: &str| -> Tensor<4> {
        Tensor::from_data(out.data(name).expect("fixture tensor"), &device)
    };
    for prefix in ["", "odd_"] {
        let ins = (0..4).map(|i| t(&format!("{prefix}in{i}"))).collect();
        let outs = det.neck.forward(ins);
        assert_eq!(outs.len(), 5);
        for (i, o) in outs.into_iter().enumerate() {
            let want = t(&format!("{prefix}out{i}"));
            assert_eq!(o.dims(), want.dims(), "{prefix}out{i}");
            let g = o.into_data().try_to_vec::<f32>().expect("f32");
            let w = want.into_data().try_to_vec::<f32>().expect("f32");
            let d = g
                .iter()
                .zip(&w)
                .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
                .fold(0f32, f32::max);
            assert!(d < 1e-4, "{prefix}out{i}: {d}");
        }
    }
}
