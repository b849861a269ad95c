//! Detection heads: the RPN, the box head (ConvFC, Double Head or TSD), the mask head and HTC-Lite's global context head,
//! each with its targets and loss.

pub mod bbox_head;
pub mod double_bbox_head;
pub mod dual_cls;
pub mod global_context_head;
pub mod mask_head;
pub mod mask_iou_head;
pub mod rpn_head;
pub mod tsd_bbox_head;

pub use bbox_head::{BBoxHead, BBoxHeadConfig, BBoxHeadKind, BoxLossKind};
pub use global_context_head::{GlobalContextConfig, GlobalContextHead};
pub use mask_head::{MaskHead, MaskHeadConfig};
pub use mask_iou_head::{MaskIouHead, MaskIouHeadConfig};
pub use rpn_head::{ProposalConfig, RpnConfig, RpnHead};
pub use tsd_bbox_head::{TsdBranch, TsdLosses, TsdOutput};
