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
    fn new(text: &str, normalize: fn(&str) -> String) -> Self {
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
    /// As sent, without its `#fragment` (which never reaches the application's server,
    /// and behind which `regex:` patterns could be fooled: `https://evil.example#.app…`).
    raw: &'a str,
    normalized: String,
    /// Decoded, scheme and host lower-cased, path and query as written (prefixes).
    confined: String,
}

impl<'a> Candidate<'a> {
    /// `None` for a URL that could read differently to a browser than to the matching
    /// (it compares decoded text, browsers follow the raw URL): never a service.
    pub fn new(raw: &'a str) -> Option<Self> {
        is_well_formed(raw).then(|| Self {
            raw: without_fragment(raw),
            normalized: normalize(raw),
            confined: normalize_origin(raw),
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
            Ok(Self::Prefix(Literal::new(prefix, normalize_origin)))
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
            Ok(Self::Exact(Literal::new(text, normalize)))
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
            // Paths are case-sensitive on most servers: `/APP/` may be another
            // application than `/app/`, so a prefix confines them as written.
            Self::Prefix(prefix) => service.confined.starts_with(&prefix.normalized),
            Self::Regex(re) => re.is_match(service.raw),
        }
    }

    /// Whether a `regex:` pattern's host part can match `/`, `?`, `#`, `@` or `\` (an
    /// unescaped `.`, `.*` or a class such as `[^/]` before the domain): then a URL on
    /// another host matches it (`https://evil.example?.app.example.org/`). A pattern
    /// whose host part cannot be found is reported too.
    pub fn has_loose_host(&self) -> bool {
        match self {
            Self::Regex(re) => {
                let inner = re.as_str();
                let inner = inner
                    .strip_prefix("^(?:")
                    .and_then(|r| r.strip_suffix(")$"))
                    .unwrap_or(inner);
                regex_syntax::Parser::new()
                    .parse(inner)
                    .map_or(true, |hir| loose_host(&hir))
            }
            Self::Exact(_) | Self::Prefix(_) => false,
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

/// Characters that end or hide a host: a regex that can match one of them in the host
/// part can be satisfied by a URL on another host.
const HOST_BREAKERS: [char; 5] = ['/', '?', '#', '@', '\\'];

/// One step of a pattern, flattened out of its concatenations.
enum Step<'h> {
    Char(char),
    Other(&'h regex_syntax::hir::Hir),
}

fn flatten<'h>(hir: &'h regex_syntax::hir::Hir, out: &mut Vec<Step<'h>>) {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Concat(parts) => parts.iter().for_each(|p| flatten(p, out)),
        HirKind::Capture(capture) => match capture.sub.kind() {
            HirKind::Concat(_) | HirKind::Literal(_) => flatten(&capture.sub, out),
            _ => out.push(Step::Other(hir)),
        },
        HirKind::Literal(literal) => match std::str::from_utf8(&literal.0) {
            Ok(text) => out.extend(text.chars().map(Step::Char)),
            Err(_) => out.push(Step::Other(hir)),
        },
        _ => out.push(Step::Other(hir)),
    }
}

/// Whether anything but a literal in `hir` can match a [`HOST_BREAKERS`] character.
fn can_break_host(hir: &regex_syntax::hir::Hir) -> bool {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Literal(_) | HirKind::Look(_) => false,
        HirKind::Class(Class::Unicode(class)) => class.iter().any(|r| {
            HOST_BREAKERS
                .iter()
                .any(|c| (r.start()..=r.end()).contains(c))
        }),
        HirKind::Class(Class::Bytes(class)) => class.iter().any(|r| {
            HOST_BREAKERS
                .iter()
                .any(|&c| (r.start()..=r.end()).contains(&(c as u8)))
        }),
        HirKind::Repetition(rep) => can_break_host(&rep.sub),
        HirKind::Capture(capture) => can_break_host(&capture.sub),
        HirKind::Concat(parts) | HirKind::Alternation(parts) => parts.iter().any(can_break_host),
    }
}

/// See [`ServicePattern::has_loose_host`]: the steps after `://` up to the first literal
/// `/`, `?` or `#` are the host part. A pattern that is one alternation is judged branch
/// by branch.
fn loose_host(hir: &regex_syntax::hir::Hir) -> bool {
    use regex_syntax::hir::HirKind;
    let mut steps = Vec::new();
    flatten(hir, &mut steps);
    if let [Step::Other(only)] = steps.as_slice() {
        let alternatives = match only.kind() {
            HirKind::Alternation(branches) => Some(branches),
            HirKind::Capture(c) => match c.sub.kind() {
                HirKind::Alternation(branches) => Some(branches),
                _ => None,
            },
            _ => None,
        };
        if let Some(branches) = alternatives {
            return branches.iter().any(loose_host);
        }
    }
    let scheme_end = steps
        .windows(3)
        .position(|w| matches!(w, [Step::Char(':'), Step::Char('/'), Step::Char('/')]));
    let Some(at) = scheme_end else {
        return true;
    };
    steps[at + 3..]
        .iter()
        .take_while(|s| match s {
            Step::Char(c) => !matches!(c, '/' | '?' | '#'),
            Step::Other(hir) => !starts_a_path(hir),
        })
        .any(|s| matches!(s, Step::Other(hir) if can_break_host(hir)))
}

/// Whether whatever `hir` matches begins with a literal `/`, `?` or `#` (an optional
/// path such as `(/.*)?`): the host part ends before it.
fn starts_a_path(hir: &regex_syntax::hir::Hir) -> bool {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Literal(literal) => matches!(literal.0.first(), Some(b'/' | b'?' | b'#')),
        HirKind::Concat(parts) => parts.first().is_some_and(starts_a_path),
        HirKind::Capture(capture) => starts_a_path(&capture.sub),
        HirKind::Repetition(rep) => starts_a_path(&rep.sub),
        HirKind::Alternation(branches) => branches.iter().all(starts_a_path),
        HirKind::Empty | HirKind::Class(_) | HirKind::Look(_) => false,
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
    !has_dot_segment(raw_path)
}

/// Whether `path` holds a `.` or `..` segment in any form a server may resolve: raw,
/// percent-encoded once or several times (`%252e%252e`), or with path parameters
/// (`..;/`, which Tomcat reads as `..`). Each decoding is checked, up to the point
/// where decoding changes nothing.
fn has_dot_segment(path: &str) -> bool {
    let dotted = |path: &str| {
        path.split(['/', '\\']).any(|segment| {
            let name = segment.split(';').next().unwrap_or_default();
            name == "." || name == ".."
        })
    };
    let mut current = std::borrow::Cow::Borrowed(path);
    // Three decodings reach `%25252e`; a fourth level would have to survive three
    // servers decoding in turn.
    for _ in 0..4 {
        if dotted(&current) {
            return true;
        }
        let decoded = percent_encoding::percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == current {
            return false;
        }
        current = std::borrow::Cow::Owned(decoded);
    }
    dotted(&current) || current.contains('%')
}

fn without_fragment(service: &str) -> &str {
    service.split_once('#').map_or(service, |(head, _)| head)
}

/// The comparison form for prefixes: as [`normalize`], but only the scheme and host are
/// lower-cased; path and query keep their case.
pub fn normalize_origin(service: &str) -> String {
    let without_fragment = without_fragment(service);
    let decoded = match percent_encoding::percent_decode_str(without_fragment).decode_utf8() {
        Ok(decoded) => decoded.into_owned(),
        Err(_) => without_fragment.to_owned(),
    };
    let authority_end = decoded
        .find("://")
        .map(|at| at + 3)
        .and_then(|start| {
            decoded[start..]
                .find(['/', '?', '#'])
                .map(|end| start + end)
        })
        .unwrap_or(decoded.len());
    let (origin, rest) = decoded.split_at(authority_end);
    format!("{}{rest}", origin.to_lowercase())
}

/// The comparison form of a service URL (CC-01, CC-03, CC-05): decoded once, without
/// `#fragment`, lower-cased. Query order, trailing slashes and `www.` stay significant.
/// Escapes that do not decode to UTF-8 are compared as written: a lossy decoding would
/// make `%FE` and `%FF` the same character.
pub fn normalize(service: &str) -> String {
    let without_fragment = without_fragment(service);
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

    /// Security review (issue 13, item 5): a sloppy regex is matched without the
    /// fragment, so `#` cannot carry its domain; the host-part check flags it anyway.
    #[test]
    fn a_regex_never_matches_through_the_fragment() {
        let sloppy = ServicePattern::parse(r"regex:https://.*\.sloppy\.example\.org/.*").unwrap();
        assert!(!sloppy.matches("https://evil.com#.sloppy.example.org/"));
        assert!(sloppy.matches("https://app.sloppy.example.org/x#top"));
        assert!(sloppy.has_loose_host());
    }

    #[test]
    fn a_regex_whose_host_part_can_leave_the_host_is_flagged() {
        for loose in [
            r"regex:https://.*\.example\.org/.*",
            r"regex:https://[^/]+\.example\.org/.*",
            r"regex:https://app.example.org.*",
            r"regex:https?://(.+)\.example\.org/.*",
            r"regex:(https://a\.example\.org/.*|https://.*b\.example\.org/.*)",
            r"regex:.*",
            r"regex:https://[\w.@-]+/",
        ] {
            let p = ServicePattern::parse(loose).unwrap();
            assert!(p.has_loose_host(), "{loose}");
        }
        for tight in [
            r"regex:https://app\.example\.org/.*",
            r"regex:https://[a-z0-9-]+\.example\.org/.*",
            r"regex:https?://(localhost|127\.0\.0\.1):\d+/cb/.*",
            r"regex:(https://a\.example\.org/.*|https://b\.example\.org/)",
            r"regex:http://127\.0\.0\.1:\d+/one/.*",
            r"regex:https?://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?(/[^\s]*)?",
            "https://app.example.org/",
            "prefix:https://app.example.org/",
        ] {
            let p = ServicePattern::parse(tight).unwrap();
            assert!(!p.has_loose_host(), "{tight}");
        }
    }

    /// Security review (issue 13, item 6): a prefix confines paths. Only the scheme and
    /// host are case-insensitive, and dot segments in any encoding never match.
    #[test]
    fn a_prefix_confines_its_path() {
        let p = ServicePattern::parse("prefix:https://host.example/app/").unwrap();
        assert!(p.matches("https://host.example/app/page"));
        assert!(p.matches("HTTPS://HOST.example/app/Page?Q=1"));
        for outside in [
            "https://host.example/APP/",
            "https://host.example/App/x",
            "https://host.example/app/..;/admin",
            "https://host.example/app/..;jsessionid=1/admin",
            "https://host.example/app/%252e%252e/admin",
            "https://host.example/app/%25252e%25252e/admin",
            "https://host.example/app/%2e%2e%2fadmin",
            "https://host.example/app/.%2e/admin",
            "https://host.example/app/..\\admin",
            "https://host.example/app/;/../admin",
        ] {
            assert!(!p.matches(outside), "{outside}");
        }
        assert!(p.matches("https://host.example/app/a;jsessionid=1/b"));
        assert!(
            p.matches("https://host.example/app/x?next=/../y"),
            "the query is not a path"
        );
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
