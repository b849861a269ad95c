//! Seesaw's data layer: LVIS v1 / COCO annotation and result files (plain or `.json.gz`) with
//! validation that names file, JSON path and index; masks through hotcoco; dataset statistics;
//! and the built-in synthetic long-tailed dataset.
//!
//! No tensors here: this crate builds and tests in seconds.

pub mod dataset;
pub mod error;
pub mod io;
pub mod mask;
pub mod results;
pub mod sampling;
pub mod stats;
pub mod structures;
pub mod synth;
mod validate;

pub use dataset::{
    Annotation, Category, Dataset, Format, Frequency, Image, Rle, RleCounts, Segmentation,
};
pub use error::{DataError, JsonPath, Result};
pub use results::{
    Detection, check_results_against, load_results, load_results_with, save_results,
};
pub use stats::DatasetStats;
pub use synth::{SynthConfig, generate};
pub use validate::rle_runs_problem;
