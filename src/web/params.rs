//! Protocol parameters from the query string or a form body, through the request filter.
//!
//! This is the "CAS security filter" of the security guide: before any ticket or session
//! is touched, a request is refused if a parameter is repeated (which copy a server
//! picks differs between implementations, and that difference is how parameter-pollution
//! attacks work), carries control characters (CR/LF for header and log injection, NUL
//! for truncation), is longer than any honest value, or is not UTF-8. Names are
//! case-sensitive (GEN-01) and values are decoded exactly once (GEN-02).

use std::borrow::Cow;

use axum::extract::{FromRequest, Request};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;

use super::error::WebError;

/// How long a value may be, by parameter.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `ticket`, `pgt`, `lt`-style tokens.
    pub ticket: usize,
    /// `service`, `pgtUrl`, `targetService` and other URLs.
    pub url: usize,
    pub username: usize,
    /// Anything else (passwords included).
    pub other: usize,
    /// A whole form body.
    pub body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ticket: 256,
            url: 4096,
            username: 256,
            other: 4096,
            body: 64 * 1024,
        }
    }
}

impl Limits {
    fn for_name(&self, name: &str) -> usize {
        match name {
            "ticket" | "pgt" => self.ticket,
            "service" | "pgtUrl" | "targetService" | "TARGET" | "url" => self.url,
            "username" => self.username,
            _ => self.other,
        }
    }
}

/// Why the filter refused a request; shown to the client (it names no value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("parameter '{0}' was given more than once")]
    Repeated(String),
    #[error("parameter '{0}' contains control characters")]
    ControlCharacters(String),
    #[error("parameter '{0}' is too long")]
    TooLong(String),
    #[error("the request is not valid UTF-8")]
    NotUtf8,
    #[error("the request body is too large or was interrupted")]
    Body,
    #[error("the request has too many parameters")]
    TooMany,
}

/// More parameters than any CAS request carries (login has eight at most).
const MAX_PARAMS: usize = 32;

#[derive(Default, Clone)]
pub struct Params(Vec<(String, String)>);

/// Names only: values include passwords and tickets.
impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

impl Params {
    /// Parses and filters `application/x-www-form-urlencoded` text (a query or a body).
    pub fn parse(encoded: &[u8], limits: &Limits) -> Result<Self, Rejected> {
        let mut params = Self::default();
        params.extend(encoded, limits)?;
        Ok(params)
    }

    fn extend(&mut self, encoded: &[u8], limits: &Limits) -> Result<(), Rejected> {
        for pair in encoded.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &b""[..]),
            };
            if self.0.len() == MAX_PARAMS {
                return Err(Rejected::TooMany);
            }
            let name = decode(name)?;
            let value = decode(value)?;
            // Linear, but over at most MAX_PARAMS short names.
            if self.0.iter().any(|(k, _)| *k == name) {
                return Err(Rejected::Repeated(printable(&name)));
            }
            // TAB is the one control character an honest value (a password) may hold.
            if name
                .chars()
                .chain(value.chars())
                .any(|c| c.is_control() && c != '\t')
            {
                return Err(Rejected::ControlCharacters(printable(&name)));
            }
            if value.len() > limits.for_name(&name) || name.len() > 64 {
                return Err(Rejected::TooLong(printable(&name)));
            }
            self.0.push((name, value));
        }
        Ok(())
    }

    /// The value of `name`; an empty value counts as absent (`service=` is no service).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Present at all, with any value (`renew`, `gateway`: §2.1.1).
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// `+` is a space, then percent-decoding, once; the result must be UTF-8.
fn decode(raw: &[u8]) -> Result<String, Rejected> {
    let spaced: Cow<'_, [u8]> = if raw.contains(&b'+') {
        Cow::Owned(
            raw.iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(raw)
    };
    let bytes: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
    String::from_utf8(bytes).map_err(|_| Rejected::NotUtf8)
}

/// A parameter name safe to echo in a message.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(64)
        .collect()
}

/// Query parameters, plus the form body of a POST (GEN-08), filtered.
#[derive(Debug)]
pub struct CasParams(pub Params);

// Generic over the state so that this module needs only the part it reads.
impl<S: AsRef<Limits> + Send + Sync> FromRequest<S> for CasParams {
    type Rejection = Rejected;

