//! Cascade Mask R-CNN, HTC and HTC-Lite on a tiny network: heads per stage, finite losses,
//! gradients reaching every stage, a Seesaw count per stage, predictions in range; and the
//! global context head's loss and fusion against hand computations.

mod common;
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seesaw_model::burn;
use seesaw_model::detectors::{DetectorConfig, DetectorKind};
use seesaw_model::heads::BoxLossKind;
use seesaw_model::heads::GlobalContextConfig;
use seesaw_model::heads::global_context_head::fuse_context;
use seesaw_model::losses::{AnyLoss, LossState};
use seesaw_model::structures::GtInstances;

fn tiny(detector: &str, loss: &str) -> DetectorConfig {
    let mut c = common::tiny(loss);
    c.detector = detector.parse().expect("detector");
    c.bbox_head.class_agnostic = true;
    c.bbox_head.loss_bbox = BoxLossKind::SmoothL1;
    c.mask_head.conv_channels = 16;
    c
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("scalar")[0]
}

#[test]
fn every_cascade_kind_trains_each_stage_and_predicts_in_range() {
    let device = Device::flex().autodiff();
    for (detector, masks) in [("cascade", 3), ("htc", 3), ("htc_lite", 1)] {
        for loss_name in ["ce", "seesaw"] {
            let cfg = tiny(detector, loss_name);
            assert_eq!(cfg.num_stages().expect("stages"), 3);
            let mut model = cfg.init(&device).expect("model");
            let heads = model.roi_head.ops();
            assert_eq!(heads.bbox_heads().len(), 3, "{detector}");
            assert_eq!(heads.mask_heads().len(), masks, "{detector}");
            assert_eq!(heads.glbctx_head().is_some(), detector == "htc_lite");
            // HTC's later mask heads take the previous head's features.
            let res: Vec<bool> = heads
                .mask_heads()
                .iter()
                .map(|h| h.conv_res.is_some())
                .collect();
            let want: Vec<bool> = (0..masks).map(|t| detector == "htc" && t > 0).collect();
            assert_eq!(res, want, "{detector}");

            let images = Tensor::<4>::random(
                [2, 3, 64, 96],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let (metas, gts) = common::two_image_batch(64, 96);
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let parts = model
                .forward_train(
                    images.clone(),
                    &metas,
                    &gts,
                    &mut seesaw_model::structures::image_rngs(&mut rng, metas.len()),
                )
                .expect("train forward");
            for (name, t) in ["rpn_cls", "rpn_bbox", "cls", "bbox", "mask", "glbctx"]
                .iter()
                .zip(parts.to_vec())
            {
                let v = scalar(t);
                assert!(
                    v.is_finite() && v >= 0.0,
                    "{detector} {loss_name} {name} = {v}"
                );
                if *name == "glbctx" {
                    assert_eq!(v > 0.0, detector == "htc_lite", "{detector} glbctx {v}");
                }
                if *name == "mask" || *name == "cls" {
                    assert!(v > 0.0, "{detector} {loss_name} {name} = {v}");
                }
            }
            if loss_name == "seesaw" {
                // Each stage's loss counted the labels of its own samples.
                let states = model.loss_states();
                assert_eq!(states.len(), 3);
                for (t, (name, state)) in states.iter().enumerate() {
                    assert_eq!(name, &format!("roi_head.bbox_head.{t}.loss_cls"));
                    let LossState::Seesaw { cum_samples } = state else {
                        panic!("seesaw")
                    };
                    // Every stage counted its samples, and only the ground truths' classes
                    // (1, 4) and the background: which positives a stage draws (at most 4 of
                    // 16) depends on the random weights, so a class may be missing from one.
                    let counted: u64 = cum_samples.iter().sum();
                    assert!(counted > 0, "stage {t}: {cum_samples:?}");
                    assert!(
                        cum_samples
                            .iter()
                            .enumerate()
                            .all(|(k, &c)| c == 0 || [1, 4, 5].contains(&k)),
                        "stage {t}: {cum_samples:?}"
                    );
                }
                let AnyLoss::Seesaw(_) = &model.roi_head.ops().bbox_heads()[2].loss_cls else {
                    panic!("each box head owns a Seesaw loss");
                };
            }
            let grads = parts.total().backward();
            let heads = model.roi_head.ops();
            for (t, h) in heads.bbox_heads().iter().enumerate() {
                assert!(
                    h.fc1.weight.grad(&grads).is_some(),
                    "{detector}: box stage {t}"
                );
                assert!(
                    h.reg.bias.as_ref().expect("bias").grad(&grads).is_some(),
                    "{detector}: box stage {t} regression"
                );
            }
            for (t, h) in heads.mask_heads().iter().enumerate() {
                assert!(
                    h.convs[0].weight.grad(&grads).is_some(),
                    "{detector}: mask {t}"
                );
                if let Some(c) = &h.conv_res {
                    assert!(c.weight.grad(&grads).is_some(), "{detector}: conv_res {t}");
                }
            }
            if let Some(g) = heads.glbctx_head() {
                assert!(g.fc.weight.grad(&grads).is_some());
                assert!(g.convs[0].weight.grad(&grads).is_some());
            }
            assert!(
                model
                    .backbone
                    .conv1
                    .as_ref()
                    .expect("conv1")
                    .weight
                    .grad(&grads)
                    .is_some()
            );

            let plain = model.valid();
            let dets = plain
                .predict(
                    Tensor::<4>::from_data(images.to_data(), &Device::flex()),
                    &metas,
                )
                .expect("predict");
            assert_eq!(dets.len(), 2);
            for d in &dets {
                assert_eq!(d.masks.len(), d.boxes.len());
                for (k, b) in d.boxes.iter().enumerate() {
                    assert!(b[0] >= 0.0 && b[2] <= 96.0 && b[1] >= 0.0 && b[3] <= 64.0);
                    assert!(d.labels[k] < 5 && d.scores[k] > 1e-4);
                    assert_eq!(d.masks[k].len(), 28 * 28);
                    assert!(d.masks[k].iter().all(|&p| (0.0..=1.0).contains(&p)));
                }
            }
        }
    }
}

#[test]
fn detector_names_and_bad_stage_lists() {
    assert_eq!(
        "htc-lite".parse::<DetectorKind>().expect("kind"),
        DetectorKind::HtcLite
    );
    assert_eq!(
        "mask_rcnn".parse::<DetectorKind>().expect("kind"),
        DetectorKind::MaskRcnn
    );
    assert!("retinanet".parse::<DetectorKind>().is_err());
    assert_eq!(tiny("mask_rcnn", "ce").num_stages().expect("stages"), 1);
    let mut bad = tiny("cascade", "ce");
    bad.cascade.stage_loss_weights = vec![1.0, 0.5];
    let e = bad.init(&Device::flex()).expect_err("lengths").to_string();
    assert!(e.contains("stage_ious"), "{e}");
}

#[test]
fn context_loss_and_fusion_match_hand_computation() {
    let device = Device::flex();
    let head = GlobalContextConfig::default()
        .init(4, 3, &device)
        .expect("head");
    // Two images, three classes; image 0 holds class 1, image 1 classes 0 and 2 (twice).
    let z: [[f64; 3]; 2] = [[0.0, 2.0, -1.0], [1.0, 0.0, 0.5]];
    let t: [[f64; 3]; 2] = [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]];
    let logits = Tensor::<2>::from_data(
        TensorData::new(z.concat().iter().map(|&v| v as f32).collect(), [2, 3]),
        &device,
    );
    let got = scalar(head.loss(logits, &[vec![1], vec![0, 2, 2]]).expect("loss"));
    let mut want = 0.0;
    for i in 0..2 {
        for k in 0..3 {
            let p: f64 = 1.0 / (1.0 + (-z[i][k]).exp());
            want -= t[i][k] * p.ln() + (1.0 - t[i][k]) * (1.0 - p).ln();
        }
    }
    let want = 3.0 * want / 6.0;
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    let logits = Tensor::<2>::zeros([2, 3], &device);
    assert!(head.loss(logits.clone(), &[vec![3], vec![]]).is_err());
    assert!(head.loss(logits, &[vec![1]]).is_err());

    // The pooled feature is the mean over the map; every RoI gets its own image's context.
    let x = Tensor::<4>::random(
        [2, 4, 3, 5],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let (mc, g) = head.forward(x);
    assert_eq!(mc.dims(), [2, 3]);
    assert_eq!(g.dims(), [2, 4]);
    let gv = g.clone().into_data().try_to_vec::<f32>().expect("g");
    let fused = fuse_context(
        Tensor::<4>::zeros([3, 4, 2, 2], &device),
        &g,
        &[
            [1.0, 0.0, 0.0, 1.0, 1.0],
            [0.0; 5],
            [1.0, 2.0, 2.0, 3.0, 3.0],
        ],
    );
    let fv = fused.into_data().try_to_vec::<f32>().expect("fused");
    for (r, img) in [1usize, 0, 1].into_iter().enumerate() {
        for c in 0..4 {
            for p in 0..4 {
                assert_eq!(fv[(r * 4 + c) * 4 + p], gv[img * 4 + c]);
            }
        }
    }
}

/// The trainable parameters of `model` that `grads` has no gradient for, by path.
fn without_gradient(
    model: &seesaw_model::detectors::Detector,
    grads: &burn::tensor::Gradients,
) -> Vec<String> {
    use burn::module::{ModuleVisitor, Param};
    struct Missing<'a> {
        grads: &'a burn::tensor::Gradients,
        path: Vec<String>,
        missing: Vec<String>,
    }
    impl ModuleVisitor for Missing<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.is_require_grad() && param.grad(self.grads).is_none() {
                self.missing.push(self.path.join("."));
            }
        }
    }
    let mut v = Missing {
        grads,
        path: vec![],
        missing: vec![],
    };
    model.visit(&mut v);
    v.missing
}

