//! Checkpoints: one file holding the run's state (iterations done, resolved config, class
//! names, every loss's state: Seesaw's class counts, EQLv2's gradient statistics, the federated
//! loss's generator), the model's weights and buffers, and the optimizer's momentum. Written
//! to a temporary sibling and renamed, so a crash never leaves a torn file.
//!
//! Layout: `SEESAWCK`, version (u32 LE), then three length-prefixed (u64 LE) sections: meta
//! JSON, model (burnpack), optimizer (burnpack, may be empty).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use seesaw_model::burn::module::Module;
use seesaw_model::burn::optim::ModuleOptimizer;
use seesaw_model::burn::store::ModuleRecord;
use seesaw_model::burn::tensor::Bytes;
use seesaw_model::detectors::Detector;
use seesaw_model::losses::LossState;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

const MAGIC: &[u8; 8] = b"SEESAWCK";
/// Version 2: the RoI heads are their own modules (`roi_head.bbox_head.0.fc1`, ...) and every
/// loss's state is kept; version 1 files (before that split) name parameters differently.
const VERSION: u32 = 2;

/// What a checkpoint says about its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Training iterations done.
    pub iter: usize,
    /// The resolved config (TOML).
    pub config: String,
    pub class_names: Vec<String>,
    pub category_ids: Vec<u64>,
    /// The state of every stateful loss, by the name of the part that owns it
    /// (`roi_head.bbox_head.0.loss_cls`, ...); see [`Detector::loss_states`].
    pub loss_states: BTreeMap<String, LossState>,
    /// Total loss of each iteration logged so far (for checks; not needed to resume).
    #[serde(default)]
    pub last_loss: Option<f64>,
}

/// A checkpoint read from disk.
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    model: Vec<u8>,
    optimizer: Vec<u8>,
}

/// Writes a checkpoint of `model` (and `optimizer`, if given) to `file`, atomically.
pub fn save(
    file: &Path,
    meta: &CheckpointMeta,
    model: &Detector,
    optimizer: Option<&ModuleOptimizer>,
) -> Result<()> {
    let fail = |m: String| EngineError::checkpoint(file, m);
    let meta_json = serde_json::to_vec(meta).map_err(|e| fail(format!("meta: {e}")))?;
    let weights = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| fail(format!("model: {e}")))?;
    let optim = match optimizer {
        Some(o) => o
            .into_bytes()
            .map_err(|e| fail(format!("optimizer: {e}")))?,
        None => Bytes::from_bytes_vec(Vec::new()),
    };
    seesaw_data::io::write_atomic(file, |w| {
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        for part in [&meta_json[..], &weights[..], &optim[..]] {
            w.write_all(&(part.len() as u64).to_le_bytes())?;
            w.write_all(part)?;
        }
        Ok(())
    })?;
    Ok(())
}

impl Checkpoint {
    /// Reads and checks a checkpoint file's structure.
    pub fn load(file: &Path) -> Result<Self> {
        let bytes = std::fs::read(file)
            .map_err(|e| EngineError::io(file, "cannot read the checkpoint", e))?;
        let fail = |m: String| EngineError::checkpoint(file, m);
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(fail(
                "not a Seesaw checkpoint (it does not start with SEESAWCK)".into(),
            ));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version == 1 {
            return Err(fail(
                "checkpoint version 1, written before the RoI heads became their own modules: \
                 its parameter names and loss state do not fit this build (version 2); retrain, \
                 or convert its source weights again with `seesaw weights convert`"
                    .into(),
            ));
        }
        if version != VERSION {
            return Err(fail(format!(
                "checkpoint version {version}; this build reads version {VERSION}"
            )));
        }
        let mut at = 12;
        let mut parts = Vec::new();
        for name in ["meta", "model", "optimizer"] {
            let len = bytes
                .get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
                .ok_or_else(|| fail(format!("truncated before the {name} section")))?;
            at += 8;
            let part = bytes.get(at..at.saturating_add(len)).ok_or_else(|| {
                fail(format!(
                    "truncated: the {name} section needs {len} bytes, {} remain",
                    bytes.len() - at
                ))
            })?;
            parts.push(part.to_vec());
            at += len;
        }
        if at != bytes.len() {
            return Err(fail(format!(
                "{} unexpected bytes at the end",
                bytes.len() - at
            )));
        }
        let optimizer = parts.pop().unwrap_or_default();
        let model = parts.pop().unwrap_or_default();
        let meta: CheckpointMeta = serde_json::from_slice(&parts.pop().unwrap_or_default())
            .map_err(|e| fail(format!("meta section: {e}")))?;
        Ok(Checkpoint {
            meta,
            model,
            optimizer,
        })
    }

    /// Loads the weights into `model` (built from the same config).
    pub fn load_model(&self, file: &Path, model: Detector) -> Result<Detector> {
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(self.model.clone()))
            .map_err(|e| EngineError::checkpoint(file, format!("model section: {e}")))?;
        let differences = self.model_differences(model.config());
        model.try_load_record(record).map_err(|e| {
            let message = if differences.is_empty() {
                format!("model section: {e}")
            } else {
                format!(
                    "the checkpoint was trained with a different model: {} (set them as the \
                     checkpoint has, e.g. with --set); model section: {e}",
                    differences.join(", ")
                )
            };
            EngineError::checkpoint(file, message)
        })
    }

    /// The `model.*` keys whose values differ between the checkpoint's resolved config and
    /// `cfg` (`model.neck.type: checkpoint "fpn_carafe", this run "fpn"`), at most 12.
    pub fn model_differences(&self, cfg: &seesaw_model::detectors::DetectorConfig) -> Vec<String> {
        fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        flatten(&format!("{prefix}.{k}"), v, out);
                    }
                }
                other => {
                    out.insert(prefix.to_string(), other.to_string());
                }
            }
        }
        let Ok(theirs) = self.meta.config.parse::<toml::Table>() else {
            return vec![];
        };
        let Some(theirs) = theirs.get("model") else {
            return vec![];
        };
        let Ok(ours) = toml::Value::try_from(cfg) else {
            return vec![];
        };
        let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
        flatten("model", theirs, &mut a);
        flatten("model", &ours, &mut b);
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .take(12)
            .map(|k| {
                let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "unset".into());
                format!(
                    "{k}: checkpoint {}, this run {}",
                    show(a.get(k)),
                    show(b.get(k))
                )
            })
            .collect()
    }

    /// Puts the losses' state back into `model` (built from the same config).
    ///
    /// # Errors
    /// States of another loss or another number of stages or classes.
    pub fn load_loss_states(&self, file: &Path, model: &mut Detector) -> Result<()> {
        model
            .load_loss_states(&self.meta.loss_states)
            .map_err(|e| EngineError::checkpoint(file, format!("loss state: {e}")))
    }

    /// Restores the optimizer's state, when the checkpoint has one.
    pub fn load_optimizer(&self, file: &Path, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
        if self.optimizer.is_empty() {
            return Ok(optim);
        }
        optim
            .from_bytes(Bytes::from_bytes_vec(self.optimizer.clone()))
            .map_err(|e| EngineError::checkpoint(file, format!("optimizer section: {e}")))
    }
}
