//! One value for any of the classification losses, built by name from the training set's class
//! statistics, so that a head, a benchmark or a config can swap losses without knowing them;
//! with its state ([`LossState`]) to save in a checkpoint and restore, so that a resumed run
//! continues exactly.

use burn::tensor::Tensor;
use burn::tensor::activation::{sigmoid, softmax};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::losses::config::{ClassStats, LossesConfig};
use crate::losses::{
    CrossEntropyLoss, EqlLoss, Eqlv2Loss, FederatedLoss, LossKind, SeesawLoss, SeesawLossConfig,
    SigmoidBceLoss,
};

/// What a classification loss accumulates while it trains, as a checkpoint keeps it
/// (mmdetection keeps Seesaw's `cum_samples` as a buffer in the state dict; the others are
/// kept the same way here). Floating-point statistics are stored as their IEEE-754 bit
/// patterns, so a restored loss is bit-identical.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LossState {
    /// Cross-entropy, sigmoid BCE and EQL: nothing accumulates (EQL's frequencies come from
    /// the training set).
    Stateless,
    /// Seesaw's cumulative class counts, `[C + 1]`.
    Seesaw { cum_samples: Vec<u64> },
    /// EQLv2's accumulated gradients and their ratio, `[C]` each, as `f64::to_bits`.
    Eqlv2 {
        pos_grad: Vec<u64>,
        neg_grad: Vec<u64>,
        pos_neg: Vec<u64>,
    },
    /// Where the federated loss's generator (ChaCha8) stands.
    Federated {
        seed: [u8; 32],
        stream: u64,
        /// The word position, a u128 written in decimal.
        word_pos: String,
    },
}

impl LossState {
    /// The state's name (`stateless`, `seesaw`, `eqlv2`, `federated`).
    pub fn name(&self) -> &'static str {
        match self {
            LossState::Stateless => "stateless",
            LossState::Seesaw { .. } => "seesaw",
            LossState::Eqlv2 { .. } => "eqlv2",
            LossState::Federated { .. } => "federated",
        }
    }
}

fn to_bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn from_bits(v: &[u64], len: usize, what: &str) -> Result<Vec<f64>> {
    if v.len() != len {
        return Err(ModelError::Input(format!(
            "EQLv2 state: {what} has {} values, the loss has {len} classes",
            v.len()
        )));
    }
    Ok(v.iter().map(|&b| f64::from_bits(b)).collect())
}

/// A classification loss with its state.
#[derive(Debug, Clone)]
pub enum AnyLoss {
    CrossEntropy(CrossEntropyLoss),
    SigmoidBce(SigmoidBceLoss),
    Eql(EqlLoss),
    Eqlv2(Eqlv2Loss),
    /// The federated loss draws its negative classes from this generator.
    Federated(FederatedLoss, Box<ChaCha8Rng>),
    Seesaw(SeesawLoss),
}

impl AnyLoss {
    /// `image_counts[c]`: training images with class c, out of `total_images` (EQL's
    /// frequencies, the federated loss's sampling weights). Defaults are each paper's.
    pub fn new(kind: LossKind, image_counts: &[u64], total_images: u64, seed: u64) -> Self {
        let stats = ClassStats {
            image_counts: image_counts.to_vec(),
            total_images,
        };
        Self::build(kind, &LossesConfig::default(), &stats, seed)
    }