    async fn from_request(req: Request, state: &S) -> Result<Self, Rejected> {
        let limits: &Limits = state.as_ref();
        let mut params = Params::parse(req.uri().query().unwrap_or_default().as_bytes(), limits)?;
        let is_form = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            // Media types are case-insensitive (RFC 9110 §8.3.1).
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|media| {
                media
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if req.method() == Method::POST && is_form {
            let body = axum::body::to_bytes(req.into_body(), limits.body)
                .await
                .map_err(|_| Rejected::Body)?;
            params.extend(&body, limits)?;
        }
        Ok(Self(params))
    }
}

impl From<Rejected> for WebError {
    fn from(r: Rejected) -> Self {
        WebError::BadRequest(r.to_string())
    }
}

impl axum::response::IntoResponse for Rejected {
    fn into_response(self) -> axum::response::Response {
        WebError::from(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Params, Rejected> {
        Params::parse(text.as_bytes(), &Limits::default())
    }

    #[test]
    fn debug_output_names_parameters_without_their_values() {
        let params = parse("username=alice&password=s3cret&ticket=ST-1").unwrap();
        let printed = format!("{params:?}");
        assert_eq!(printed, r#"["username", "password", "ticket"]"#);
        let submission = crate::protocol::LoginForm {
            password: "s3cret",
            ..Default::default()
        };
        assert!(!format!("{submission:?}").contains("s3cret"));
        let registry = crate::tickets::MemoryRegistry::new();
        assert!(format!("{registry:?}").starts_with("MemoryRegistry"));
    }

    #[test]
    fn names_are_case_sensitive_and_values_decoded_once() {
        let p = parse("Service=x&service=https%3A%2F%2Fa%2F%3Fq%3D%2520&renew=&a+b=c+d").unwrap();
        assert_eq!(p.get("service"), Some("https://a/?q=%20"));
        assert_eq!(p.get("Service"), Some("x"));
        assert!(p.has("renew"));
        assert_eq!(p.get("renew"), None, "empty values are absent");
        assert_eq!(p.get("a b"), Some("c d"));
    }

    #[test]
    fn the_filter_refuses_what_no_honest_client_sends() {
        assert_eq!(
            parse("ticket=a&ticket=b").unwrap_err(),
            Rejected::Repeated("ticket".into())
        );
        assert_eq!(
            parse("service=https://a/%0D%0ASet-Cookie:x").unwrap_err(),
            Rejected::ControlCharacters("service".into())
        );
        assert_eq!(
            parse("ticket=ST-1%00").unwrap_err(),
            Rejected::ControlCharacters("ticket".into())
        );
        assert_eq!(
            parse(&format!("ticket={}", "A".repeat(257))).unwrap_err(),
            Rejected::TooLong("ticket".into())
        );
        assert!(parse(&format!("ticket={}", "A".repeat(256))).is_ok());
        assert_eq!(
            parse(&format!("service={}", "A".repeat(4097))).unwrap_err(),
            Rejected::TooLong("service".into())
        );
        assert_eq!(
            parse(&format!("username={}", "A".repeat(257))).unwrap_err(),
            Rejected::TooLong("username".into())
        );
        assert_eq!(parse("service=%FF%FE").unwrap_err(), Rejected::NotUtf8);
        assert!(parse("password=tab%09inside").is_ok());
        let many: Vec<String> = (0..33).map(|i| format!("p{i}=x")).collect();
        assert_eq!(
            parse(&many.join("&")).unwrap_err(),
            Rejected::TooMany,
            "found in review: quadratic checks"
        );
    }
}

#[cfg(test)]
mod properties {
    //! Fuzzing by property: whatever arrives, parsing never panics, and honest
    //! parameters come back exactly as sent.
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Params::parse(&bytes, &Limits::default());
        }

        #[test]
        fn encoded_parameters_round_trip(
            pairs in proptest::collection::btree_map("[a-zA-Z_]{1,12}", "[^\\p{Cc}]{0,64}", 0..8)
        ) {
            let mut serializer = form_urlencoded::Serializer::new(String::new());
            for (name, value) in &pairs {
                serializer.append_pair(name, value);
            }
            let encoded = serializer.finish();
            let parsed = Params::parse(encoded.as_bytes(), &Limits::default()).unwrap();
            for (name, value) in &pairs {
                prop_assert!(parsed.has(name));
                prop_assert_eq!(parsed.get(name), (!value.is_empty()).then_some(value.as_str()));
            }
        }

        #[test]
        fn a_control_character_anywhere_is_refused(prefix in "[a-z]{0,8}", c in "[\\x00-\\x08\\x0a-\\x1f\\x7f]") {
            let encoded: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("service", &format!("{prefix}{c}"))
                .finish();
            prop_assert!(matches!(
                Params::parse(encoded.as_bytes(), &Limits::default()),
                Err(Rejected::ControlCharacters(_))
            ));
        }
    }
}
