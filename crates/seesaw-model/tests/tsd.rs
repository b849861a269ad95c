//! TSD's box head against PyTorch: the official `TSDSharedFCBBoxHead` (Sense-X/TSD) re-created
//! in plain torch by tests/fixtures/weights/make_tsd.py (random weights, the official names,
//! the official deformable pooling kernel transliterated and checked there against literal
//! ports of its CUDA forward and backward; box arithmetic without the 1.x "+1", as ours):
//! the offsets, both deformable poolings, both branches and the sibling at 1e-4; the losses
//! (with an image without positives), the progressive constraint on hand-made cases and the
//! gradients that reach the offsets and the pyramid; the test-time translated proposals,
//! scores and boxes. Then training end to end under each RoI-head kind.

mod common;

use rand::SeedableRng;
use seesaw_model::burn;
use seesaw_model::burn::module::Module;
use seesaw_model::burn::tensor::{Device, Tensor, TensorData};
use seesaw_model::detectors::DetectorConfig;
use seesaw_model::heads::{BBoxHeadKind, BoxLossKind, TsdOutput};
use seesaw_model::ops::deform_roi_pool::{DeformRoiPoolConfig, deform_roi_pool_levels};
use seesaw_model::ops::roi_extractor::RoiExtractorConfig;
use seesaw_model::roi_heads::SampledRois;
use seesaw_model::structures::ImageMeta;
use seesaw_model::weights::WeightsFile;

const STRIDES: [f32; 4] = [4.0, 8.0, 16.0, 32.0];

/// The tiny detector with the fixture's TSD head: offset predictors of 24 units, 2 fully
/// connected layers of 32, cross-entropy (C + 1 logits), smooth L1, class-specific
/// regression.
fn tsd(loss: &str) -> DetectorConfig {
    let mut c = common::tiny(loss);
    c.bbox_head.kind = BBoxHeadKind::Tsd;
    c.bbox_head.offset_channels = 24;
    c.bbox_head.fc_channels = 32;
    c.bbox_head.loss_bbox = BoxLossKind::SmoothL1;
    c
}

fn host(d: TensorData) -> Vec<f32> {
    d.convert::<f32>().try_to_vec::<f32>().expect("f32")
}

fn ints(out: &WeightsFile, name: &str) -> Vec<usize> {
    out.data(name)
        .expect(name)
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("i64")
        .into_iter()
        .map(|v| v as usize)
        .collect()
}

fn rows5(v: &[f32]) -> Vec<[f32; 5]> {
    v.chunks_exact(5)
        .map(|r| [r[0], r[1], r[2], r[3], r[4]])
        .collect()
}

fn scalar(t: Tensor<1>) -> f32 {
    host(t.into_data())[0]
}

/// The sampled RoIs of a sampling set: per image its positives first (`num_pos[i]`), labels
/// from the fixture (5 = background), the positives' ground truths in order.
fn sampled(rois: &[[f32; 5]], labels: &[usize], num_pos: &[usize], gts: &[f32]) -> SampledRois {
    let mut s = SampledRois {
        rois: rois.to_vec(),
        labels: labels.to_vec(),
        is_gt: vec![false; rois.len()],
        ..Default::default()
    };
    let mut g = 0;
    for (i, &np) in num_pos.iter().enumerate() {
        let first = rois.iter().position(|r| r[0] as usize == i).expect("rows");
        for k in 0..np {
            s.pos_rows.push(first + k);
            s.pos_gt.push((i, g));
            s.pos_gt_boxes
                .push([gts[4 * g], gts[4 * g + 1], gts[4 * g + 2], gts[4 * g + 3]]);
            g += 1;
        }
    }
    s
}

struct Fixture {
    out: WeightsFile,
    rois: Vec<[f32; 5]>,
    levels: Vec<usize>,
}

fn fixture() -> Fixture {
    let out = common::fixture("mmdet_tsd_out.safetensors");
    let rois = rows5(&host(out.data("rois").expect("rois")));
    let levels = ints(&out, "levels");
    Fixture { out, rois, levels }
}

impl Fixture {
    fn t<const D: usize>(&self, name: &str, device: &Device) -> Tensor<D> {
        Tensor::from_data(self.out.data(name).expect(name), device)
    }

    fn feats(&self, device: &Device) -> Vec<Tensor<4>> {
        (0..4)
            .map(|l| self.t(&format!("feat{l}"), device))
            .collect()
    }
}

fn close<const D: usize>(got: Tensor<D>, want: Tensor<D>, tol: f32, what: &str) {
    let d = common::max_rel_diff(got, want);
    assert!(d < tol, "{what}: {d}");
}

