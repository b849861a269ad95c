//! Checks a converted detector against a reference implementation's recorded forward (the
//! torchvision and detectron2 fixtures, made by tests/fixtures/weights/make_*_maskrcnn.py):
//! the pyramid, RoIAlign at levels 1-3, the anchors, the RPN's proposals and the detections
//! with their mask probabilities. The pasted masks differ by convention and are left to the
//! caller.

use seesaw_data::DataConfig;
use seesaw_data::loading::load_image;
use seesaw_model::burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::detectors::Detector;
use seesaw_model::heads::rpn_head::level_anchors;
use seesaw_model::structures::{Detections, ImageMeta};
use seesaw_model::weights::WeightsFile;

/// A fixture's outputs and how its keys are spelled.
pub struct Reference {
    pub out: WeightsFile,
    /// The pyramid's five maps, finest first.
    pub fpn_keys: [&'static str; 5],
    /// Proposal objectness is stored as logits (`proposal_logits_i`, detectron2) rather than
    /// probabilities (`proposal_scores_i`, torchvision).
    pub proposal_logits: bool,
    /// The reference's label of our class k is `k + label_offset`.
    pub label_offset: i64,
    /// Tolerance of the anchors (0: the same float operations).
    pub anchor_tol: f32,
}

pub fn host(d: TensorData) -> Vec<f32> {
    d.convert::<f32>().try_to_vec::<f32>().expect("f32")
}

pub fn ints(out: &WeightsFile, name: &str) -> Vec<i64> {
    out.data(name)
        .expect(name)
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("i64")
}

/// Every element within `tol * (1 + |want|)`.
pub fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

/// The two 96 x 128 fixture images `{stem}_img0.png`, `{stem}_img1.png` as `data` prepares
/// them (no resize at that scale), batched.
pub fn fixture_images(stem: &str, data: &DataConfig) -> (Tensor<4>, Vec<ImageMeta>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights");
    let mut pixels = Vec::new();
    let mut metas = Vec::new();
    for i in 0..2 {
        let (p, mut meta) = load_image(
            &dir.join(format!("{stem}_img{i}.png")),
            [96, 128],
            false,
            data,
        )
        .expect("image");
        assert_eq!(meta.img_shape, (96, 128), "no resize at this scale");
        meta.image_id = i as u64;
        pixels.extend(p);
        metas.push(meta);
    }
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [2, 3, 96, 128]), &Device::flex());
    (images, metas)
}

/// Everything but the pasted masks at 1e-4; returns our detections (their order is the
/// reference's) for the caller's mask check.
pub fn check_against(
    det: &Detector,
    images: Tensor<4>,
    metas: &[ImageMeta],
    r: &Reference,
) -> Vec<Detections> {
    let out = &r.out;
    let feats = det.features(images.clone());
    for (l, name) in r.fpn_keys.iter().enumerate() {
        close(
            &host(feats[l].to_data()),
            &host(out.data(name).expect(name)),
            1e-4,
            name,
        );
    }
    // RoIAlign from levels 1-3 too (every proposal of these small images pools from level 0).
    let extra: Vec<[f32; 5]> = host(out.data("extra_roi_boxes").expect("rois"))
        .chunks_exact(5)
        .map(|r| [r[0], r[1], r[2], r[3], r[4]])
        .collect();
    let levels: Vec<i64> = det
        .config()
        .roi
        .extractor(7)
        .map_roi_levels(&extra)
        .into_iter()
        .map(|l| l as i64)
        .collect();
    assert_eq!(levels, ints(out, "extra_roi_levels"));
    let pooled = det.config().roi.pool(&feats, &extra, 7).expect("pool");
    close(
        &host(pooled.to_data()),
        &host(out.data("extra_roi_feats").expect("feats")),
        1e-4,
        "RoIAlign",
    );
    let sizes: Vec<(usize, usize)> = feats.iter().map(|f| (f.dims()[2], f.dims()[3])).collect();
    let (anchors, starts) = level_anchors(&det.config().rpn.anchor_generator(), &sizes);
    let per_level: Vec<i64> = starts.windows(2).map(|w| (w[1] - w[0]) as i64).collect();
    assert_eq!(per_level, ints(out, "anchors_num_per_level"));
    let flat: Vec<f32> = anchors.iter().flatten().copied().collect();
    close(
        &flat,
        &host(out.data("anchors_0").expect("anchors")),
        r.anchor_tol,
        "anchors",
    );
    // The RPN's proposals, in order, with their objectness.
    let proposals = det.proposals(&feats, metas).expect("proposals");
    for (i, props) in proposals.iter().enumerate() {
        let boxes: Vec<f32> = props.iter().flat_map(|(b, _)| *b).collect();
        let scores: Vec<f32> = props.iter().map(|(_, s)| *s).collect();
        close(
            &boxes,
            &host(out.data(&format!("proposals_{i}")).expect("p")),
            1e-4,
            "proposals",
        );
        let want: Vec<f32> = if r.proposal_logits {
            host(out.data(&format!("proposal_logits_{i}")).expect("s"))
                .into_iter()
                .map(|l| 1.0 / (1.0 + (-l).exp()))
                .collect()
        } else {
            host(out.data(&format!("proposal_scores_{i}")).expect("s"))
        };
        close(&scores, &want, 1e-4, "proposal scores");
    }
    let dets = det.predict(images, metas).expect("predict");
    for (i, d) in dets.iter().enumerate() {
        let boxes: Vec<f32> = d.boxes.iter().flatten().copied().collect();
        close(
            &boxes,
            &host(out.data(&format!("det_boxes_{i}")).expect("b")),
            1e-4,
            "boxes",
        );
        close(
            &d.scores,
            &host(out.data(&format!("det_scores_{i}")).expect("s")),
            1e-4,
            "scores",
        );
        let labels: Vec<i64> = d
            .labels
            .iter()
            .map(|&l| l as i64 + r.label_offset)
            .collect();
        assert_eq!(labels, ints(out, &format!("det_labels_{i}")), "labels");
        let probs: Vec<f32> = d.masks.iter().flatten().copied().collect();
        close(
            &probs,
            &host(out.data(&format!("mask_probs_{i}")).expect("m")),
            1e-4,
            "mask probabilities",
        );
    }
    dets
}
