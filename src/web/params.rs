//! Protocol parameters from the query string or a form body.
//!
//! Names are case-sensitive (GEN-01) and values are decoded exactly once (GEN-02). A
//! protocol parameter given twice is refused: which copy a server picks differs between
//! implementations, and that difference is how parameter-pollution attacks work.

use axum::extract::{FromRequest, Request};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;

use super::error::WebError;

/// Largest form body accepted for a login or validation POST.
const MAX_FORM_BYTES: usize = 64 * 1024;

#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(encoded: &str) -> Self {
        Self(
            form_urlencoded::parse(encoded.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
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

    /// The first of `names` given more than once.
    pub fn repeated<'a>(&self, names: &[&'a str]) -> Option<&'a str> {
        names
            .iter()
            .find(|name| self.0.iter().filter(|(k, _)| k == *name).count() > 1)
            .copied()
    }

    fn extend(&mut self, other: Self) {
        self.0.extend(other.0);
    }
}

/// Query parameters, plus the form body of a POST (GEN-08).
#[derive(Debug)]
pub struct CasParams(pub Params);

impl<S: Send + Sync> FromRequest<S> for CasParams {
    type Rejection = WebError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, WebError> {
        let mut params = Params::parse(req.uri().query().unwrap_or_default());
        let is_form = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if req.method() == Method::POST && is_form {
            let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
                .await
                .map_err(|_| {
                    WebError::BadRequest("The request body is too large or was interrupted.")
                })?;
            let text = std::str::from_utf8(&body)
                .map_err(|_| WebError::BadRequest("The form is not valid UTF-8."))?;
            params.extend(Params::parse(text));
        }
        Ok(Self(params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_sensitive_and_values_decoded_once() {
        let p = Params::parse("Service=x&service=https%3A%2F%2Fa%2F%3Fq%3D%2520&renew=");
        assert_eq!(p.get("service"), Some("https://a/?q=%20"));
        assert!(p.has("renew"));
        assert_eq!(p.get("renew"), None, "empty values are absent");
        assert!(!p.has("gateway"));
        assert_eq!(p.repeated(&["service", "ticket"]), None);
        assert_eq!(
            Params::parse("ticket=a&ticket=b").repeated(&["service", "ticket"]),
            Some("ticket")
        );
    }
}