#[test]
fn mmdet_tsd_head_matches_pytorch() {
    let f = fixture();
    let device = Device::flex();
    let det = common::load_mmdet_part(&tsd("ce"), "mmdet_tsd.pth", "roi_head.bbox_head.", &device);
    let head = &det.roi_head.ops().bbox_heads()[0];
    let branch = head.tsd.as_ref().expect("a TSD head");
    assert_eq!(
        RoiExtractorConfig::default().map_roi_levels(&f.rois),
        f.levels,
        "the levels of the fixture's RoIs"
    );
    let feats = f.feats(&device);
    let pool = |offset: Tensor<4>| {
        deform_roi_pool_levels(
            &feats,
            &STRIDES,
            &f.levels,
            &f.rois,
            offset,
            &DeformRoiPoolConfig::default(),
        )
    };
    let x: Tensor<4> = f.t("bbox_feats", &device);
    let (delta_c, delta_r) = branch.offsets(x.clone());
    close(delta_c.clone(), f.t("delta_c", &device), 1e-4, "delta_c");
    close(delta_r.clone(), f.t("delta_r", &device), 1e-4, "delta_r");
    // The poolings on the fixture's own offsets, so that each is checked on its own.
    let n = f.rois.len();
    let dc: Tensor<2> = f.t("delta_c", &device);
    let dr: Tensor<2> = f.t("delta_r", &device);
    close(
        pool(dc.reshape([n, 2, 7, 7])).expect("pc"),
        f.t("tsd_cls_feats", &device),
        1e-4,
        "tsd_cls_feats",
    );
    close(
        pool(dr.reshape([n, 2, 1, 1])).expect("pr"),
        f.t("tsd_loc_feats", &device),
        1e-4,
        "tsd_loc_feats",
    );
    let out = branch.forward(x.clone(), &pool).expect("tsd");
    close(
        out.cls,
        f.t("tsd_cls_score", &device),
        1e-4,
        "tsd_cls_score",
    );
    close(
        out.reg,
        f.t("tsd_bbox_pred", &device),
        1e-4,
        "tsd_bbox_pred",
    );
    let (cls, reg) = head.forward(x);
    close(cls, f.t("cls_score", &device), 1e-4, "sibling cls_score");
    close(reg, f.t("bbox_pred", &device), 1e-4, "sibling bbox_pred");
}

#[test]
fn tsd_losses_and_gradients_match_pytorch() {
    let f = fixture();
    let device = Device::flex().autodiff();
    let mut det =
        common::load_mmdet_part(&tsd("ce"), "mmdet_tsd.pth", "roi_head.bbox_head.", &device);
    let head = &mut det.roi_head.ops_mut().bbox_heads_mut()[0];
    let feats: Vec<Tensor<4>> = f
        .feats(&device)
        .into_iter()
        .map(|t| t.require_grad())
        .collect();
    let delta_c = f.t::<2>("delta_c", &device).require_grad();
    let delta_r = f.t::<2>("delta_r", &device).require_grad();
    let pool = |offset: Tensor<4>| {
        deform_roi_pool_levels(
            &feats,
            &STRIDES,
            &f.levels,
            &f.rois,
            offset,
            &DeformRoiPoolConfig::default(),
        )
    };
    let branch = head.tsd.as_ref().expect("TSD");
    let out = branch
        .forward_offsets(delta_c.clone(), delta_r.clone(), &pool)
        .expect("tsd");
    let (sib_cls, sib_reg) = head.forward(f.t("bbox_feats", &device));
    let gts = host(f.out.data("pos_gt_bboxes").expect("gt"));
    for prefix in ["", "b_"] {
        let num_pos = ints(&f.out, &format!("{prefix}num_pos"));
        let labels = ints(&f.out, &format!("{prefix}labels"));
        let s = sampled(&f.rois, &labels, &num_pos, &gts);
        let l = head
            .tsd_loss(&out, sib_cls.clone(), sib_reg.clone(), &s, 2)
            .expect("tsd loss");
        let (cls, bbox) = head
            .loss(sib_cls.clone(), sib_reg.clone(), &s)
            .expect("loss");
        let want = |k: &str| host(f.out.data(&format!("{prefix}{k}")).expect(k))[0];
        for (name, got) in [
            ("loss_cls", cls.clone()),
            ("loss_bbox", bbox.clone()),
            ("loss_tsd_cls", l.cls.clone()),
            ("loss_tsd_bbox", l.bbox.clone()),
            ("loss_pc_cls", l.pc_cls.clone()),
            ("loss_pc_loc", l.pc_loc.clone()),
        ] {
            let (g, w) = (scalar(got), want(name));
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{prefix}{name}: {g} vs {w}"
            );
        }
        if !prefix.is_empty() {
            continue;
        }
        // Gradients of set A's six losses reach the offsets (through both poolings, TSD's
        // box targets and the localisation constraint) and the pyramid.
        let total = cls + bbox + l.cls + l.bbox + l.pc_cls + l.pc_loc;
        let grads = total.backward();
        let g = |t: &Tensor<2>| -> Tensor<2> {
            Tensor::from_data(t.grad(&grads).expect("grad").into_data(), &Device::flex())
        };
        let plain = Device::flex();
        close(
            g(&delta_c),
            f.t("grad_delta_c", &plain),
            1e-5,
            "grad delta_c",
        );
        close(
            g(&delta_r),
            f.t("grad_delta_r", &plain),
            1e-5,
            "grad delta_r",
        );
        for (lvl, feat) in feats.iter().enumerate() {
            let got: Tensor<4> =
                Tensor::from_data(feat.grad(&grads).expect("grad").into_data(), &plain);
            close(
                got,
                f.t(&format!("grad_feat{lvl}"), &plain),
                1e-5,
                "grad feat",
            );
        }
    }
}

