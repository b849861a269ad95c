//! ResNeXt (Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", CVPR
//! 2017): a ResNet whose bottleneck 3x3 convolution is grouped (`groups`, the cardinality) and
//! widened to `base_width` channels per group at the first stage. mmdetection's `ResNeXt`
//! (mmdet/models/backbones/resnext.py) and torchvision's `resnext50_32x4d` differ only in how
//! they spell the same width rule, [`bottleneck_width`]; the network is [`super::ResNet`].

/// Width of a bottleneck's 3x3 convolution for a stage of `planes` output planes (before the
/// 4x expansion): `planes` when `groups` is 1, else `floor(planes * base_width /
/// base_channels) * groups` (mmdetection; torchvision's `int(planes * width_per_group / 64) *
/// groups` with `base_channels` 64). ResNeXt-101 32x4d: `groups` 32, `base_width` 4, so 128 at
/// the first stage.
pub fn bottleneck_width(
    planes: usize,
    groups: usize,
    base_width: usize,
    base_channels: usize,
) -> usize {
    if groups <= 1 {
        planes
    } else {
        planes * base_width / base_channels.max(1) * groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_of_the_published_resnexts() {
        // Stage widths of torchvision's resnext50_32x4d / resnext101_64x4d / resnext101_32x8d.
        for (g, bw, first) in [(32, 4, 128), (64, 4, 256), (32, 8, 256)] {
            let widths: Vec<usize> = (0..4)
                .map(|i| bottleneck_width(64 << i, g, bw, 64))
                .collect();
            assert_eq!(widths, [first, first * 2, first * 4, first * 8]);
        }
        assert_eq!(bottleneck_width(64, 1, 4, 64), 64);
    }
}
