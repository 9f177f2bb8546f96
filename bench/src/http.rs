//! A lean HTTP/1.1 client for the load generator (hyper, pooled keep-alive connections),
//! and what a browser would do with a login page: keep cookies, read the form, fill it.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use regex::Regex;

use super::BenchError;

/// Largest response body read: any CAS page is far smaller, and the target may be any
/// server.
const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

/// What came back, with what a CAS client looks at.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: Bytes,
}

impl Http {
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self { client, timeout }
    }

    pub async fn get(&self, url: &str, cookies: &Jar) -> Result<Reply, BenchError> {
        let mut req = Request::get(url);
        if let Some(header) = cookies.header() {
            req = req.header(COOKIE, header);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| BenchError::Usage(format!("bad URL {url}: {e}")))?;
        self.send(req).await
    }

    pub async fn post_form(
        &self,
        url: &str,
        body: String,
        cookies: &Jar,
    ) -> Result<Reply, BenchError> {
        let mut req = Request::post(url).header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(header) = cookies.header() {
            req = req.header(COOKIE, header);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| BenchError::Usage(format!("bad URL {url}: {e}")))?;
        self.send(req).await
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<Reply, BenchError> {
        // Cheap clones (shared bytes): the message is only formatted when something fails.
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let failed = |e: &dyn std::error::Error| {
            BenchError::Transport(format!("{method} {uri}: {}", error_chain(e)))
        };
        let exchange = async {
            let response = self.client.request(req).await.map_err(|e| failed(&e))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| failed(&*e))?
                .to_bytes();
            Ok::<_, BenchError>(Reply {
                status: parts.status.as_u16(),
                location: parts
                    .headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                set_cookies: parts
                    .headers
                    .get_all(SET_COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .collect(),
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| BenchError::Transport(format!("{method} {uri}: timed out")))?
    }
}

/// "client error (Connect): tcp connect error: Connection refused", not just the outermost.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The cookies a browser would send back (names and values only: one host, one path).
#[derive(Debug, Clone, Default)]
pub struct Jar(BTreeMap<String, String>);

impl Jar {
    /// Takes `Set-Cookie` values; `Max-Age=0` removes.
    pub fn store(&mut self, set_cookies: &[String]) {
        for cookie in set_cookies {
            let mut parts = cookie.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
                continue;
            };
            let deleted = parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if deleted || value.is_empty() {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn header(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// A login form as found in a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub action: Option<String>,
    /// Every named input with its value (hidden ones included), in page order.
    pub fields: Vec<(String, String)>,
}

/// The first `<form>` of `html` that has a password field: its action and inputs.
pub fn find_login_form(html: &str) -> Option<Form> {
    FORM.captures_iter(html).find_map(|form| {
        let body = form.get(2)?.as_str();
        let fields: Vec<(String, String, String)> = INPUT
            .captures_iter(body)
            .filter_map(|input| {
                let attrs = input.get(1)?.as_str();
                let name = attribute(attrs, "name")?;
                let kind = attribute(attrs, "type").unwrap_or_else(|| "text".into());
                Some((
                    name,
                    attribute(attrs, "value").unwrap_or_default(),
                    kind.to_ascii_lowercase(),
                ))
            })
            .collect();
        fields
            .iter()
            .any(|(_, _, kind)| kind == "password")
            .then(|| Form {
                action: attribute(form.get(1).map_or("", |m| m.as_str()), "action"),
                fields: fields
                    .into_iter()
                    .filter(|(_, _, kind)| {
                        !matches!(kind.as_str(), "checkbox" | "radio" | "submit")
                    })
                    .map(|(name, value, _)| (name, value))
                    .collect(),
            })
    })
}

// Compiled once: `sessions` parses a page per login, and compiling cost more than the
// server's whole login.
static FORM: LazyLock<Regex> = LazyLock::new(|| pattern(r"(?is)<form\b([^>]*)>(.*?)</form>"));
static INPUT: LazyLock<Regex> = LazyLock::new(|| pattern(r"(?is)<input\b([^>]*)>"));
static ATTRIBUTE: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r#"(?i)([a-z_:][-a-z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))"#)
});

#[allow(clippy::expect_used)] // constant patterns, covered by the tests below
fn pattern(re: &str) -> Regex {
    Regex::new(re).expect("a valid constant pattern")
}

/// The value of attribute `name` in a tag's attribute text.
fn attribute(attrs: &str, name: &str) -> Option<String> {
    ATTRIBUTE.captures_iter(attrs).find_map(|caps| {
        if !caps.get(1)?.as_str().eq_ignore_ascii_case(name) {
            return None;
        }
        let raw = caps.get(2).or(caps.get(3)).or(caps.get(4))?.as_str();
        Some(html_escape::decode_html_entities(raw).into_owned())
    })
}

/// `page` joined with a form action, as a browser resolves it.
pub fn resolve(page: &str, action: Option<&str>) -> Result<String, BenchError> {
    let page_url =
        url::Url::parse(page).map_err(|e| BenchError::Usage(format!("bad URL {page}: {e}")))?;
    match action {
        None | Some("") => Ok(page.to_owned()),
        Some(a) => page_url
            .join(a)
            .map(String::from)
            .map_err(|e| BenchError::Login(format!("form action {a:?} at {page}: {e}"))),
    }
}

/// The `ticket` parameter of a redirect, decoded.
pub fn ticket_in(location: &str) -> Option<String> {
    let query = location.split_once('?')?.1.split('#').next()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "ticket")
        .map(|(_, value)| value.into_owned())
}

pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_form_is_found_with_its_hidden_fields() {
        let html = r#"<form action="/other"><input name="q"></form>
            <form method="post" action="/cas/login?x=1&amp;y=2">
            <input id="username" name="username" type="text" value="">
            <input name="password" type='password'>
            <input type="checkbox" name="rememberMe" value="true">
            <input type="hidden" name="lt" value="abc&#34;def">
            <input type=hidden name=service value="https://a/?b=1&amp;c=2">
            </form>"#;
        let form = find_login_form(html).unwrap();
        assert_eq!(form.action.as_deref(), Some("/cas/login?x=1&y=2"));
        assert_eq!(
            form.fields,
            vec![
                ("username".into(), "".into()),
                ("password".into(), "".into()),
                ("lt".into(), "abc\"def".into()),
                ("service".into(), "https://a/?b=1&c=2".into()),
            ]
        );
        assert!(find_login_form("<form><input name=q></form>").is_none());
    }

    #[test]
    fn attributes_are_matched_by_their_whole_name() {
        let form = find_login_form(
            r#"<form><input data-name="no" NAME='yes' type=hidden Value='v'>
            <input name="password" type="password"></form>"#,
        )
        .unwrap();
        assert_eq!(form.fields[0], ("yes".into(), "v".into()));
        assert_eq!(form.action, None);
    }

    #[test]
    fn actions_resolve_like_a_browser() {
        let page = "http://127.0.0.1:8080/cas/login?service=x";
        let at = |action| resolve(page, action).unwrap();
        assert_eq!(at(Some("/cas/login")), "http://127.0.0.1:8080/cas/login");
        assert_eq!(at(Some("login")), "http://127.0.0.1:8080/cas/login");
        assert_eq!(at(Some("?a=1")), "http://127.0.0.1:8080/cas/login?a=1");
        assert_eq!(at(None), page);
        assert_eq!(at(Some("http://other/x")), "http://other/x");
        assert!(resolve("not a url", Some("x")).is_err());
    }

    #[test]
    fn cookies_are_kept_and_deleted() {
        let mut jar = Jar::default();
        jar.store(&[
            "TGC=abc; Path=/cas; HttpOnly".into(),
            "CASFLOW=f; Path=/cas".into(),
        ]);
        assert_eq!(jar.header().unwrap(), "CASFLOW=f; TGC=abc");
        jar.store(&["TGC=; Max-Age=0; Path=/cas".into()]);
        assert_eq!(jar.get("TGC"), None);
    }

    #[test]
    fn tickets_are_read_from_redirects() {
        assert_eq!(
            ticket_in("http://a/x?b=1&ticket=ST-1#f").as_deref(),
            Some("ST-1")
        );
        assert_eq!(
            ticket_in("http://a/x?ticket=ST-a%2Bb").as_deref(),
            Some("ST-a+b")
        );
        assert_eq!(ticket_in("http://a/x"), None);
        assert_eq!(ticket_in("http://a/x?tickets=ST-1"), None);
    }
}