#[test]
fn the_progressive_constraint_on_hand_made_cases() {
    // One image; rows 0-3 positive, 4-5 negative; every branch of the two min()s and ReLUs
    // (values worked by hand in make_tsd.py: pc_cls = 0.05, 0, 0.2, 0.8, 0, 0.5).
    let f = fixture();
    let device = Device::flex();
    let mut det =
        common::load_mmdet_part(&tsd("ce"), "mmdet_tsd.pth", "roi_head.bbox_head.", &device);
    let head = &mut det.roi_head.ops_mut().bbox_heads_mut()[0];
    let rois = rows5(&host(f.out.data("pcu_rois").expect("rois")));
    let labels = ints(&f.out, "pcu_labels");
    let gts = host(f.out.data("pcu_pos_gt_bboxes").expect("gt"));
    let s = sampled(&rois, &labels, &[4], &gts);
    let delta_r: Tensor<2> = f.t("pcu_delta_r", &device);
    let branch = head.tsd.as_ref().expect("TSD");
    let translated = branch.translate(&rois, &host(delta_r.to_data()));
    assert_eq!(
        translated.iter().flatten().copied().collect::<Vec<f32>>(),
        host(f.out.data("pcu_rois_r").expect("rois_r"))
    );
    let out = TsdOutput {
        cls: f.t("pcu_tsd_cls_score", &device),
        reg: f.t("pcu_tsd_bbox_pred", &device),
        delta_c: Tensor::zeros([6, 98], &device),
        delta_r,
    };
    let l = head
        .tsd_loss(
            &out,
            f.t("pcu_cls_score", &device),
            f.t("pcu_bbox_pred", &device),
            &s,
            1,
        )
        .expect("loss");
    let mean = |k: &str| {
        let v = host(f.out.data(k).expect(k));
        v.iter().sum::<f32>() / v.len() as f32
    };
    for (got, want, what) in [
        (scalar(l.pc_cls), mean("pcu_pc_cls"), "pc_cls"),
        (scalar(l.pc_loc), mean("pcu_pc_loc"), "pc_loc"),
    ] {
        assert!((got - want).abs() < 1e-6, "{what}: {got} vs {want}");
    }
    assert!((mean("pcu_pc_cls") - (0.05 + 0.2 + 0.8 + 0.5) / 6.0).abs() < 1e-6);
}

#[test]
fn tsd_test_time_scores_and_boxes_match_pytorch() {
    let f = fixture();
    let device = Device::flex();
    let det = common::load_mmdet_part(&tsd("ce"), "mmdet_tsd.pth", "roi_head.bbox_head.", &device);
    let head = &det.roi_head.ops().bbox_heads()[0];
    let branch = head.tsd.as_ref().expect("TSD");
    let delta_r = host(f.out.data("delta_r").expect("dr"));
    let rois_r = branch.translate(&f.rois, &delta_r);
    close(
        Tensor::<2>::from_data(
            TensorData::new(
                rois_r.iter().flatten().copied().collect::<Vec<f32>>(),
                [12, 5],
            ),
            &device,
        ),
        f.t("test_rois_r", &device),
        1e-5,
        "rois_r",
    );
    let metas: Vec<ImageMeta> = (0..2)
        .map(|i| ImageMeta {
            image_id: i,
            ori_shape: (128, 160),
            img_shape: (128, 160),
            scale: (1.0, 1.0),
            flip: false,
        })
        .collect();
    let deltas = host(f.out.data("tsd_bbox_pred").expect("reg"));
    let boxes = head
        .decode_all_classes(&rois_r, &deltas, &metas)
        .expect("decode");
    let flat: Vec<f32> = boxes.iter().flatten().copied().collect();
    close(
        Tensor::<2>::from_data(TensorData::new(flat, [12, 20]), &device),
        f.t("test_bboxes", &device),
        1e-4,
        "test boxes",
    );
    let scores = head
        .class_scores(f.t("tsd_cls_score", &device))
        .expect("scores");
    let want: Tensor<2> = f.t("test_scores", &device);
    close(scores, want.slice([0..12, 0..5]), 1e-5, "test scores");
}

