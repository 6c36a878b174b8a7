//! The library's error type. Every message says what went wrong and what to do about it.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in relprune, as values (never a panic).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid user input: an option, a name, a rate, a configuration value.
    #[error("{0}")]
    Invalid(String),

    /// A weights file lacks a parameter the graph needs.
    #[error("weights file {path} has no parameter `{name}` (expected shape {expected:?}); is this the right architecture for these weights?")]
    MissingParam { path: PathBuf, name: String, expected: Vec<i64> },

    /// A parameter exists but has the wrong shape.
    #[error("parameter `{name}`: expected shape {expected:?}, found {found:?} in {path}")]
    ParamShape { path: PathBuf, name: String, expected: Vec<i64>, found: Vec<i64> },

    /// Data that should exist is missing.
    #[error("{what} not found at {path}: {hint}")]
    DataNotFound { what: String, path: PathBuf, hint: String },

    /// Data exists but cannot be parsed.
    #[error("corrupt {what} at {path}: {reason}")]
    CorruptData { what: String, path: PathBuf, reason: String },

    /// A file system operation failed.
    #[error("cannot {action} {path}: {}", io_reason(source))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A tensor operation failed inside a node (usually a shape mismatch).
    #[error("node `{node}` ({op}): {message}")]
    Node { node: String, op: String, message: String },

    /// A tensor operation failed outside of a node.
    #[error("tensor operation failed: {}", torch_message(.0))]
    Torch(#[from] tch::TchError),

    /// A long-running job was stopped on request; its state is saved for resuming.
    #[error("{0}")]
    Interrupted(String),

    /// JSON (de)serialisation failed.
    #[error("invalid JSON in {context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// Wraps an I/O error with the action and path it concerned.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }

    /// Wraps a JSON error with what was being read or written.
    pub fn json(context: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Self {
        let context = context.into();
        move |source| Error::Json { context, source }
    }
}

/// The OS reason of an I/O failure, with what to do for the common ones.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::StorageFull => format!("{e}; free some space or write elsewhere"),
        std::io::ErrorKind::PermissionDenied => format!("{e}; check the permissions or write elsewhere"),
        _ => e.to_string(),
    }
}

/// Returns `Err(Error::Invalid(..))` from the enclosing function.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::Error::Invalid(format!($($arg)*))) };
}

/// libtorch's message without tch's "Internal torch error:" prefix and the C++ stack trace
/// libtorch appends ("Exception raised from …", "frame #0: …"): the one line that says what is
/// wrong.
pub fn torch_message(e: &tch::TchError) -> String {
    let text = e.to_string();
    let cut = ["Exception raised from", "frame #0"].iter().filter_map(|m| text.find(m)).min().unwrap_or(text.len());
    // tch's own prefix reads like a crash; the message after it says what is wrong.
    let head = text[..cut].trim().trim_start_matches("Internal torch error:").trim();
    head.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_traces_are_cut_to_their_message() {
        let e = tch::TchError::Torch(
            "Given groups=3, weight of size [4, 1, 3, 3], expected input[2, 4, 8, 8] to have 3 channels\n\
             Exception raised from check_shape_forward at /pytorch/aten/src/ATen/native/Convolution.cpp:123\n\
             frame #0: c10::Error::Error(...) + 0x1\nframe #1: ..."
                .into(),
        );
        let text = Error::Torch(e).to_string();
        assert_eq!(
            text,
            "tensor operation failed: Given groups=3, weight of size [4, 1, 3, 3], expected input[2, 4, 8, 8] to \
             have 3 channels"
        );
    }
}
