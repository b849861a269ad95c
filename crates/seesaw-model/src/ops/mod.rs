//! Detection ops, one concept per file: box overlaps, non-maximum suppression, the box coder and
//! the anchor generator, RoIAlign, the multi-level RoI extractor, deformable convolution,
//! CARAFE, the max-IoU assigner and the random sampler, mask targets and mask pasting so far.
//! Semantics follow torchvision and mmdetection 3.x (boxes are `[x1, y1, x2, y2]`, no +1).

pub mod anchors;
pub mod assigner;
pub mod box_coder;
pub mod boxes;
pub mod carafe;
pub mod deform_conv;
pub mod deform_roi_pool;
pub mod mask_paste;
pub mod mask_target;
pub mod nms;
pub mod resize;
pub mod roi_align;
pub mod roi_extractor;
pub mod sampler;

/// A box `[x1, y1, x2, y2]` in pixels.
pub type Box2 = [f32; 4];
