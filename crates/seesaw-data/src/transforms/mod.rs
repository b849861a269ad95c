//! The training transforms, one file each, after mmdetection's
//! `mmdet/datasets/transforms/transforms.py`:
//!
//! - `Resize` (keep ratio; the scale drawn per image, "value" or "range") in [`resize`];
//! - `RandomFlip` (horizontal) in [`flip`];
//! - `InstaBoost` (instance jitter by copy-paste) in [`mod@instaboost`];
//! - `PhotoMetricDistortion` in [`photometric`];
//! - `RandomCrop` in [`crop`].
//!
//! Resizing and flipping happen while an image is loaded ([`crate::loading`]); the others
//! transform a loaded [`crate::loading::Sample`]. The order they run in, and the order of their
//! random draws, is [`crate::pipeline::train_samples`]'s.

pub mod crop;
pub mod flip;
pub mod instaboost;
pub mod photometric;
pub mod resize;

pub use crop::random_crop;
pub use flip::{draw_flip, flip_box};
pub use instaboost::{Action, InstaBoostConfig, Jitter, instaboost};
pub use photometric::Photometric;
pub use resize::{ResizeKind, ScaleMode, draw_scale, rescale, rescale_torchvision};
