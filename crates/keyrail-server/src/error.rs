//! The one place where failures become the contract's `{"error", "code"}` bodies.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyrail_core::Error;
use serde::Serialize;
use serde_json::{Map, Value};

/// The error body of every failing response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "Human-readable message", "code": "snake_case_code"}))]
pub struct ErrorBody {
    /// A human-readable message.
    #[schema(example = "Insufficient scope")]
    pub error: String,
    /// A stable machine code in snake_case.
    #[schema(example = "insufficient_scope")]
    pub code: String,
    /// With `invalid_request`: the field (or parameter) that was wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `insufficient_scope`: the scopes the operation needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<Vec<String>>,
}

/// An error on its way to the client. Internal details ride along for the log, never the body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: Cow<'static, str>,
    pub extra: Map<String, Value>,
    pub retry_after: Option<u64>,
    internal: Option<String>,
}

/// Carried in a 500 response's extensions so the request middleware logs it with the request id.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            extra: Map::new(),
            retry_after: None,
            internal: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// 400 `invalid_request`; the message names the field.
    pub fn invalid(field: impl Into<String>, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message).with("field", field.into())
    }

    pub fn not_found() -> Self {
        Self::for_status(StatusCode::NOT_FOUND)
    }

    /// 403 `signup_disabled`: the server was configured with `allow_signup = false`.
    pub fn signup_disabled() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "signup_disabled",
            "Signup is disabled on this server",
        )
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        let mut e = Self::for_status(StatusCode::INTERNAL_SERVER_ERROR);
        e.internal = Some(detail.into());
        e
    }

    /// The standard body for a status that carries no more specific error (framework 404/405,
    /// timeouts, body limits, panics).
    pub fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::BAD_REQUEST => ("invalid_request", "Invalid request"),
            StatusCode::UNAUTHORIZED => ("missing_credentials", "Missing or invalid API key"),
            StatusCode::FORBIDDEN => ("forbidden", "Forbidden"),
            StatusCode::NOT_FOUND => ("not_found", "Not found"),
            StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "Method not allowed"),
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "Request timed out"),
            StatusCode::CONFLICT => ("conflict", "Conflict"),
            StatusCode::PAYLOAD_TOO_LARGE => {
                ("payload_too_large", "Request body too large (limit 64 KiB)")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "Content-Type must be application/json",
            ),
            StatusCode::TOO_MANY_REQUESTS => ("too_many_requests", "Too many requests"),
            StatusCode::SERVICE_UNAVAILABLE => ("store_unavailable", "Service unavailable"),
            s if s.is_client_error() => ("invalid_request", "Invalid request"),
            _ => ("internal_error", "Internal server error"),
        };
        let e = Self::new(status, code, message);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            e.retry_after(1)
        } else {
            e
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid { field, message } => ApiError::invalid(field, message),
            Error::NotFound { what } => {
                let mut m = what.to_owned();
                if let Some(first) = m.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{m} not found"))
            }
            Error::Conflict { code, message } => ApiError::new(StatusCode::CONFLICT, code, message),
            Error::Unauthenticated { code, message } => {
                ApiError::new(StatusCode::UNAUTHORIZED, code, message)
            }
            Error::Forbidden {
                code,
                message,
                required,
            } => {
                let e = ApiError::new(StatusCode::FORBIDDEN, code, message);
                if required.is_empty() {
                    e
                } else {
                    e.with("required", required)
                }
            }
            Error::RateLimited {
                code,
                message,
                retry_after_secs,
            } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
                .retry_after(retry_after_secs),
            Error::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "Store unavailable, try again shortly",
            )
            .retry_after(1),
            Error::Busy { retry_after_secs } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_busy",
                "Server busy, try again shortly",
            )
            .retry_after(retry_after_secs),
            Error::Internal(detail) => ApiError::internal(detail),
        }
    }
}

impl From<keyrail_core::StoreError> for ApiError {
    fn from(e: keyrail_core::StoreError) -> Self {
        Error::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Out<'a> {
            error: &'a str,
            code: &'a str,
            #[serde(flatten)]
            extra: &'a Map<String, Value>,
        }
        let bytes = serde_json::to_vec(&Out {
            error: &self.message,
            code: &self.code,
            extra: &self.extra,
        })
        .unwrap_or_default();
        let mut resp = (self.status, bytes).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            let value = if self.code == "missing_credentials" {
                HeaderValue::from_static("Bearer realm=\"keyrail\"")
            } else {
                HeaderValue::from_static("Bearer realm=\"keyrail\", error=\"invalid_token\"")
            };
            h.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(detail) = self.internal {
            resp.extensions_mut().insert(InternalDetail(detail));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(e: ApiError) -> (StatusCode, Value, Response) {
        let resp = e.into_response();
        let status = resp.status();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 16).await.unwrap();
        let v = serde_json::from_slice(&bytes).unwrap();
        (
            status,
            v,
            Response::from_parts(parts, axum::body::Body::empty()),
        )
    }

    #[tokio::test]
    async fn internal_details_stay_out_of_the_body() {
        let (status, v, resp) = body_of(ApiError::from(Error::Internal(
            "db password=swordfish".into(),
        )))
        .await;
        assert_eq!(status, 500);
        assert_eq!(
            v,
            serde_json::json!({"error": "Internal server error", "code": "internal_error"})
        );
        assert!(resp.extensions().get::<InternalDetail>().is_some());
    }

    #[tokio::test]
    async fn domain_errors_keep_their_codes() {
        let (s, v, _) = body_of(Error::invalid("name", "name must not be empty").into()).await;
        assert_eq!(
            (s.as_u16(), v["code"].as_str(), v["field"].as_str()),
            (400, Some("invalid_request"), Some("name"))
        );
        let (s, v, _) =
            body_of(Error::conflict("email_taken", "Email already registered").into()).await;
        assert_eq!((s.as_u16(), v["code"].as_str()), (409, Some("email_taken")));
        let (s, v, resp) = body_of(Error::Unavailable.into()).await;
        assert_eq!(
            (s.as_u16(), v["code"].as_str()),
            (503, Some("store_unavailable"))
        );
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let (s, v, _) = body_of(Error::NotFound { what: "workspace" }.into()).await;
        assert_eq!(
            (s.as_u16(), v["error"].as_str()),
            (404, Some("Workspace not found"))
        );
    }
}
