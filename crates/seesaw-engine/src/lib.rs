//! Seesaw's engine: run configs, the data pipeline, training with exact resume, inference and
//! evaluation. The `seesaw` binary's `train`, `test`, `infer` and `demo` are thin layers on it.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod distributed;
pub mod error;
pub mod predict;
pub mod train;
pub mod weights;

pub use config::Config;
pub use error::{EngineError, Result};
