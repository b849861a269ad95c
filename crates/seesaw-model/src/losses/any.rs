//! One value for any of the classification losses, built by name from the training set's class
//! statistics, so that a head, a benchmark or a config can swap losses without knowing them.

use burn::tensor::Tensor;
use burn::tensor::activation::{sigmoid, softmax};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::losses::{
    CrossEntropyLoss, EqlLoss, Eqlv2Loss, FederatedLoss, LossKind, SeesawLoss, SeesawLossConfig,
    SigmoidBceLoss,
};

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
        let c = image_counts.len();
        match kind {
            LossKind::CrossEntropy => AnyLoss::CrossEntropy(CrossEntropyLoss::new(c)),
            LossKind::SigmoidBce => AnyLoss::SigmoidBce(SigmoidBceLoss::new(c)),
            LossKind::Eql => AnyLoss::Eql(EqlLoss::new(
                image_counts
                    .iter()
                    .map(|&n| n as f64 / total_images.max(1) as f64)
                    .collect(),
            )),
            LossKind::Eqlv2 => AnyLoss::Eqlv2(Eqlv2Loss::new(c)),
            LossKind::Federated => AnyLoss::Federated(
                FederatedLoss::new(image_counts, 0.5),
                Box::new(ChaCha8Rng::seed_from_u64(seed)),
            ),
            LossKind::Seesaw => AnyLoss::Seesaw(SeesawLossConfig::new(c).init()),
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
