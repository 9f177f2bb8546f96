//! Cookie attributes (TGC-02..05): host-only, Path = base path, HttpOnly, Secure,
//! SameSite, no Max-Age (a browser-session cookie) unless remember-me asks for one, and
//! the matching deletion. Used for the TGC and the `CASPRIVACY` warn cookie.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use cookie::{Cookie, SameSite as CookieSameSite};

use crate::config::SameSite;

#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub name: String,
    pub path: String,
    pub secure: bool,
    pub same_site: SameSite,
}

impl CookieSettings {
    /// `Set-Cookie` value establishing the SSO session.
    pub fn set(&self, value: &str) -> String {
        self.build(value.to_owned()).to_string()
    }

    /// TGC-05: a cookie that outlives the browser session, for remember-me.
    pub fn set_persistent(&self, value: &str, max_age: std::time::Duration) -> String {
        let mut c = self.build(value.to_owned());
        c.set_max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ));
        c.to_string()
    }

    /// Whether the request carries this cookie at all.
    pub fn present(&self, headers: &HeaderMap) -> bool {
        !self.values(headers).is_empty()
    }

    /// `Set-Cookie` value removing it (LOGOUT-01): same name and path, `Max-Age=0`.
    pub fn clear(&self) -> String {
        let mut c = self.build(String::new());
        c.set_max_age(cookie::time::Duration::ZERO);
        c.set_expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
        c.to_string()
    }

    fn build(&self, value: String) -> Cookie<'static> {
        let mut c = Cookie::new(self.name.clone(), value);
        c.set_path(self.path.clone());
        c.set_http_only(true);
        c.set_secure(self.secure);
        c.set_same_site(match self.same_site {
            SameSite::Lax => CookieSameSite::Lax,
            SameSite::Strict => CookieSameSite::Strict,
            SameSite::None => CookieSameSite::None,
        });
        c
    }

    /// Every value the request carries under our cookie name (a parent domain may have
    /// planted another; the codec decides which, if any, is ours).
    pub fn values<'h>(&self, headers: &'h HeaderMap) -> Vec<&'h str> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == self.name)
            .map(|(_, value)| value.trim_matches('"'))
            .filter(|v| !v.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn settings() -> CookieSettings {
        CookieSettings {
            name: "TGC".into(),
            path: "/cas".into(),
            secure: true,
            same_site: SameSite::Lax,
        }
    }

    #[test]
    fn cookie_attributes_are_strict_and_session_scoped() {
        let set = settings().set("abc");
        assert!(set.starts_with("TGC=abc"));
        for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/cas"] {
            assert!(set.contains(attr), "{set}");
        }
        assert!(!set.contains("Max-Age") && !set.contains("Expires") && !set.contains("Domain"));
        let clear = settings().clear();
        assert!(
            clear.contains("Max-Age=0") && clear.contains("Path=/cas"),
            "{clear}"
        );
    }

    #[test]
    fn reads_every_value_of_the_cookie() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; TGC=x; TGCX=y"));
        h.append(COOKIE, HeaderValue::from_static("TGC=z"));
        assert_eq!(settings().values(&h), vec!["x", "z"]);
    }
}
