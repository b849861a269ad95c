//! The one error type of the data layer.
//!
//! Every variant names the file it came from; problems inside a file also name the JSON path
//! of the offending value (`annotations[1832].bbox`), so a message can be acted on without a
//! debugger.

use std::fmt;
use std::path::{Path, PathBuf};

/// Result alias of the data layer.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Where in a JSON document a problem is: `annotations[12].segmentation[0]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonPath(String);

impl JsonPath {
    /// The document root.
    pub fn root() -> Self {
        Self(String::new())
    }

    /// `field[index]`, the usual address of a record.
    pub fn item(field: &str, index: usize) -> Self {
        Self(format!("{field}[{index}]"))
    }

    /// This path with `.name` appended.
    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// This path with `[index]` appended.
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// `self` followed by `rest` (a path relative to `self`).
    pub fn join(&self, rest: &JsonPath) -> Self {
        match (self.0.is_empty(), rest.0.starts_with('[')) {
            (true, _) => rest.clone(),
            (_, _) if rest.0.is_empty() => self.clone(),
            (false, true) => Self(format!("{}{}", self.0, rest.0)),
            (false, false) => Self(format!("{}.{}", self.0, rest.0)),
        }
    }

    /// Wraps a path already rendered as text (as `serde_path_to_error` renders it).
    /// Unknown map keys (rendered `?`, e.g. inside a truncated key) are dropped.
    pub fn from_rendered(s: String) -> Self {
        let s = s.replace(".?", "");
        if s == "." || s == "?" {
            Self::root()
        } else {
            Self(s)
        }
    }

    /// The path as text; empty for the root.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(root)")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// Everything that can go wrong reading, validating, generating or writing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened, read or written. The OS error is part of the message
    /// (and not also the error's `source()`, which printed it twice in a cause chain).
    #[error("{}: {action}: {error}", file.display())]
    Io {
        file: PathBuf,
        action: &'static str,
        error: std::io::Error,
    },
    /// The file holds zero bytes (or only whitespace).
    #[error("{}: the file is empty", file.display())]
    Empty { file: PathBuf },
    /// A `.gz` file that is not valid gzip.
    #[error("{}: not a valid gzip stream: {message}", file.display())]
    Gzip { file: PathBuf, message: String },
    /// The bytes are not well-formed JSON, or a value has the wrong type or is missing.
    #[error("{}: {path}: {message} (line {line}, column {column})", file.display())]
    Json {
        file: PathBuf,
        path: JsonPath,
        message: String,
        line: usize,
        column: usize,
    },
    /// Well-formed JSON whose content breaks a rule of the format.
    #[error("{}: {path}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        path: JsonPath,
        message: String,
    },
    /// A request that cannot be met (bad generator settings, an unknown image id, ...).
    #[error("{0}")]
    Request(String),
    /// An image could not be decoded or encoded.
    #[error("{}: {message}", file.display())]
    Image { file: PathBuf, message: String },
}

impl DataError {
    pub(crate) fn io(file: &Path, action: &'static str, error: std::io::Error) -> Self {
        Self::Io {
            file: file.to_path_buf(),
            action,
            error,
        }
    }

    pub(crate) fn invalid(file: &Path, path: JsonPath, message: impl Into<String>) -> Self {
        Self::Invalid {
            file: file.to_path_buf(),
            path,
            message: message.into(),
        }
    }

    /// The JSON path of the problem, when it is inside a document.
    pub fn json_path(&self) -> Option<&JsonPath> {
        match self {
            Self::Json { path, .. } | Self::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }
}
