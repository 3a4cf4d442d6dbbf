//! A browser's part in console tests, without the browser: a cookie jar, forms posted as
//! `application/x-www-form-urlencoded` with the session's CSRF token, redirects not followed
//! (tests look at them).

use std::collections::BTreeMap;

use super::TestServer;

/// One answer of a console page.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub html: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Where a redirect goes.
    pub fn location(&self) -> &str {
        self.header("location")
    }

    /// The text of the element with `data-testid="{id}"`.
    pub fn testid(&self, id: &str) -> Option<String> {
        let marker = format!("data-testid=\"{id}\"");
        let at = self.html.find(&marker)?;
        let rest = &self.html[at..];
        let start = rest.find('>')? + 1;
        let end = rest[start..].find('<')?;
        Some(rest[start..start + end].trim().to_owned())
    }
}

/// A signed-in (or not yet) browser session on the console.
pub struct Console<'a> {
    server: &'a TestServer,
    http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

impl<'a> Console<'a> {
    pub fn new(server: &'a TestServer) -> Self {
        Self {
            server,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    /// Signs in through the sign-in form (no MFA); panics unless it succeeds.
    pub async fn sign_in(server: &'a TestServer, email: &str, password: &str) -> Self {
        let mut c = Self::new(server);
        let page = c
            .post_public("/login", &[("email", email), ("password", password)])
            .await;
        assert_eq!(page.status, 303, "sign in: {}", page.html);
        assert!(c.cookies.contains_key("keyrail_token"));
        c
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The session's CSRF token (as the page's forms carry it).
    pub fn csrf(&self) -> String {
        self.cookies
            .get("keyrail_csrf")
            .cloned()
            .unwrap_or_default()
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = if self.cookies.is_empty() {
            req
        } else {
            req.header("cookie", self.cookie_header())
        };
        let resp = req.send().await.unwrap();
        for set in resp.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        Page {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            html: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(self.server.url(path));
        self.send(req).await
    }

    /// Posts a form as the page would: with the session's CSRF token.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf();
        let mut all: Vec<(&str, &str)> = vec![("csrf_token", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_public(path, &all).await
    }

    /// Posts a form as given (no CSRF token added).
    pub async fn post_public(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = form_body(fields);
        let req = self
            .http
            .post(self.server.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }
}

pub fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
