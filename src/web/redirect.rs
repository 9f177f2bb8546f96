//! Redirects to service URLs.

use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::error::WebError;

/// Bytes a `Location` header cannot carry as they are: controls, space and non-ASCII are
/// percent-encoded, as a browser would when following the link; everything else,
/// including existing `%XX` escapes, is kept byte for byte.
const LOCATION_UNSAFE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// 302 to `location` (LOGINP-01: browsers turn it into a GET without the credentials).
pub fn found(location: &str) -> Result<Response, WebError> {
    let encoded = utf8_percent_encode(location, LOCATION_UNSAFE).to_string();
    let value = HeaderValue::from_str(&encoded).map_err(|_| {
        WebError::BadRequest("The service URL cannot be used as a redirect.".into())
    })?;
    Ok((StatusCode::FOUND, [(LOCATION, value)]).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_keeps_the_url_and_encodes_what_headers_cannot_carry() {
        let r = found("https://a.example/x?q=%20&é=1#f").unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(
            r.headers()[LOCATION],
            "https://a.example/x?q=%20&%C3%A9=1#f"
        );
        let r = found("https://a.example/\r\nSet-Cookie: x=1").unwrap();
        assert_eq!(
            r.headers()[LOCATION],
            "https://a.example/%0D%0ASet-Cookie:%20x=1"
        );
    }
}
