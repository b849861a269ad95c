//! Mask R-CNN's stages on a tiny network: shapes of every output, finite losses, gradients
//! reaching every trained part, and predictions in range.

mod common;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use common::tiny;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seesaw_model::burn;
use seesaw_model::heads::rpn_head::level_anchors;
use seesaw_model::structures::{GtInstances, GtMask, ImageMeta};

#[test]
fn every_stage_has_the_documented_shape_and_the_losses_are_finite() {
    let device = Device::flex().autodiff();
    for loss_name in ["ce", "seesaw"] {
        let cfg = tiny(loss_name);
        let mut model = cfg.init(&device).expect("model");
        let images = Tensor::<4>::random(
            [2, 3, 64, 96],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let feats = model.features(images.clone());
        let dims: Vec<[usize; 4]> = feats.iter().map(|f| f.dims()).collect();
        assert_eq!(
            dims,
            vec![
                [2, 16, 16, 24],
                [2, 16, 8, 12],
                [2, 16, 4, 6],
                [2, 16, 2, 3],
                [2, 16, 1, 2]
            ]
        );
        let out = model.rpn_head.forward(&feats);
        let (anchors, starts) = level_anchors(&cfg.rpn.anchor_generator(), &out.sizes);
        let n = 3 * (16 * 24 + 8 * 12 + 4 * 6 + 2 * 3 + 2);
        assert_eq!(out.cls.dims(), [2, n]);
        assert_eq!(out.reg.dims(), [2, n, 4]);
        assert_eq!(anchors.len(), n);
        assert_eq!(starts, vec![0, 1152, 1440, 1512, 1530, n]);

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
            let v = t
                .into_data()
                .convert::<f64>()
                .try_to_vec::<f64>()
                .expect("v")[0];
            assert!(v.is_finite() && v >= 0.0, "{loss_name} {name} = {v}");
        }
        let grads = parts.total().backward();
        for (name, g) in [
            (
                "conv1",
                model
                    .backbone
                    .conv1
                    .as_ref()
                    .expect("conv1")
                    .weight
                    .grad(&grads),
            ),
            (
                "fpn",
                model.neck.as_fpn().expect("an FPN").fpn_convs[0]
                    .weight
                    .grad(&grads),
            ),
            ("rpn", model.rpn_head.cls.weight.grad(&grads)),
            (
                "mask",
                model.roi_head.ops().mask_heads()[0].convs[0]
                    .weight
                    .grad(&grads),
            ),
        ] {
            assert!(g.is_some(), "{loss_name}: no gradient reaches {name}");
        }
        assert!(
            model.roi_head.ops().bbox_heads()[0]
                .fc1
                .weight
                .grad(&grads)
                .is_some()
        );
        // Biases initialised to zero stay trainable.
        let bias = |b: &Option<burn::module::Param<Tensor<1>>>| {
            b.as_ref().expect("bias").grad(&grads).is_some()
        };
        let mask_head = &model.roi_head.ops().mask_heads()[0];
        assert!(bias(&model.rpn_head.conv.bias) && bias(&model.rpn_head.reg.bias));
        assert!(
            bias(&model.roi_head.ops().bbox_heads()[0].fc1.bias)
                && bias(&model.roi_head.ops().bbox_heads()[0].reg.bias)
        );
        let upsample = mask_head.upsample.as_ref().expect("deconv");
        assert!(bias(&upsample.bias) && bias(&mask_head.convs[0].bias));

        let plain = model.valid();
        let dets = plain
            .predict(
                Tensor::<4>::from_data(images.to_data(), &Device::flex()),
                &metas,
            )
            .expect("predict");
        assert_eq!(dets.len(), 2);
        for d in &dets {
            assert!(d.boxes.len() <= cfg.roi.test.max_per_img);
            assert_eq!(d.masks.len(), d.boxes.len());
            for (k, b) in d.boxes.iter().enumerate() {
                assert!(b[0] >= 0.0 && b[2] <= 96.0 && b[1] >= 0.0 && b[3] <= 64.0);
                assert!(d.labels[k] < 5 && d.scores[k] > 1e-4);
                assert_eq!(d.masks[k].len(), 28 * 28);
            }
            assert!(d.scores.windows(2).all(|w| w[0] >= w[1]));
        }
    }
}

#[test]
fn frozen_stages_get_no_gradient_and_bad_configs_are_refused() {
    let device = Device::flex().autodiff();
    let mut cfg = tiny("seesaw");
    cfg.backbone.frozen_stages = 1;
    cfg.backbone.norm_eval = true;
    cfg.with_mask = false;
    let model = cfg.init(&device).expect("model");
    let images = Tensor::<4>::ones([1, 3, 64, 64], &device);
    let out = model.rpn_head.forward(&model.features(images));
    let grads = out.cls.sum().backward();
    assert!(
        model
            .backbone
            .conv1
            .as_ref()
            .expect("conv1")
            .weight
            .grad(&grads)
            .is_none()
    );
    assert!(model.backbone.layer1[0].conv1.weight.grad(&grads).is_none());
    assert!(model.backbone.layer2[0].conv1.weight.grad(&grads).is_some());

    let e = "focal"
        .parse::<seesaw_model::losses::LossKind>()
        .expect_err("no focal loss")
        .to_string();
    assert!(e.contains("seesaw") && e.contains("eqlv2"), "{e}");
    let mut bad = tiny("ce");
    bad.rpn.anchor_strides = vec![4.0, 8.0];
    let e = bad.init(&device).expect_err("levels").to_string();
    assert!(e.contains("anchor_strides"), "{e}");
}
