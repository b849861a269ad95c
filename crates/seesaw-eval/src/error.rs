//! The one error type of the evaluation layer.

use seesaw_data::DataError;

/// Result alias of the evaluation layer.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

/// What can go wrong evaluating.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Reading or checking an input file.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A detection unusable for the requested evaluation.
    #[error("[{index}].{field}: {message}")]
    Results {
        index: usize,
        field: &'static str,
        message: String,
    },
    /// A ground-truth annotation unusable for the requested evaluation.
    #[error("annotations[{index}].{field}: {message}")]
    GroundTruth {
        index: usize,
        field: &'static str,
        message: String,
    },
    /// hotcoco refused the input.
    #[error("evaluation failed: {0}")]
    Hotcoco(String),
    /// An option that does not apply.
    #[error("{0}")]
    Request(String),
}
