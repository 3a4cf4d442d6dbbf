//! `ApiJson<T>`: the request-body extractor every handler uses. It answers in the contract's
//! shape: 415 for a body that is not JSON, 413 over the limit, 400 `invalid_request` naming the
//! field for malformed JSON, unknown fields, missing fields and wrong types.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

pub struct ApiJson<T>(pub T);

fn is_json_content_type(req: &Request) -> bool {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(ct) = ct.to_str() else { return false };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .get(..12)
            .is_some_and(|p| p.eq_ignore_ascii_case("application/"))
            && essence.len() > 17
            && essence[essence.len() - 5..].eq_ignore_ascii_case("+json")
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json_content_type(&req) {
            return Err(ApiError::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                ApiError::invalid("body", "The request body could not be read")
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// A JSON body that may be left out entirely (no body at all means `None`).
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let declared_empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        if declared_empty || !has_type {
            let bytes = Bytes::from_request(req, state)
                .await
                .map_err(|_| ApiError::invalid("body", "The request body could not be read"))?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Self(None));
            }
            return Err(ApiError::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(v)| Self(Some(v)))
    }
}

/// Parses a JSON body into `T`, turning serde's complaint into a message that names the field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body is an object; serde would also fill a struct from an array of its fields.
    if bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b != b'{')
    {
        return Err(ApiError::invalid(
            "body",
            "Invalid request body: expected a JSON object",
        ));
    }
    // The common case parses once, fast; only a failure pays for tracking the field's path.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    // JSON has one kind of number: `5.0` and `5e0` are the integer 5 (as JSON Schema says too),
    // which serde refuses for an integer field. Retry with such numbers written as integers.
    if let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(bytes)
        && integral_floats_to_integers(&mut doc)
        && let Ok(value) = serde_json::from_value(doc)
    {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(describe)?;
    de.end().map_err(|_| {
        ApiError::invalid(
            "body",
            "Malformed JSON: unexpected data after the JSON value",
        )
    })?;
    Ok(value)
}

/// Rewrites every float with no fractional part (and exactly representable) as an integer;
/// whether any was.
fn integral_floats_to_integers(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    /// 2^53: above it, not every integer is a float, so the float may not be what was written.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match v {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() <= EXACT => {
                *v = Value::from(f as i64);
                true
            }
            _ => false,
        },
        // Every element is rewritten, so no short-circuiting `any`.
        Value::Array(items) => {
            items
                .iter_mut()
                .map(integral_floats_to_integers)
                .filter(|&changed| changed)
                .count()
                > 0
        }
        Value::Object(map) => {
            map.values_mut()
                .map(integral_floats_to_integers)
                .filter(|&changed| changed)
                .count()
                > 0
        }
        _ => false,
    }
}

fn strip_location(msg: &str) -> &str {
    msg.rsplit_once(" at line ").map_or(msg, |(m, _)| m)
}

fn between_backticks(msg: &str) -> Option<&str> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(&msg[start..start + len])
}

fn describe(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let path = err.path().to_string();
    let inner = err.inner();
    let msg = strip_location(&inner.to_string()).to_owned();
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::invalid("body", format!("Malformed JSON: {msg}"))
        }
        Category::Data => {
            let join = |name: &str| {
                if path == "." || path.is_empty() {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                }
            };
            if let Some(name) = msg
                .strip_prefix("unknown field ")
                .and_then(between_backticks)
            {
                // The path already ends at the unknown field.
                let field = if path == "." || path.is_empty() {
                    name.to_owned()
                } else {
                    path.clone()
                };
                ApiError::invalid(field.clone(), format!("Unknown field `{field}`"))
            } else if let Some(name) = msg
                .strip_prefix("missing field ")
                .and_then(between_backticks)
            {
                let field = join(name);
                ApiError::invalid(field.clone(), format!("Missing field `{field}`"))
            } else if path == "." || path.is_empty() {
                ApiError::invalid("body", format!("Invalid request body: {msg}"))
            } else {
                ApiError::invalid(path.clone(), format!("Invalid value for `{path}`: {msg}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        limit: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        rate_limit: Option<Inner>,
    }

    fn err(body: &str) -> (String, String) {
        let e = parse::<Body>(body.as_bytes()).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "invalid_request");
        (
            e.extra["field"].as_str().unwrap().to_owned(),
            e.message.into_owned(),
        )
    }

    #[test]
    fn messages_name_the_field() {
        assert_eq!(
            err(r#"{"name":"a","admin":true}"#),
            ("admin".into(), "Unknown field `admin`".into())
        );
        assert_eq!(err(r#"{}"#), ("name".into(), "Missing field `name`".into()));
        let (f, m) = err(r#"{"name":5}"#);
        assert_eq!(f, "name");
        assert!(
            m.starts_with("Invalid value for `name`: invalid type: integer"),
            "{m}"
        );
        let (f, m) = err(r#"{"name":"a","rate_limit":{"limit":1,"x":2}}"#);
        assert_eq!(
            (f.as_str(), m.as_str()),
            ("rate_limit.x", "Unknown field `rate_limit.x`")
        );
        let (f, m) = err(r#"{"name":"a","rate_limit":{"limit":-1}}"#);
        assert_eq!(f, "rate_limit.limit");
        assert!(m.contains("rate_limit.limit"), "{m}");
    }

    #[test]
    fn only_an_object_is_a_body() {
        for body in [r#"["a", null]"#, " 5", r#""a""#, "null"] {
            assert_eq!(
                err(body),
                (
                    "body".into(),
                    "Invalid request body: expected a JSON object".into()
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn integral_floats_are_integers() {
        let b = parse::<Body>(br#"{"name":"a","rate_limit":{"limit":5.0}}"#).unwrap();
        assert_eq!(b.rate_limit.unwrap().limit, 5);
        let b = parse::<Body>(br#"{"name":"a","rate_limit":{"limit":2e2}}"#).unwrap();
        assert_eq!(b.rate_limit.unwrap().limit, 200);
        let (f, m) = err(r#"{"name":"a","rate_limit":{"limit":5.5}}"#);
        assert_eq!(f, "rate_limit.limit");
        assert!(m.contains("floating point `5.5`"), "{m}");
        // Out of the field's range is still out of range.
        let (f, _) = err(r#"{"name":"a","rate_limit":{"limit":4294967296.0}}"#);
        assert_eq!(f, "rate_limit.limit");
    }

    #[test]
    fn malformed_json_is_named_as_such() {
        for body in ["{", "", "nul", r#"{"name":"a"} x"#, r#"{"name":"a",}"#] {
            let (f, m) = err(body);
            assert_eq!(f, "body", "{body}");
            assert!(
                m.starts_with("Malformed JSON") || m.starts_with("Invalid request body"),
                "{body}: {m}"
            );
            assert!(!m.contains(" at line "), "{m}");
        }
    }

    #[test]
    fn content_types() {
        let req = |ct: &str| {
            Request::builder()
                .header(header::CONTENT_TYPE, ct)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert!(is_json_content_type(&req("application/json")));
        assert!(is_json_content_type(&req(
            "Application/JSON; charset=utf-8"
        )));
        assert!(is_json_content_type(&req("application/merge-patch+json")));
        assert!(!is_json_content_type(&req("text/plain")));
        assert!(!is_json_content_type(&req(
            "application/x-www-form-urlencoded"
        )));
        assert!(!is_json_content_type(&req("application/+json")));
    }
}
