//! Layers: one module per file.

pub mod carafe;
pub mod context_block;
pub mod conv_module;
pub mod deform_conv;
pub mod generalized_attention;
pub mod norm;
pub mod normed_conv2d;
pub mod normed_linear;

pub use carafe::{CarafePack, CarafePackConfig};
pub use context_block::ContextBlock;
pub use conv_module::{Activation, ConvInit, ConvModule, ConvModuleConfig};
pub use deform_conv::{ConvOrDcn, DeformConv2d, DeformConv2dConfig};
pub use generalized_attention::{GeneralizedAttention, GeneralizedAttentionConfig};
pub use norm::{ConvKind, Norm, NormConfig, NormKind, conv_forward};
pub use normed_conv2d::{NormedConv2d, NormedConv2dConfig};
pub use normed_linear::{NormedLinear, NormedLinearConfig};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

/// A zero `[1]` that depends on every float parameter of `module`: the loss of a part that has
/// nothing to learn from in a step (a mask head without positive RoIs), so that every parameter
/// still gets a (zero) gradient, as PyTorch's `pred.sum() * 0` does in mmdetection, and
/// data-parallel replicas never disagree on which parameters have gradients.
pub fn zero_touching<M: Module>(module: &M, device: &Device) -> Tensor<1> {
    struct Touch {
        acc: Tensor<1>,
    }
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let zero = param.val().sum().mul_scalar(0.0);
            self.acc = self.acc.clone() + zero;
        }
    }
    let mut t = Touch {
        acc: Tensor::zeros([1], device),
    };
    module.visit(&mut t);
    t.acc
}
