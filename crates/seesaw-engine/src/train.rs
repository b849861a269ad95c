//! Training: SGD with momentum and weight decay, linear warm-up then step or cosine decay,
//! JSONL metrics, a progress bar, periodic validation, and checkpoints from which `--resume`
//! continues with exactly the losses an uninterrupted run would have had.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use seesaw_model::burn::grad_clipping::GradientClippingConfig;
use seesaw_model::burn::module::Module;
use seesaw_model::burn::optim::decay::WeightDecayConfig;
use seesaw_model::burn::optim::momentum::MomentumConfig;
use seesaw_model::burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use seesaw_model::burn::tensor::{Device, Tensor};
use seesaw_model::detectors::{Detector, LossParts};
use seesaw_model::losses::ClassStats;
use serde_json::json;

use crate::checkpoint::{Checkpoint, CheckpointMeta, save};
use crate::config::Config;
use crate::data::{Shard, Split, collate_to, padded_size, train_samples};
use crate::device::DeviceSpec;
use crate::error::{EngineError, Result};
use crate::predict::{evaluate, predict_split, progress_bar};

/// How a training run is driven (beyond its config).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub work_dir: PathBuf,
    /// Continue from `work_dir/latest.ckpt` when it exists.
    pub resume: bool,
    pub progress: bool,
    /// Stop (with a checkpoint) after this many iterations in all, as an interruption would.
    pub stop_at: Option<usize>,
    /// Where to train (`--device`).
    pub device: DeviceSpec,
}

/// What a run leaves.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The last checkpoint written.
    pub checkpoint: PathBuf,
    /// `(iteration, total loss)` of every iteration this call ran.
    pub losses: Vec<(usize, f64)>,
    /// Training iterations per second this call (data loading included).
    pub iters_per_sec: f64,
    /// This process's replica (0 on one process): only rank 0 writes and reports.
    pub rank: usize,
}

/// The training split's class statistics, as the losses that look at the data use them
/// (EQL's frequencies, the federated loss's weights): over the images training keeps under
/// `filter_empty_gt`, as the repeat factors are.
pub fn class_stats(train: &Split, filter_empty_gt: bool) -> ClassStats {
    ClassStats {
        image_counts: train.image_counts(),
        total_images: train.training_images(filter_empty_gt).kept.len() as u64,
    }
}

/// The SGD optimizer of the config.
pub fn build_optimizer(cfg: &Config) -> ModuleOptimizer {
    let t = &cfg.train;
    let mut sgd = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_momentum(t.momentum)
                .with_dampening(0.0),
        ))
        .with_weight_decay(Some(WeightDecayConfig::new(t.weight_decay as f32)));
    if t.grad_clip > 0.0 {
        sgd = sgd.with_gradient_clipping(Some(GradientClippingConfig::Norm(t.grad_clip as f32)));
    }
    sgd.init()
}

fn append_line(file: &Path, value: &serde_json::Value) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| EngineError::io(file, "cannot open", e))?;
    writeln!(f, "{value}").map_err(|e| EngineError::io(file, "cannot write", e))
}

/// Keeps the metrics of iterations up to `iter` (a resumed run rewrites what follows).
fn truncate_metrics(file: &Path, iter: usize) -> Result<()> {
    let Ok(text) = fs::read_to_string(file) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("iter").and_then(|i| i.as_u64()))
                .is_some_and(|i| i as usize <= iter)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    seesaw_data::io::write_atomic(file, |w| w.write_all(kept.as_bytes()))?;
    Ok(())
}

/// Reads the loss parts back, then the per-stage parts (one transfer).
fn loss_values(parts: &LossParts) -> Result<Vec<f64>> {
    let mut all = parts.to_vec();
    all.extend(parts.stages.iter().map(|(_, t)| t.clone()));
    let v = Tensor::cat(all, 0).detach();
    seesaw_model::readback::to_f64(v)
        .map_err(|e| EngineError::Request(format!("reading the loss: {e}")))
}

