//! Detection heads: the RPN, the box head and the mask head, each with its targets and loss.

pub mod bbox_head;
pub mod mask_head;
pub mod rpn_head;

pub use bbox_head::{BBoxHead, BBoxHeadConfig};
pub use mask_head::{MaskHead, MaskHeadConfig};
pub use rpn_head::{ProposalConfig, RpnConfig, RpnHead};