    /// The loss `kind` with its settings from `cfg` (`[model.losses]`), the training set's
    /// class statistics and the seed of the federated loss's draws.
    pub fn build(kind: LossKind, cfg: &LossesConfig, stats: &ClassStats, seed: u64) -> Self {
        let counts = &stats.image_counts;
        let c = counts.len();
        match kind {
            LossKind::CrossEntropy => {
                AnyLoss::CrossEntropy(CrossEntropyLoss::with_params(c, &cfg.ce))
            }
            LossKind::SigmoidBce => AnyLoss::SigmoidBce(SigmoidBceLoss::with_params(c, &cfg.bce)),
            LossKind::Eql => AnyLoss::Eql(EqlLoss::with_params(
                counts
                    .iter()
                    .map(|&n| n as f64 / stats.total_images.max(1) as f64)
                    .collect(),
                &cfg.eql,
            )),
            LossKind::Eqlv2 => AnyLoss::Eqlv2(Eqlv2Loss::with_params(c, &cfg.eqlv2)),
            LossKind::Federated => AnyLoss::Federated(
                FederatedLoss::with_params(counts, &cfg.federated),
                Box::new(ChaCha8Rng::seed_from_u64(seed)),
            ),
            LossKind::Seesaw => {
                AnyLoss::Seesaw(SeesawLossConfig::from_params(c, &cfg.seesaw).init())
            }
        }
    }

    /// What the loss has accumulated (see [`LossState`]).
    pub fn state(&self) -> LossState {
        match self {
            AnyLoss::CrossEntropy(_) | AnyLoss::SigmoidBce(_) | AnyLoss::Eql(_) => {
                LossState::Stateless
            }
            AnyLoss::Seesaw(l) => LossState::Seesaw {
                cum_samples: l.counts().to_vec(),
            },
            AnyLoss::Eqlv2(l) => LossState::Eqlv2 {
                pos_grad: to_bits(&l.pos_grad),
                neg_grad: to_bits(&l.neg_grad),
                pos_neg: to_bits(&l.pos_neg),
            },
            AnyLoss::Federated(_, rng) => LossState::Federated {
                seed: rng.get_seed(),
                stream: rng.get_stream(),
                word_pos: rng.get_word_pos().to_string(),
            },
        }
    }

    /// Restores what [`AnyLoss::state`] saved.
    ///
    /// # Errors
    /// A state of another loss, or of another number of classes.
    pub fn load_state(&mut self, state: &LossState) -> Result<()> {
        match (self, state) {
            (
                AnyLoss::CrossEntropy(_) | AnyLoss::SigmoidBce(_) | AnyLoss::Eql(_),
                LossState::Stateless,
            ) => Ok(()),
            (AnyLoss::Seesaw(l), LossState::Seesaw { cum_samples }) => {
                l.set_counts(cum_samples.clone())
            }
            (
                AnyLoss::Eqlv2(l),
                LossState::Eqlv2 {
                    pos_grad,
                    neg_grad,
                    pos_neg,
                },
            ) => {
                let c = l.num_classes;
                let pos = from_bits(pos_grad, c, "pos_grad")?;
                let neg = from_bits(neg_grad, c, "neg_grad")?;
                let ratio = from_bits(pos_neg, c, "pos_neg")?;
                (l.pos_grad, l.neg_grad, l.pos_neg) = (pos, neg, ratio);
                Ok(())
            }
            (
                AnyLoss::Federated(_, rng),
                LossState::Federated {
                    seed,
                    stream,
                    word_pos,
                },
            ) => {
                let pos: u128 = word_pos.parse().map_err(|_| {
                    ModelError::Input(format!(
                        "federated loss state: word_pos {word_pos:?} is not a number"
                    ))
                })?;
                let mut r = ChaCha8Rng::from_seed(*seed);
                r.set_stream(*stream);
                r.set_word_pos(pos);
                **rng = r;
                Ok(())
            }
            (me, other) => Err(ModelError::Input(format!(
                "a {} loss state can not be loaded into the {} loss",
                other.name(),
                me.kind().name()
            ))),
        }
    }

    /// The loss's name.
    pub fn kind(&self) -> LossKind {
        match self {
            AnyLoss::CrossEntropy(_) => LossKind::CrossEntropy,
            AnyLoss::SigmoidBce(_) => LossKind::SigmoidBce,
            AnyLoss::Eql(_) => LossKind::Eql,
            AnyLoss::Eqlv2(_) => LossKind::Eqlv2,
            AnyLoss::Federated(..) => LossKind::Federated,
            AnyLoss::Seesaw(_) => LossKind::Seesaw,
        }
    }