/// Trains `cfg` in `opts.work_dir`.
pub fn train(cfg: &Config, opts: &TrainOptions) -> Result<TrainOutcome> {
    let wd = &opts.work_dir;
    let cfg_text = cfg.to_toml()?;
    // The model's settings are checked before the data is read: building it is cheap (its
    // weights are drawn when first used), and a bad key should not wait for a large file.
    cfg.model.init(&Device::flex())?;
    // Data parallelism: this process is one replica of `world` when a launcher started several.
    let group = crate::distributed::join(opts.device)?;
    let shard = group.as_ref().map_or(Shard::WHOLE, |g| Shard {
        rank: g.rank(),
        world: g.world_size(),
    });
    let root = shard.rank == 0;
    if cfg.train.batch_size % shard.world != 0 {
        return Err(EngineError::Request(format!(
            "train.batch_size {} is the global batch: it must be a multiple of the {} replicas \
             (mmdetection's samples_per_gpu x GPUs)",
            cfg.train.batch_size, shard.world
        )));
    }
    if shard.world > 1 {
        use seesaw_model::layers::NormKind;
        let m = &cfg.model;
        let several_mask_heads = m.detector.is_cascade() && m.detector.name() != "htc_lite";
        if m.bbox_head.norm.kind == NormKind::SyncBn
            || (m.mask_head.norm.kind == NormKind::SyncBn && several_mask_heads)
        {
            return Err(EngineError::Request(format!(
                "SyncBN in {} across replicas is not supported: the order of their backward \
                 all-reduces depends on each replica's RoIs; use \"bn\" or \"gn\" there \
                 (SyncBN in the backbone, the neck and a single mask head is)",
                if m.bbox_head.norm.kind == NormKind::SyncBn {
                    "model.bbox_head.norm"
                } else {
                    "the mask heads of every stage"
                }
            )));
        }
    }
    let _installed = group.clone().map(seesaw_model::distributed::install);
    let train = Split::load(&cfg.data.train_json, &cfg.data.train_images)?;
    if train.num_classes() != cfg.model.num_classes {
        return Err(EngineError::config(
            &cfg.data.train_json,
            format!(
                "has {} categories but model.num_classes is {}",
                train.num_classes(),
                cfg.model.num_classes
            ),
        ));
    }
    let val = if cfg.train.eval_every > 0 {
        Some(Split::load(&cfg.data.val_json, &cfg.data.val_images)?)
    } else {
        None
    };
    let t = &cfg.train;
    let spec = match opts.device {
        // One GPU per rank on a node: `--device cuda` is GPU `local rank`, `cuda:N` (and
        // wgpu's `wgpu:N`, the N-th discrete GPU) counts from N.
        DeviceSpec::Cuda(i) if group.is_some() => {
            DeviceSpec::Cuda(i + crate::distributed::local_rank())
        }
        DeviceSpec::Wgpu(crate::device::WgpuAdapter::Discrete(i)) if group.is_some() => {
            DeviceSpec::Wgpu(crate::device::WgpuAdapter::Discrete(
                i + crate::distributed::local_rank(),
            ))
        }
        other => other,
    };
    let device = spec.open()?.autodiff();
    // Seeded and drawn whole under seesaw-model's lock on the device's generator (one per
    // process): the weights depend on the seed alone, whatever else this process builds.
    let mut model = cfg.model.init_with(
        &class_stats(&train, cfg.data.filter_empty_gt),
        t.seed,
        &device,
    )?;
    // The work dir and its config.toml only once the data reads and the model builds: a
    // config error leaves an earlier run's files as they were. Rank 0 writes for all.
    if root {
        fs::create_dir_all(wd).map_err(|e| EngineError::io(wd, "cannot create the work dir", e))?;
        seesaw_data::io::write_atomic(&wd.join("config.toml"), |w| {
            w.write_all(cfg_text.as_bytes())
        })?;
    }
    let mut optim = build_optimizer(cfg);
    let latest = wd.join("latest.ckpt");
    let metrics = wd.join("metrics.jsonl");
    let mut start = 0;
    if opts.resume && latest.exists() {
        let ck = Checkpoint::load(&latest)?;
        if ck.meta.config != cfg_text {
            tracing::warn!(
                "{} was written with a different config; resuming with the new one",
                latest.display()
            );
        }
        model = ck.load_model(&latest, model)?;
        ck.load_loss_states(&latest, &mut model)?;
        optim = ck.load_optimizer(&latest, optim)?;
        start = ck.meta.iter;
        if root {
            truncate_metrics(&metrics, start)?;
        }
        tracing::info!("resuming from {} at iteration {start}", latest.display());
    } else {
        if opts.resume {
            tracing::warn!("no {} to resume from; starting afresh", latest.display());
        }
        if t.load_from.is_empty() && cfg.model.bbox_head.dual_cls {
            return Err(EngineError::Request(
                "model.bbox_head.dual_cls fine-tunes a second classification branch on a \
                 trained model with everything else frozen: set train.load_from to its \
                 checkpoint"
                    .into(),
            ));
        }
        if !t.load_from.is_empty() && cfg.model.bbox_head.dual_cls {
            // Dual head classification: the trained model as it was, then the new branches.
            let from = Path::new(&t.load_from);
            let ck = Checkpoint::load(from)?;
            let mut trained_cfg = cfg.model.clone();
            trained_cfg.bbox_head.dual_cls = false;
            let base = trained_cfg.init_with(
                &class_stats(&train, cfg.data.filter_empty_gt),
                t.seed,
                &device,
            )?;
            let base = ck.load_model(from, base)?;
            model = base
                .into_dual_cls_finetune(&cfg.model, t.seed)
                .map_err(|e| EngineError::Request(e.to_string()))?;
            tracing::info!(
                "weights from {}; training a second classification branch per box head, \
                 everything else frozen",
                from.display()
            );
        } else if !t.load_from.is_empty() {
            let from = Path::new(&t.load_from);
            let ck = Checkpoint::load(from)?;
            model = ck.load_model(from, model)?;
            tracing::info!("weights from {}", from.display());
        } else {
            crate::weights::init_backbone(cfg, &mut model)?;
        }
        if root {
            let _ = fs::remove_file(&metrics);
        }
    }
    if let Some(g) = &group {
        // Every replica starts from rank 0's weights.
        model = crate::distributed::broadcast_parameters(model, g.as_ref());
        tracing::info!(
            "replica {} of {}: {} of each global batch of {} images",
            shard.rank,
            shard.world,
            cfg.train.batch_size / shard.world,
            cfg.train.batch_size
        );
    }
    let training = train.training_images(cfg.data.filter_empty_gt);
    if training.dropped() > 0 {
        tracing::info!(
            "{}: training on {}",
            cfg.data.train_json.display(),
            training.describe()
        );
    }
    let mut sampler = train.train_sampler(
        cfg.data.sampler,
        cfg.data.rfs_threshold,
        cfg.data.rfs_rounding,
        cfg.data.filter_empty_gt,
        t.seed,
        t.batch_size,
    )?;
    let end = opts.stop_at.map_or(t.iters, |s| s.min(t.iters));
    let meta_for = |iter: usize, model: &Detector, last: Option<f64>| CheckpointMeta {
        iter,
        config: cfg_text.clone(),
        class_names: train.class_names(),
        category_ids: train.category_ids.clone(),
        loss_states: model.loss_states().into_iter().collect(),
        last_loss: last,
    };
    let mut last_ckpt = latest.clone();
    let mut losses = Vec::new();
    let pb = progress_bar(t.iters as u64, opts.progress && root, "train");
    pb.set_position(start as u64);
    let t0 = Instant::now();
    let with_masks = cfg.model.with_mask;
    // Seconds spent loading data, in the forward pass (with the losses read back), and in the
    // backward pass and the SGD step, summed over this call.
    let mut phase = [0f64; 3];
    // Batches are loaded ahead on a worker thread; each is a function of its iteration alone,
    // so prefetching changes nothing in what is trained.
    let (tx, rx) = std::sync::mpsc::sync_channel(cfg.data.prefetch.max(1));
    let producer_split = &train;
    let data_cfg = &cfg.data;
    std::thread::scope(|scope| -> Result<()> {
        // Owned here so that an early return drops it and frees a producer blocked on a full queue.
        let rx = rx;
        scope.spawn(move || {
            for iter in start..end {
                let item = train_samples(
                    producer_split,
                    &mut sampler,
                    iter,
                    t.seed,
                    data_cfg,
                    with_masks,
                    shard,
                );
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    break;
                }
            }
        });
        for iter in start..end {
            let lr = t.lr_at(iter);
            let tick = Instant::now();
            let (samples, mut rngs) = rx
                .recv()
                .map_err(|_| EngineError::Request("the data loader stopped".into()))??;
            // Replicas pad to the global batch's size, as one process would.
            let mut pad = padded_size(&samples, cfg.data.size_divisor);
            if let Some(g) = &group {
                let mut v = [pad.0 as u64, pad.1 as u64];
                g.max_u64(&mut v);
                pad = (v[0] as usize, v[1] as usize);
            }
            let batch = collate_to(samples, pad, &device);
            phase[0] += tick.elapsed().as_secs_f64();
            let tick = Instant::now();
            let parts = model.forward_train(batch.images, &batch.metas, &batch.gts, &mut rngs)?;
            let mut values = loss_values(&parts)?;
            if let Some(g) = &group {
                // Each replica's losses are its share of the global batch's.
                g.sum_f64(&mut values);
            }
            phase[1] += tick.elapsed().as_secs_f64();
            let tick = Instant::now();
            let total: f64 = values[..LossParts::NAMES.len()].iter().sum();
            if !total.is_finite() {
                let named: Vec<String> = LossParts::NAMES
                    .iter()
                    .zip(&values)
                    .map(|(n, v)| format!("{n} {v}"))
                    .collect();
                return Err(EngineError::Diverged(format!(
                    "the loss is {total} at iteration {} ({}); stopped. The last good checkpoint is {} \
                 (lower train.lr or set train.grad_clip)",
                    iter + 1,
                    named.join(", "),
                    if last_ckpt.exists() {
                        last_ckpt.display().to_string()
                    } else {
                        "none (none was written yet)".into()
                    }
                )));
            }
            let mut grads = GradientsParams::from_grads(parts.total().backward(), &model);
            if let Some(g) = &group {
                crate::distributed::all_reduce_gradients(&mut grads, &model, g.as_ref())?;
            }
            model = optim.step(lr, model, grads);
            phase[2] += tick.elapsed().as_secs_f64();
            losses.push((iter + 1, total));
            let done = iter + 1;
            if root && (done % t.log_every.max(1) == 0 || done == end || iter == start) {
                let mut line = json!({"iter": done, "lr": lr, "loss": total});
                for (n, v) in LossParts::NAMES.iter().zip(&values) {
                    line[*n] = json!(v);
                }
                let stage_values = &values[LossParts::NAMES.len()..];
                for ((n, _), v) in parts.stages.iter().zip(stage_values) {
                    line[n.as_str()] = json!(v);
                }
                let n = (iter + 1 - start) as f64;
                line["sec_per_iter"] = json!(t0.elapsed().as_secs_f64() / n);
                line["data_sec"] = json!(phase[0] / n);
                line["forward_sec"] = json!(phase[1] / n);
                line["backward_step_sec"] = json!(phase[2] / n);
                append_line(&metrics, &line)?;
            }
            pb.set_message(format!(
                "loss {total:.3} (rpn {:.3}/{:.3} cls {:.3} bbox {:.3} mask {:.3}) lr {lr:.2e}",
                values[0], values[1], values[2], values[3], values[4]
            ));
            pb.inc(1);
            let ckpt_due = t.checkpoint_every > 0 && done % t.checkpoint_every == 0;
            if root && (ckpt_due || done == end) {
                let file = wd.join(format!("iter_{done:06}.ckpt"));
                save(
                    &file,
                    &meta_for(done, &model, Some(total)),
                    &model,
                    Some(&optim),
                )?;
                link_latest(&file, &latest)?;
                last_ckpt = file;
            }
            if let Some(val) = &val
                && root
                && done % t.eval_every == 0
            {
                let m = model.valid();
                let dets = predict_split(&m, val, cfg, false)?;
                let (bbox, segm) = evaluate(&val.dataset, dets, with_masks)?;
                let mut line = json!({"iter": done, "val": {"bbox": bbox.to_json()["stats"]}});
                if let Some(s) = segm {
                    line["val"]["segm"] = s.to_json()["stats"].clone();
                }
                append_line(&metrics, &line)?;
            }
        }
        Ok(())
    })?;
    pb.finish_and_clear();
    let ran = end.saturating_sub(start);
    Ok(TrainOutcome {
        checkpoint: last_ckpt,
        losses,
        iters_per_sec: ran as f64 / t0.elapsed().as_secs_f64().max(1e-9),
        rank: shard.rank,
    })
}

