//! The one error type of the model layer.

/// Result alias of the model layer.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// What can go wrong building or running a model piece.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An input of the wrong shape or range.
    #[error("{0}")]
    Input(String),
    /// The tensor backend failed (reading data back, for instance).
    #[error("tensor backend: {0}")]
    Backend(String),
}
