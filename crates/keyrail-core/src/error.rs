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
    /// 401: missing, unknown or expired credentials (`invalid_login`, `invalid_token`, ...).
    #[error("{message}")]
    Unauthenticated {
        code: &'static str,
        message: &'static str,
    },
    /// 403: authenticated but not allowed. `required` lists missing scopes, when that is why.
    #[error("{message}")]
    Forbidden {
        code: &'static str,
        message: String,
        required: Vec<String>,
    },
    /// 429 with `Retry-After`.
    #[error("{message}")]
    RateLimited {
        code: &'static str,
        message: &'static str,
        retry_after_secs: u64,
    },
    /// 503: the store cannot be reached; the caller may retry.
    #[error("store unavailable")]
    Unavailable,
    /// 503 with `Retry-After`: a bounded resource (the password hashers) is in full use; the
    /// request was refused rather than queued without limit.
    #[error("server busy")]
    Busy { retry_after_secs: u64 },
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

    pub fn unauthenticated(code: &'static str, message: &'static str) -> Self {
        Self::Unauthenticated { code, message }
    }

    /// 401 `invalid_token`: a bad, expired or revoked access or refresh token.
    pub fn invalid_token() -> Self {
        Self::unauthenticated("invalid_token", "Invalid or expired token")
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
            required: Vec::new(),
        }
    }

    pub fn rate_limited(code: &'static str, message: &'static str, retry_after_secs: u64) -> Self {
        Self::RateLimited {
            code,
            message,
            retry_after_secs: retry_after_secs.max(1),
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
