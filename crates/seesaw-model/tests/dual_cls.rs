//! The fine-tuning step's dual head classification (arXiv:2008.10032v4, Appendix D.2): a
//! trained model with a new classification branch per box stage, everything else frozen; only
//! the new branches learn; at test time the two branches' class scores are averaged.

mod common;

use rand::SeedableRng;
use seesaw_model::burn;
use seesaw_model::burn::module::Param;
use seesaw_model::burn::tensor::{Device, Tensor};
use seesaw_model::detectors::DetectorConfig;

fn with_dual(c: &DetectorConfig) -> DetectorConfig {
    let mut d = c.clone();
    d.bbox_head.dual_cls = true;
    d
}

#[test]
fn only_the_new_branches_learn_on_every_stage() {
    let device = Device::flex().autodiff();
    let (metas, gts) = common::two_image_batch(64, 96);
    for detector in ["mask_rcnn", "htc_lite"] {
        let mut cfg = common::tiny("seesaw");
        cfg.detector = detector.parse().expect("detector");
        cfg.bbox_head.class_agnostic = detector != "mask_rcnn";
        let trained = cfg.init(&device).expect("model");
        // Refused unless the config is the model's with the branch on.
        assert!(trained.clone().into_dual_cls_finetune(&cfg, 0).is_err());
        let mut model = trained
            .into_dual_cls_finetune(&with_dual(&cfg), 0)
            .expect("fine-tune");
        let stages = model.roi_head.ops().bbox_heads().len();
        assert_eq!(stages, if detector == "mask_rcnn" { 1 } else { 3 });
        let images = Tensor::<4>::random(
            [2, 3, 64, 96],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let parts = model
            .forward_train(
                images,
                &metas,
                &gts,
                &mut seesaw_model::structures::image_rngs(&mut rng, metas.len()),
            )
            .expect("train");
        let grads = parts.total().backward();
        for (t, head) in model.roi_head.ops().bbox_heads().iter().enumerate() {
            let dual = head.dual_cls.as_ref().expect("a new branch");
            assert!(
                dual.fc1.weight.grad(&grads).is_some(),
                "{detector} stage {t}"
            );
            assert!(
                head.fc1.weight.grad(&grads).is_none(),
                "{detector} stage {t} frozen"
            );
            assert!(
                head.reg.weight.grad(&grads).is_none(),
                "{detector} stage {t} frozen"
            );
        }
        let lateral = match &model.neck {
            seesaw_model::necks::Neck::Fpn(n) => n.lateral_convs[0].weight.grad(&grads),
            _ => unreachable!("the tiny detector's neck is an FPN"),
        };
        assert!(lateral.is_none(), "{detector}: the neck is frozen");
    }
}

#[test]
fn test_time_scores_average_the_two_branches() {
    let device = Device::flex();
    let (metas, _) = common::two_image_batch(64, 96);
    let cfg = common::tiny("ce");
    let plain = cfg.init(&device).expect("model");
    let mut dual = plain
        .clone()
        .into_dual_cls_finetune(&with_dual(&cfg), 0)
        .expect("fine-tune");
    // A new branch whose classifier gives zero logits: uniform scores 1 / (C + 1).
    for head in dual.roi_head.ops_mut().bbox_heads_mut() {
        let branch = head.dual_cls.as_mut().expect("branch");
        let cls = branch.cls.as_mut().expect("a plain classifier with CE");
        cls.weight = Param::from_tensor(cls.weight.val().zeros_like());
        cls.bias = cls
            .bias
            .take()
            .map(|b| Param::from_tensor(b.val().zeros_like()));
    }
    let images = Tensor::<4>::random(
        [2, 3, 64, 96],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let feats = plain.features(images);
    let rois = [[0.0, 5.0, 5.0, 40.0, 50.0], [1.0, 30.0, 2.0, 90.0, 60.0]];
    let (a, boxes_a) = plain.box_predictions(&feats, &rois, &metas).expect("plain");
    let (b, boxes_b) = dual.box_predictions(&feats, &rois, &metas).expect("dual");
    assert_eq!(boxes_a, boxes_b);
    let uniform = 1.0 / (cfg.num_classes + 1) as f32;
    for (x, y) in a.iter().zip(&b) {
        assert!((0.5 * (x + uniform) - y).abs() < 1e-6, "{x} {y}");
    }
}
