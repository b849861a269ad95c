//! The fine-tuning step of the MMDet team's LVIS 2020 entry, "dual head classification" (Wang
//! et al., "Seesaw Loss for Long-Tailed Instance Segmentation", arXiv:2008.10032v4, Appendix D.2
//! and Table 12, where it adds 0.5 mask AP after Seesaw Loss: "after obtaining the model with
//! Seesaw Loss trained by a random sampler, we freeze all components in the original model.
//! Then we finetune a new classification branch for each cascading stage on the fixed model
//! using repeat factor sampler by 1x schedule. During inference, the classification scores of
//! original classification branches and the scores of new classification branches are
//! averaged to get the final scores.").
//!
//! [`DualClsBranch`] is that new branch on a box head: its own fully connected layers (as many
//! and as wide as the head's) over the features the head's first fully connected layer reads,
//! and its own classifier of the head's kind (plain or NormedLinear, the loss's width). The
//! report leaves its loss unsaid; here it trains with the head's own classification loss kind
//! (Seesaw in the recipe), whose state (Seesaw's class counts) starts afresh with the
//! fine-tuning's sampler. The recipe is
//! configs/htc_lite_r50_fpn_seesaw_dual_cls_finetune_1x_lvis.toml.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::heads::rpn_head::zeros_param;
use crate::layers::{NormedLinear, NormedLinearConfig};

/// The new classification branch of one box head.
#[derive(Module, Debug)]
pub struct DualClsBranch {
    pub fc1: Linear,
    pub fc2: Option<Linear>,
    pub cls: Option<Linear>,
    pub cls_normed: Option<NormedLinear>,
}

impl DualClsBranch {
    /// A branch reading `fc_in` features through `num_fcs` (1 or 2) layers of `fc` units to
    /// `cls_channels` logits: Xavier-uniform layers, a classifier normal with std 0.01 (or a
    /// NormedLinear with temperature `tau`), zero biases, as the head's own.
    pub fn new(
        fc_in: usize,
        fc: usize,
        num_fcs: usize,
        cls_channels: usize,
        normed: Option<f64>,
        device: &Device,
    ) -> Self {
        let linear = |i: usize, o: usize, init: Initializer| {
            let mut l = LinearConfig::new(i, o).with_initializer(init).init(device);
            l.bias = l.bias.take().map(zeros_param);
            l
        };
        let xavier = Initializer::XavierUniform { gain: 1.0 };
        let fc1 = linear(fc_in, fc, xavier.clone());
        let fc2 = (num_fcs == 2).then(|| linear(fc, fc, xavier));
        let (cls, cls_normed) = match normed {
            Some(tau) => {
                let mut c = NormedLinearConfig::new(fc, cls_channels);
                c.tempearture = tau;
                (None, Some(c.init(device)))
            }
            None => (
                Some(linear(
                    fc,
                    cls_channels,
                    Initializer::Normal {
                        mean: 0.0,
                        std: 0.01,
                    },
                )),
                None,
            ),
        };
        Self {
            fc1,
            fc2,
            cls,
            cls_normed,
        }
    }

    /// `x` `[R, fc_in]` (what the head's first fully connected layer reads) -> logits
    /// `[R, cls_channels]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [r, _] = x.dims();
        let mut x = relu(self.fc1.forward(x));
        if let Some(fc2) = &self.fc2 {
            x = relu(fc2.forward(x));
        }
        match (&self.cls, &self.cls_normed) {
            (_, Some(n)) => n.forward(x),
            (Some(l), None) => l.forward(x),
            (None, None) => Tensor::zeros([r, 1], &x.device()),
        }
    }
}