#[test]
fn every_parameter_gets_a_gradient_even_without_positives() {
    // Images without any ground truth: no positive anchor or RoI, so the mask heads have
    // nothing to learn from; their losses are zeros that still reach every parameter, so that
    // data-parallel replicas agree on which parameters have gradients.
    let device = Device::flex().autodiff();
    for detector in ["mask_rcnn", "cascade", "htc", "htc_lite"] {
        for loss_name in ["ce", "seesaw", "eqlv2", "federated"] {
            let mut model = tiny(detector, loss_name).init(&device).expect("model");
            let images = Tensor::<4>::random(
                [2, 3, 64, 96],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let (metas, _) = common::two_image_batch(64, 96);
            let empty = vec![GtInstances::default(); 2];
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            for gts in [empty, common::two_image_batch(64, 96).1] {
                let parts = model
                    .forward_train(
                        images.clone(),
                        &metas,
                        &gts,
                        &mut seesaw_model::structures::image_rngs(&mut rng, metas.len()),
                    )
                    .expect("train forward");
                assert!(scalar(parts.total()).is_finite(), "{detector} {loss_name}");
                let grads = parts.total().backward();
                let missing = without_gradient(&model, &grads);
                assert!(missing.is_empty(), "{detector} {loss_name}: {missing:?}");
            }
        }
    }
}
