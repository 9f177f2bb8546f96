//! `[http_headers]`: the security headers, each switchable for a proxy that sets it.

use serde::Deserialize;

use super::Section;
use super::report::Scope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    hsts: bool,
    hsts_max_age: String,
    hsts_include_subdomains: bool,
    frame_options: bool,
    frame_ancestors: Vec<String>,
    content_type_options: bool,
    content_security_policy: bool,
    referrer_policy: bool,
}

/// Security headers, each switchable.
#[derive(Debug, Clone)]
pub struct HttpHeaders {
    /// `Strict-Transport-Security`, sent on HTTPS responses only.
    pub hsts: Option<String>,
    pub frame_options: bool,
    /// Origins allowed to frame the pages (CSP `frame-ancestors`); empty: none.
    pub frame_ancestors: Vec<String>,
    pub content_type_options: bool,
    pub content_security_policy: bool,
    pub referrer_policy: bool,
}

impl Section for Raw {
    const NAME: &'static str = "http_headers";
    type Checked = HttpHeaders;

    fn validate(self, cx: &mut Scope<'_>) -> Option<HttpHeaders> {
        let max_age = cx.duration("hsts_max_age", &self.hsts_max_age)?;
        for (i, origin) in self.frame_ancestors.iter().enumerate() {
            let ok = url::Url::parse(origin)
                .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.path() == "/")
                // Printable ASCII only: the URL parser drops tabs and line breaks, which
                // would then make the policy an invalid header, sent nowhere.
                && origin.chars().all(|c| c.is_ascii_graphic())
                && !origin.contains(['\'', ';', ',']);
            if !ok {
                cx.entry("frame_ancestors", i).problem(
                    "",
                    format!("{origin:?} is not an origin such as \"https://portal.example.org\""),
                );
                return None;
            }
        }
        Some(HttpHeaders {
            hsts: self.hsts.then(|| {
                let mut value = format!("max-age={}", max_age.as_secs());
                if self.hsts_include_subdomains {
                    value.push_str("; includeSubDomains");
                }
                value
            }),
            frame_options: self.frame_options,
            frame_ancestors: self
                .frame_ancestors
                .iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
            content_type_options: self.content_type_options,
            content_security_policy: self.content_security_policy,
            referrer_policy: self.referrer_policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    #[test]
    fn http_headers_mistakes_name_the_file_and_key() {
        let e = load_text(
            "[http_headers]\nframe_ancestors = [\"https://portal.example.org\", \"https://x.example.org/app\"]\n",
        )
        .unwrap_err();
        assert_eq!(keys(&e), ["http_headers.frame_ancestors[1]"]);
        assert_problem(&e, "http_headers.frame_ancestors[1]", "is not an origin");

        // A trailing line break (an environment value, a multi-line string) would make the
        // policy an invalid header value, silently sent nowhere.
        for broken in [
            "https://portal.example.org\\n",
            "https://portal.example.org\\t",
            "https://pörtal.example.org",
        ] {
            let e = load_text(&format!(
                "[http_headers]\nframe_ancestors = [\"{broken}\"]\n"
            ))
            .unwrap_err();
            assert_problem(&e, "http_headers.frame_ancestors[0]", "is not an origin");
        }

        let e = load_text("[http_headers]\nhsts_max_age = \"forever\"\n").unwrap_err();
        assert_problem(&e, "http_headers.hsts_max_age", "is not a duration");
    }

    #[test]
    fn hsts_is_one_header_value() {
        let s =
            load_text("[http_headers]\nhsts_max_age = \"1d\"\nhsts_include_subdomains = false\n")
                .unwrap();
        assert_eq!(s.http_headers.hsts.as_deref(), Some("max-age=86400"));
        let s = load_text("[http_headers]\nhsts = false\n").unwrap();
        assert!(s.http_headers.hsts.is_none());
    }
}
