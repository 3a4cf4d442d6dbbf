//! The domain error. The HTTP layer maps it to `{"error", "code"}` in exactly one place.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400 `invalid_request`: the message names the field.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// 404 `not_found`; `what` is the kind of thing ("workspace", "member").
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// 409 with a specific code (`email_taken`, `last_owner`, ...).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 503: the store cannot be reached; the caller may retry.
    #[error("store unavailable")]
    Unavailable,
    /// 500: the detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                Error::conflict("conflict", format!("{what} already exists"))
            }
            StoreError::Unavailable(_) => Error::Unavailable,
            StoreError::Other(detail) => Error::Internal(detail),
        }
    }
}