/// Points `latest` at `file`: a hard link renamed into place (a copy where links fail).
fn link_latest(file: &Path, latest: &Path) -> Result<()> {
    let tmp = latest.with_extension("ckpt.tmp-link");
    let _ = fs::remove_file(&tmp);
    if fs::hard_link(file, &tmp).is_err() {
        fs::copy(file, &tmp).map_err(|e| EngineError::io(&tmp, "cannot copy the checkpoint", e))?;
    }
    fs::rename(&tmp, latest).map_err(|e| EngineError::io(latest, "cannot rename onto", e))
}

/// A trained model for inference (no autodiff), with its class mapping, from a checkpoint;
/// `cfg` is the checkpoint's own config unless one is given.
pub struct Loaded {
    pub model: Detector,
    pub config: Config,
    pub meta: CheckpointMeta,
}

pub fn load_for_inference(file: &Path, cfg: Option<&Config>) -> Result<Loaded> {
    load_for_inference_on(file, cfg, &Device::flex())
}

/// As [`load_for_inference`], with the model on `device`.
pub fn load_for_inference_on(file: &Path, cfg: Option<&Config>, device: &Device) -> Result<Loaded> {
    let ck = Checkpoint::load(file)?;
    let config = match cfg {
        Some(c) => c.clone(),
        None => Config::from_toml(&ck.meta.config, file, &[])?,
    };
    if ck.meta.class_names.len() != config.model.num_classes {
        return Err(EngineError::checkpoint(
            file,
            format!(
                "holds {} classes but the config's model.num_classes is {}",
                ck.meta.class_names.len(),
                config.model.num_classes
            ),
        ));
    }
    let mut model = ck.load_model(file, config.model.init(device)?)?;
    // Prediction needs the losses' activations only; their state is kept for inspection.
    // A converted checkpoint (`seesaw weights convert`) has none.
    if !ck.meta.loss_states.is_empty() {
        ck.load_loss_states(file, &mut model)?;
    }
    Ok(Loaded {
        model,
        config,
        meta: ck.meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_statistics_count_the_images_training_keeps() {
        // 10 images, 4 without annotations; class a on 6 images, class b on 2 of them.
        let images: Vec<String> = (1..=10)
            .map(|i| format!(r#"{{"id":{i},"width":10,"height":10,"file_name":"{i}.png"}}"#))
            .collect();
        let boxes = (1..=6).map(|i| (i, 1)).chain((1..=2).map(|i| (i, 2)));
        let anns: Vec<String> = boxes
            .enumerate()
            .map(|(k, (i, c))| {
                format!(
                    r#"{{"id":{},"image_id":{i},"category_id":{c},"bbox":[0,0,5,5],"area":25,"iscrowd":0}}"#,
                    k + 1
                )
            })
            .collect();
        let json = format!(
            r#"{{"images":[{}],"annotations":[{}],"categories":[{{"id":1,"name":"a"}},{{"id":2,"name":"b"}}]}}"#,
            images.join(","),
            anns.join(",")
        );
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("train.json");
        std::fs::write(&file, json).expect("write");
        let split = Split::load(&file, dir.path()).expect("split");
        let kept = class_stats(&split, true);
        assert_eq!(kept.image_counts, vec![6, 2]);
        assert_eq!(
            kept.total_images, 6,
            "EQL's frequencies are over the kept images"
        );
        assert_eq!(class_stats(&split, false).total_images, 10);
    }
}
