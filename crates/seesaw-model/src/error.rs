//! The one error type of the model layer.

/// Result alias of the model layer.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// What can go wrong building or running a model piece.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An input of the wrong shape or range.
    #[error("{0}")]
    Input(String),
    /// A weights file that cannot be read or does not fit the model (message names the file).
    #[error("weights {0}")]
    Weights(String),
    /// The tensor backend failed (reading data back, for instance).
    #[error("tensor backend: {0}")]
    Backend(String),
}