    /// The scalar training loss. `cls_score` `[N, kind.cls_channels(C)]`, `labels` `[N]` in
    /// `0..=C`; `avg_factor` as the box head passes it (losses that do not take one ignore it).
    pub fn forward(
        &mut self,
        cls_score: Tensor<2>,
        labels: &[usize],
        avg_factor: Option<f64>,
    ) -> Result<Tensor<1>> {
        match self {
            AnyLoss::CrossEntropy(l) => l.forward(cls_score, labels, None, avg_factor),
            AnyLoss::SigmoidBce(l) => l.forward(cls_score, labels, None, avg_factor),
            AnyLoss::Eql(l) => l.forward(cls_score, labels),
            AnyLoss::Eqlv2(l) => l.forward(cls_score, labels),
            AnyLoss::Federated(l, rng) => l.forward(cls_score, labels, rng.as_mut()),
            AnyLoss::Seesaw(l) => Ok(l
                .forward(cls_score, labels, None, avg_factor, None)?
                .total()),
        }
    }

    /// Makes the collective calls [`AnyLoss::forward`] makes under data parallelism, with
    /// nothing contributed: for a replica that skips the loss while the others compute it
    /// (their sums and counts then equal one process's on the whole batch).
    pub fn skip_collectives(&mut self, num_classes: usize) {
        use crate::distributed::{current, global_sum, sum_counts};
        match self {
            AnyLoss::CrossEntropy(_) | AnyLoss::SigmoidBce(_) => {}
            AnyLoss::Eql(_) | AnyLoss::Federated(..) => {
                global_sum(0.0);
            }
            AnyLoss::Eqlv2(_) => {
                if let Some(g) = current() {
                    g.sum_f64(&mut vec![0.0; 2 * num_classes + 1]);
                }
            }
            AnyLoss::Seesaw(_) => sum_counts(&mut vec![0; num_classes + 1]),
        }
    }

    /// Each row's probability of its label `labels[r]` in `0..=C` (C: background), `[N]`:
    /// the softmax's for cross-entropy, Seesaw's test-time activation (class softmax times
    /// P(object), and P(background)) for Seesaw. TSD's progressive constraint compares these.
    ///
    /// # Errors
    /// The sigmoid losses (no probability of the background); logits or labels that do not
    /// fit.
    pub fn label_probs(
        &self,
        cls_score: Tensor<2>,
        labels: &[usize],
        num_classes: usize,
    ) -> Result<Tensor<1>> {
        let [n, _] = cls_score.dims();
        let probs = match self {
            AnyLoss::CrossEntropy(_) => softmax(cls_score, 1),
            AnyLoss::Seesaw(l) => l.get_activation(cls_score)?,
            other => {
                return Err(ModelError::Input(format!(
                    "loss {} has no probability of the background, which TSD's progressive \
                     constraint compares (set model.loss to ce or seesaw)",
                    other.kind().name()
                )));
            }
        };
        if labels.len() != n || labels.iter().any(|&y| y > num_classes) {
            return Err(ModelError::Input(format!(
                "label probabilities: {} labels in 0..={num_classes} for {n} rows",
                labels.len()
            )));
        }
        let device = probs.device();
        let idx = crate::losses::common::index_tensor(labels, &device).reshape([n, 1]);
        Ok(probs.gather(1, idx).reshape([n]))
    }

    /// Class scores `[N, C]` for prediction (background and objectness left out).
    pub fn class_scores(&self, cls_score: Tensor<2>, num_classes: usize) -> Result<Tensor<2>> {
        let [n, _] = cls_score.dims();
        let c = num_classes;
        Ok(match self {
            AnyLoss::CrossEntropy(_) => softmax(cls_score, 1).slice([0..n, 0..c]),
            AnyLoss::Seesaw(l) => l.get_activation(cls_score)?.slice([0..n, 0..c]),
            AnyLoss::SigmoidBce(_)
            | AnyLoss::Eql(_)
            | AnyLoss::Eqlv2(_)
            | AnyLoss::Federated(..) => sigmoid(cls_score.slice([0..n, 0..c])),
        })
    }
}
