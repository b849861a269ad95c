//! Seesaw's data layer: LVIS v1 / COCO annotation and result files (plain or `.json.gz`) with
//! validation that names file, JSON path and index; masks through hotcoco; dataset statistics;
//! the built-in synthetic long-tailed dataset; and the training data pipeline (loading,
//! transforms, samplers), up to the samples that the engine pads into a batch tensor.
//!
//! No tensors here: this crate builds and tests in seconds.

pub mod config;
pub mod dataset;
pub mod error;
pub mod image_file;
pub mod io;
pub mod loading;
pub mod mask;
pub mod pipeline;
pub mod results;
pub mod samplers;
pub mod sampling;
pub mod split;
pub mod stats;
pub mod structures;
pub mod synth;
pub mod transforms;
mod validate;

pub use config::DataConfig;
pub use dataset::{
    Annotation, Category, Dataset, Format, Frequency, Image, Rle, RleCounts, Segmentation,
};
pub use error::{DataError, JsonPath, Result};
pub use image_file::{DecodedImage, check_image_size, read_image};
pub use loading::{Sample, load_image};
pub use pipeline::{Shard, image_rng, iteration_rng, train_samples};
pub use results::{
    Detection, check_results_against, load_results, load_results_with, save_results,
};
pub use samplers::{SamplerKind, TrainSampler};
pub use sampling::Rounding;
pub use split::Split;
pub use stats::DatasetStats;
pub use synth::{SynthConfig, generate};
pub use transforms::ScaleMode;
pub use validate::rle_runs_problem;
