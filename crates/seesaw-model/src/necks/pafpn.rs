//! PAFPN (Liu et al., "Path Aggregation Network for Instance Segmentation", CVPR 2018), as
//! mmdetection's `PAFPN` (mmdet/models/necks/pafpn.py) extends its FPN: after the FPN's
//! top-down path and 3x3 output convs, a bottom-up path adds each level, through a 3x3
//! stride-2 conv (`downsample_convs`), to the level above, and every level but the finest
//! passes one more 3x3 conv (`pafpn_convs`). Extra levels are max-pooled from the last output,
//! as in the FPN. Select it with `model.neck.type = "pafpn"`; the parts are fields of
//! [`super::Fpn`] (empty for a plain FPN), so FPN checkpoints keep their names.

use burn::tensor::Tensor;

use super::fpn::Fpn;

impl Fpn {
    /// PAFPN's bottom-up path over the FPN's outputs `inter` (finest first, one per input
    /// level) -> the same number of maps; identity for a plain FPN.
    pub(crate) fn bottom_up(&self, inter: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        if self.pafpn_convs.is_empty() {
            return inter;
        }
        let mut inter = inter;
        // Upward, each level already holding the sum from the level below.
        for i in 0..inter.len() - 1 {
            let down = self.conv_module(
                &self.downsample_convs[i],
                self.downsample_norms.get(i),
                inter[i].clone(),
            );
            inter[i + 1] = inter[i + 1].clone() + down;
        }
        let mut outs = Vec::with_capacity(inter.len());
        for (i, x) in inter.into_iter().enumerate() {
            outs.push(if i == 0 {
                x
            } else {
                self.conv_module(&self.pafpn_convs[i - 1], self.pafpn_norms.get(i - 1), x)
            });
        }
        outs
    }
}