#[test]
fn tsd_trains_under_every_roi_head_kind_and_predicts() {
    let device = Device::flex().autodiff();
    let (metas, gts) = common::two_image_batch(64, 96);
    for (loss, detector) in [
        ("ce", "mask_rcnn"),
        ("seesaw", "mask_rcnn"),
        ("seesaw", "cascade"),
        ("seesaw", "htc_lite"),
    ] {
        let mut cfg = tsd(loss);
        cfg.detector = detector.parse().expect("detector");
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
        let names: Vec<&str> = parts.stages.iter().map(|(n, _)| n.as_str()).collect();
        for k in [
            "loss_tsd_cls",
            "loss_tsd_bbox",
            "loss_pc_cls",
            "loss_pc_loc",
        ] {
            assert!(
                names.iter().any(|n| n.ends_with(k)),
                "{loss} {detector}: {k} logged ({names:?})"
            );
        }
        let total = parts.total();
        let v = total.clone().into_data().try_to_vec::<f32>().expect("f32")[0];
        assert!(v.is_finite() && v > 0.0, "{loss} {detector}: {v}");
        let grads = total.backward();
        let head = &model.roi_head.ops().bbox_heads()[0];
        let branch = head.tsd.as_ref().expect("TSD");
        // The sibling, TSD's branches and both offset predictors learn.
        for (what, ok) in [
            ("sibling fc1", head.fc1.weight.grad(&grads).is_some()),
            ("delta_c", branch.delta_c[1].weight.grad(&grads).is_some()),
            ("delta_r", branch.delta_r[1].weight.grad(&grads).is_some()),
            ("TSD_pc_fcs", branch.pc_fcs[0].weight.grad(&grads).is_some()),
            ("TSD_fc_reg", branch.fc_reg.weight.grad(&grads).is_some()),
        ] {
            assert!(ok, "{loss} {detector}: {what} has a gradient");
        }
        let plain = Tensor::<4>::from_data(images.to_data(), &Device::flex());
        let dets = model.valid().predict(plain, &metas).expect("predict");
        assert_eq!(dets.len(), 2);
    }
}

#[test]
fn tsd_keys_on_another_head_and_sigmoid_losses_are_refused() {
    let mut cfg = common::tiny("ce");
    cfg.bbox_head.cls_pc_margin = 0.2;
    let err = cfg.init(&Device::flex()).expect_err("refused").to_string();
    assert!(
        err.contains("model.bbox_head.cls_pc_margin: TSD's"),
        "{err}"
    );
    let err = tsd("eqlv2")
        .init(&Device::flex())
        .expect_err("refused")
        .to_string();
    assert!(err.contains("type tsd") && err.contains("eqlv2"), "{err}");
}

#[test]
fn the_official_1x_checkpoint_upgrades_to_the_2x_layout() {
    // The official fork saves `bbox_head.*` at the top level with the background first;
    // upgraded as mmdetection's upgrade_model_version.py does, it is mmdet_tsd.pth exactly.
    let mut v1 = common::fixture("tsd_official_v1.pth");
    let v2 = common::fixture("mmdet_tsd.pth");
    assert!(v1.is_mmdet_v1() && !v2.is_mmdet_v1());
    let notes = v1.upgrade_mmdet_v1(5).expect("upgrade");
    assert_eq!(
        notes.len(),
        8,
        "fc_cls, fc_reg, TSD_fc_cls, TSD_fc_reg: {notes:?}"
    );
    let names: Vec<String> = v2.infos().into_iter().map(|t| t.name).collect();
    assert_eq!(v1.len(), names.len() + 2, "the two RPN tensors besides");
    for name in &names {
        let a = host(v1.data(name).expect("upgraded name"));
        let b = host(v2.data(name).expect("2.x name"));
        assert_eq!(a, b, "{name}");
    }
}
