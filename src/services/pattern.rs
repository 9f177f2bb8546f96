//! How a registry entry decides whether a `service` URL belongs to it.
//!
//! Exact matching is the default because it is the only kind that cannot surprise:
//! `prefix:https://app.example.org` would also match `https://app.example.org.evil.com/`,
//! and `regex:https://app.example.org/.*` (dots unescaped) matches `https://appXexample.org/`.
//! Both are opt-in, and a prefix must end its authority with `/` (checked at load).

use std::fmt;

use regex::{Regex, RegexBuilder};

/// A parsed `pattern` value from a `[[services]]` entry.
#[derive(Clone)]
pub enum ServicePattern {
    /// The whole URL, compared after [`normalize`] (CC-01..03).
    Exact(Literal),
    /// `prefix:` — the normalised URL starts with this normalised prefix.
    Prefix(Literal),
    /// `regex:` — anchored at both ends, case-insensitive like Apereo's `serviceId`.
    Regex(Regex),
}

/// A URL as configured, and normalised once at load rather than at every lookup.
#[derive(Clone)]
pub struct Literal {
    text: String,
    normalized: String,
}

impl Literal {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            normalized: normalize(text),
        }
    }
}

impl fmt::Debug for ServicePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for ServicePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(url) => write!(f, "{}", url.text),
            Self::Prefix(prefix) => write!(f, "prefix:{}", prefix.text),
            Self::Regex(re) => write!(f, "regex:{}", re.as_str()),
        }
    }
}

/// A service URL about to be matched: well-formed, and normalised once.
pub struct Candidate<'a> {
    raw: &'a str,
    normalized: String,
}

impl<'a> Candidate<'a> {
    /// `None` for a URL that could read differently to a browser than to the matching
    /// (it compares decoded text, browsers follow the raw URL): never a service.
    pub fn new(raw: &'a str) -> Option<Self> {
        is_well_formed(raw).then(|| Self {
            raw,
            normalized: normalize(raw),
        })
    }
}

/// Why a pattern string was refused; the text is shown to operators as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(pub String);

impl ServicePattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if let Some(prefix) = text.strip_prefix("prefix:") {
            check_prefix(prefix)?;
            Ok(Self::Prefix(Literal::new(prefix)))
        } else if let Some(re) = text.strip_prefix("regex:") {
            let anchored = format!("^(?:{re})$");
            RegexBuilder::new(&anchored)
                .case_insensitive(true)
                .size_limit(1 << 20)
                .build()
                .map(Self::Regex)
                .map_err(|e| PatternError(format!("invalid regular expression: {e}")))
        } else {
            check_absolute_http_url(text)?;
            Ok(Self::Exact(Literal::new(text)))
        }
    }

    pub fn matches(&self, service: &str) -> bool {
        Candidate::new(service).is_some_and(|c| self.matches_candidate(&c))
    }

    /// `matches` for a service URL already checked and normalised (once per lookup,
    /// however many entries are tried).
    pub fn matches_candidate(&self, service: &Candidate<'_>) -> bool {
        match self {
            Self::Exact(url) => url.normalized == service.normalized,
            Self::Prefix(prefix) => service.normalized.starts_with(&prefix.normalized),
            Self::Regex(re) => re.is_match(service.raw),
        }
    }

    /// The literal text a service URL is compared with, for near-miss reports.
    pub fn literal(&self) -> Option<&str> {
        match self {
            Self::Exact(s) | Self::Prefix(s) => Some(&s.text),
            Self::Regex(_) => None,
        }
    }
}

fn check_absolute_http_url(text: &str) -> Result<(), PatternError> {
    let url = url::Url::parse(text).map_err(|e| {
        PatternError(format!(
            "`{text}` is not an absolute URL ({e}); use `prefix:` or `regex:` for patterns"
        ))
    })?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(PatternError(format!(
            "`{text}` must be an http:// or https:// URL"
        )));
    }
    Ok(())
}

fn check_prefix(prefix: &str) -> Result<(), PatternError> {
    let rest = prefix
        .strip_prefix("https://")
        .or_else(|| prefix.strip_prefix("http://"))
        .ok_or_else(|| {
            PatternError(format!(
                "prefix `{prefix}` must start with https:// or http://"
            ))
        })?;
    match rest.find('/') {
        Some(at) if at > 0 => Ok(()),
        _ => Err(PatternError(format!(
            "prefix `{prefix}` must end its host with `/` (e.g. `{prefix}/`), otherwise it also matches `{prefix}.evil.example/`"
        ))),
    }
}

/// A URL that means the same to every reader: absolute http(s), an authority with no
/// userinfo and no escapes (`%`, `@`, `\`), no dot-segments in its path (raw or decoded).
///
/// Without this, `https://app.example.org%2F@evil.example/` decodes to a URL under
/// `prefix:https://app.example.org/` while a browser sends it, and its ticket, to
/// `evil.example`.
pub fn is_well_formed(service: &str) -> bool {
    let lower = service.get(..8).unwrap_or(service).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &service[8..]
    } else if lower.starts_with("http://") {
        &service[7..]
    } else {
        return false;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.is_empty()
        || authority.contains(['%', '@', '\\'])
        || authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    let Ok(parsed) = url::Url::parse(service) else {
        return false;
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return false;
    }
    let after = &rest[authority_end..];
    let raw_path = after.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
    let dotted = |path: &str| path.split(['/', '\\']).any(|seg| seg == "." || seg == "..");
    !dotted(raw_path) && !dotted(&decoded)
}

