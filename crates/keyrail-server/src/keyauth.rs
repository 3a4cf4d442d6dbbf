//! What a key's verification means for an HTTP answer: the one mapping from verify codes to the
//! contract's 401/403/429, used by API authentication and forward-auth alike, and the RateLimit
//! fields of a key's own limit.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use keyrail_core::keys::verify::{Verification, VerifyCode};
use keyrail_core::limits::{Rate, Span};
use keyrail_core::model::KeyRateLimit;
use keyrail_core::ratelimit::Decision;

use crate::error::ApiError;
use crate::limiter::rate_limit_headers;

/// The error a failed verification answers with. `None` for `VALID`.
pub fn failure(v: &Verification) -> Option<ApiError> {
    let e = match v.code {
        VerifyCode::Valid => return None,
        VerifyCode::NotFound => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "Invalid API key",
        ),
        VerifyCode::Expired => {
            ApiError::new(StatusCode::UNAUTHORIZED, "expired", "API key expired")
        }
        VerifyCode::Revoked => {
            ApiError::new(StatusCode::UNAUTHORIZED, "revoked", "API key revoked")
        }
        VerifyCode::Disabled => {
            ApiError::new(StatusCode::UNAUTHORIZED, "disabled", "API key disabled")
        }
        VerifyCode::TenantSuspended => ApiError::new(
            StatusCode::FORBIDDEN,
            "tenant_suspended",
            "Tenant suspended or inactive",
        ),
        VerifyCode::InsufficientScope => ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "Insufficient scope",
        )
        .with("required", v.missing.clone()),
        VerifyCode::RateLimited => {
            let retry = v.rate.map_or(1, |(_, d)| d.retry_after_secs);
            ApiError::for_status(StatusCode::TOO_MANY_REQUESTS).retry_after(retry)
        }
        VerifyCode::UsageExceeded => ApiError::new(
            StatusCode::FORBIDDEN,
            "usage_exceeded",
            "API key usage credits exhausted",
        ),
    };
    Some(e)
}

fn as_rate(r: KeyRateLimit) -> Rate {
    Rate {
        count: r.limit,
        window: Span::from_secs(u64::from(r.window_seconds)),
    }
}

/// Writes the RateLimit fields of a key's own limit.
pub fn key_rate_headers(headers: &mut HeaderMap, limit: KeyRateLimit, decision: &Decision) {
    rate_limit_headers(headers, "key", as_rate(limit), decision);
}

/// Where API authentication leaves a key's rate-limit decision for the response middleware.
#[derive(Clone, Default)]
pub struct RateSlot(pub Arc<Mutex<Option<(KeyRateLimit, Decision)>>>);

impl RateSlot {
    pub fn put(&self, value: (KeyRateLimit, Decision)) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
    }

    pub fn take(&self) -> Option<(KeyRateLimit, Decision)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
