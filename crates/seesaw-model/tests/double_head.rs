//! Double-Head R-CNN's box head against PyTorch at 1e-4: mmdetection's `DoubleConvFCBBoxHead`
//! re-created in plain torch by tests/fixtures/weights/make_double_head.py (random weights,
//! mmdetection's names `res_block.*`, `conv_branch.k.conv1`/`bn1`, `fc_branch.i`), with running
//! and batch statistics; the regression RoIs' 1.3x enlargement and their levels (chosen before
//! it) against mmdetection's formulas; and training with the two poolings.

mod common;

use rand::SeedableRng;
use seesaw_model::burn;
use seesaw_model::burn::module::Module;
use seesaw_model::burn::tensor::{Device, Int, Tensor};
use seesaw_model::detectors::DetectorConfig;
use seesaw_model::heads::BBoxHeadKind;
use seesaw_model::ops::roi_extractor::{RoiExtractorConfig, roi_rescale};

/// The tiny detector with the fixture's Double Head: 2 bottlenecks at 24 channels, 2 fully
/// connected layers of 32, cross-entropy (C + 1 logits), class-specific regression.
fn double(loss: &str) -> DetectorConfig {
    let mut c = common::tiny(loss);
    c.bbox_head.kind = BBoxHeadKind::Double;
    c.bbox_head.num_convs = 2;
    c.bbox_head.conv_out_channels = 24;
    c.bbox_head.fc_channels = 32;
    c
}

#[test]
fn mmdet_double_head_matches_pytorch_with_running_and_batch_statistics() {
    let out = common::fixture("mmdet_double_head_out.safetensors");
    for (prefix, device) in [("", Device::flex()), ("train_", Device::flex().autodiff())] {
        let det = common::load_mmdet_part(
            &double("ce"),
            "mmdet_double_head.pth",
            "roi_head.bbox_head.",
            &device,
        );
        let head = &det.roi_head.ops().bbox_heads()[0];
        assert_eq!(head.reg_roi_scale(), Some(1.3));
        let t = |name: &str| -> Tensor<4> {
            Tensor::from_data(out.data(&format!("{prefix}{name}")).expect("x"), &device)
        };
        let (cls, reg) = head.forward_pair(t("x_cls"), t("x_reg"));
        for (name, got) in [("cls_score", cls), ("bbox_pred", reg)] {
            let want: Tensor<2> =
                Tensor::from_data(out.data(&format!("{prefix}{name}")).expect("y"), &device);
            let d = common::max_rel_diff(got, want);
            assert!(d < 1e-4, "{prefix}{name}: {d}");
        }
    }
}

#[test]
fn regression_rois_are_enlarged_about_their_centres_after_their_level_is_chosen() {
    let device = Device::flex();
    let out = common::fixture("mmdet_double_head_out.safetensors");
    let rois: Tensor<2> = Tensor::from_data(out.data("rois").expect("rois"), &device);
    let want: Tensor<2> = Tensor::from_data(out.data("rois_scaled").expect("scaled"), &device);
    let rows: Vec<[f32; 5]> = rois
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32")
        .chunks_exact(5)
        .map(|r| [r[0], r[1], r[2], r[3], r[4]])
        .collect();
    let scaled: Vec<f32> = rows.iter().flat_map(|r| roi_rescale(r, 1.3)).collect();
    assert_eq!(
        scaled,
        want.into_data().try_to_vec::<f32>().expect("f32"),
        "the same float32 operations as mmdetection's roi_rescale"
    );
    let levels: Tensor<1, Int> = Tensor::from_data(out.data("rois_levels").expect("lv"), &device);
    let want: Vec<usize> = levels
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("i64")
        .into_iter()
        .map(|l| l as usize)
        .collect();
    assert_eq!(RoiExtractorConfig::default().map_roi_levels(&rows), want);
}

#[test]
fn the_double_head_trains_with_ce_and_seesaw_and_predicts() {
    use seesaw_model::structures::{GtInstances, GtMask, ImageMeta};
    let device = Device::flex().autodiff();
    let metas: Vec<ImageMeta> = (0..2)
        .map(|i| ImageMeta {
            image_id: i,
            ori_shape: (64, 96),
            img_shape: (64, 96),
            scale: (1.0, 1.0),
            flip: false,
        })
        .collect();
    let boxes = [[10.0, 12.0, 40.0, 50.0], [50.0, 5.0, 90.0, 30.0]];
    let gts: Vec<GtInstances> = (0..2)
        .map(|_| GtInstances {
            boxes: boxes.to_vec(),
            labels: vec![1, 4],
            masks: boxes
                .iter()
                .map(|&b| GtMask::filled_box(64, 96, b))
                .collect(),
            ignore: vec![],
        })
        .collect();
    for (loss, detector) in [
        ("ce", "mask_rcnn"),
        ("seesaw", "mask_rcnn"),
        ("seesaw", "cascade"),
    ] {
        let mut cfg = double(loss);
        cfg.detector = detector.parse().expect("detector");
        cfg.bbox_head.loss_cls_weight = 2.0;
        cfg.bbox_head.loss_bbox_weight = 2.0;
        let mut model = cfg.init(&device).expect("model");
        let images = Tensor::<4>::random(
            [2, 3, 64, 96],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let parts = model
            .forward_train(
                images.clone(),
                &metas,
                &gts,
                &mut seesaw_model::structures::image_rngs(&mut rng, metas.len()),
            )
            .expect("train");
        let total = parts.total();
        let v = total.clone().into_data().try_to_vec::<f32>().expect("f32")[0];
        assert!(v.is_finite() && v > 0.0, "{loss} {detector}: {v}");
        let grads = total.backward();
        let head = &model.roi_head.ops().bbox_heads()[0];
        let double = head.double.as_ref().expect("a double head");
        // Both branches learn: the classifier's fully connected layers and the conv branch.
        assert!(head.fc1.weight.grad(&grads).is_some(), "{loss} {detector}");
        assert!(
            double.res_block.conv1.conv.weight.grad(&grads).is_some(),
            "{loss} {detector}"
        );
        let plain = Tensor::<4>::from_data(images.to_data(), &Device::flex());
        let dets = model.valid().predict(plain, &metas).expect("predict");
        assert_eq!(dets.len(), 2);
    }
}

#[test]
fn double_head_keys_on_a_conv_fc_head_are_named() {
    let mut cfg = common::tiny("ce");
    cfg.bbox_head.num_convs = 3;
    let err = cfg.init(&Device::flex()).expect_err("refused").to_string();
    assert!(
        err.contains("model.bbox_head.num_convs:") && !err.contains("reg_roi_scale_factor"),
        "{err}"
    );
}