/// The comparison form of a service URL (CC-01, CC-03, CC-05): decoded once, without
/// `#fragment`, lower-cased. Query order, trailing slashes and `www.` stay significant.
/// Escapes that do not decode to UTF-8 are compared as written: a lossy decoding would
/// make `%FE` and `%FF` the same character.
pub fn normalize(service: &str) -> String {
    let without_fragment = service.split_once('#').map_or(service, |(head, _)| head);
    match percent_encoding::percent_decode_str(without_fragment).decode_utf8() {
        Ok(decoded) => decoded.to_lowercase(),
        Err(_) => without_fragment.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_ignores_case_encoding_and_fragment_only() {
        let p = ServicePattern::parse("https://app.example.org/cas?x=1").unwrap();
        assert!(p.matches("https://APP.example.org/cas?x=1"));
        assert!(p.matches("https://app.example.org/cas%3Fx%3D1"));
        assert!(p.matches("https://app.example.org/cas?x=1#top"));
        assert!(!p.matches("https://app.example.org/cas?x=1&y=2"));
        assert!(!p.matches("https://app.example.org/cas/?x=1"));
        assert!(!p.matches("https://www.app.example.org/cas?x=1"));
        assert_ne!(
            normalize("https://a.example/?u=%FF"),
            normalize("https://a.example/?u=%FE"),
            "invalid UTF-8 escapes stay distinct"
        );
        assert_eq!(
            normalize("https://a.example/?u=%C3%A9"),
            normalize("https://a.example/?u=\u{e9}")
        );
    }

    #[test]
    fn prefix_must_close_its_authority() {
        assert!(ServicePattern::parse("prefix:https://app.example.org").is_err());
        let p = ServicePattern::parse("prefix:https://app.example.org/").unwrap();
        assert!(p.matches("https://app.example.org/anything?q=1"));
        assert!(!p.matches("https://app.example.org.evil.example/"));
        assert!(ServicePattern::parse("prefix:ftp://x/").is_err());
    }

    #[test]
    fn regex_is_anchored_and_checked() {
        let p = ServicePattern::parse(r"regex:https://app\.example\.org/.*").unwrap();
        assert!(p.matches("https://app.example.org/a"));
        assert!(!p.matches("https://evil.example/?https://app.example.org/a"));
        assert!(!p.matches("https://app.example.org/a\nx"));
        assert!(ServicePattern::parse("regex:(unclosed").is_err());
    }

    /// Found in review: decoding let a foreign host match a prefix.
    #[test]
    fn urls_that_read_differently_to_a_browser_never_match() {
        let p = ServicePattern::parse("prefix:https://app.example.org/").unwrap();
        for hostile in [
            "https://app.example.org%2F@evil.example/",
            "https://app.example.org%2f%40evil.example/",
            "https://user:pass@app.example.org/",
            "https://app.example.org\\@evil.example/",
            "https://app.example.org/a/../../admin",
            "https://app.example.org/a/%2e%2e/admin",
            "https://app.example.org/./x",
            "https:/app.example.org/",
            "javascript:alert(1)//https://app.example.org/",
        ] {
            assert!(!p.matches(hostile), "{hostile}");
        }
        assert!(p.matches("HTTPS://app.example.org/ok?next=%2Fhome&x=%40"));
        let exact = ServicePattern::parse("https://app.example.org/").unwrap();
        assert!(!exact.matches("https://app.example.org%2F/"));
    }

    #[test]
    fn exact_pattern_must_be_an_http_url() {
        assert!(ServicePattern::parse("app.example.org").is_err());
        assert!(ServicePattern::parse("javascript:alert(1)").is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn url() -> impl Strategy<Value = String> {
        (
            "[a-z]{1,10}",
            "[a-z]{2,8}",
            "(/[a-zA-Z0-9_~-][a-zA-Z0-9._~-]{0,11}){0,3}",
            "(\\?[a-z]=[a-z0-9%]{0,6}(&[a-z]=[a-z0-9]{0,6}){0,2})?",
        )
            .prop_map(|(host, tld, path, query)| format!("https://{host}.{tld}{path}{query}"))
    }

    proptest! {
        #[test]
        fn normalising_anything_never_panics(text in any::<String>()) {
            let _ = normalize(&text);
        }

        #[test]
        fn matching_anything_never_panics(pattern in any::<String>(), service in any::<String>()) {
            if let Ok(p) = ServicePattern::parse(&pattern) {
                let _ = p.matches(&service);
            }
        }

        #[test]
        fn an_exact_pattern_matches_itself_and_not_another_host(u in url(), other in "[a-z]{1,10}") {
            let p = ServicePattern::parse(&u).unwrap();
            prop_assert!(p.matches(&u));
            prop_assert!(p.matches(&u.to_uppercase()));
            let moved_host = format!("https://{other}x.");
            let moved = u.replacen("https://", &moved_host, 1);
            prop_assert!(!p.matches(&moved));
        }

        #[test]
        fn a_prefix_never_matches_a_lookalike_host(host in "[a-z]{1,10}\\.org", tail in "[a-z][a-z.]{0,9}") {
            let p = ServicePattern::parse(&format!("prefix:https://{host}/")).unwrap();
            let inside = format!("https://{host}/{tail}");
            let lookalike = format!("https://{host}.{tail}/");
            prop_assert!(p.matches(&inside));
            prop_assert!(!p.matches(&lookalike));
        }
    }
}
