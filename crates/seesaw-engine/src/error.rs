//! The one error type of the engine.

use std::path::{Path, PathBuf};

/// Result alias of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What can go wrong configuring, training, testing or reading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A config file or an override that does not fit the schema.
    #[error("{file}: {message}")]
    Config { file: PathBuf, message: String },
    /// A checkpoint that cannot be read.
    #[error("{file}: {message}")]
    Checkpoint { file: PathBuf, message: String },
    /// A file that cannot be read or written. The OS error is part of the message (and not
    /// also the error's `source()`, which printed it twice in a cause chain).
    #[error("{file}: {message}: {error}")]
    Io {
        file: PathBuf,
        message: String,
        error: std::io::Error,
    },
    /// The training loss became NaN or infinite.
    #[error("{0}")]
    Diverged(String),
    #[error(transparent)]
    Data(#[from] seesaw_data::DataError),
    #[error(transparent)]
    Eval(#[from] seesaw_eval::EvalError),
    #[error(transparent)]
    Model(#[from] seesaw_model::ModelError),
    /// Anything else the user asked for that cannot be done.
    #[error("{0}")]
    Request(String),
}

impl EngineError {
    pub(crate) fn io(file: &Path, message: &str, error: std::io::Error) -> Self {
        EngineError::Io {
            file: file.to_path_buf(),
            message: message.to_string(),
            error,
        }
    }

    pub(crate) fn config(file: &Path, message: impl Into<String>) -> Self {
        EngineError::Config {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn checkpoint(file: &Path, message: impl Into<String>) -> Self {
        EngineError::Checkpoint {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }
}
