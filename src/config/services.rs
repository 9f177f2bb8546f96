//! `[[services]]`: the service registry. Entries of an array of tables take no defaults
//! from the embedded file, so their defaults are the serde defaults below (documented,
//! commented out, in `config/example.toml`).

use std::collections::HashSet;

use serde::Deserialize;

use super::pattern::ServicePattern;
use super::report::Scope;
use super::{Section, ui};

/// The `[[services]]` entries, in file order.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub(super) struct Raw(Vec<Service>);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Service {
    id: u32,
    name: String,
    #[serde(default)]
    description: String,
    pattern: String,
    #[serde(default)]
    evaluation_order: i32,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    attributes: Vec<String>,
    proxy_callback: Option<String>,
    #[serde(default)]
    accept_proxy_tickets: bool,
    #[serde(default = "back_channel")]
    logout_type: String,
    logout_url: Option<String>,
    #[serde(default = "redirect")]
    response_type: String,
    #[serde(default = "yes")]
    sso: bool,
    max_auth_age: Option<String>,
    create_cookie_on_renew: Option<bool>,
    theme: Option<ui::Theme>,
}

fn yes() -> bool {
    true
}

fn back_channel() -> String {
    "back_channel".to_owned()
}

fn redirect() -> String {
    "redirect".to_owned()
}

impl Section for Raw {
    const NAME: &'static str = "services";
    type Checked = Vec<RegisteredService>;

    fn validate(self, cx: &mut Scope<'_>) -> Option<Vec<RegisteredService>> {
        let mut seen = HashSet::new();
        let mut services = Vec::with_capacity(self.0.len());
        for (i, s) in self.0.into_iter().enumerate() {
            let mut cx = cx.entry("", i);
            if !seen.insert(s.id) {
                cx.problem("id", format!("id {} is used by another service", s.id));
            }
            if let Some(service) = s.validate(&mut cx) {
                services.push(service);
            }
        }
        Some(services)
    }
}

impl Service {
    fn validate(self, cx: &mut Scope<'_>) -> Option<RegisteredService> {
        if self.name.trim().is_empty() {
            cx.problem("name", "give the service a name users will recognise");
        }
        let proxy_callback = match self.proxy_callback.as_deref().map(ServicePattern::parse) {
            None => Some(None),
            Some(Ok(p)) => Some(Some(p)),
            Some(Err(e)) => {
                cx.problem("proxy_callback", e.0);
                None
            }
        };
        let logout = logout_policy(cx, &self.logout_type, self.logout_url);
        let response_type = match self.response_type.as_str() {
            "redirect" => Some(ResponseType::Redirect),
            "post" => Some(ResponseType::Post),
            "header" => Some(ResponseType::Header),
            other => {
                cx.problem(
                    "response_type",
                    format!("`{other}` is not \"redirect\", \"post\" or \"header\""),
                );
                None
            }
        };
        let max_auth_age = match &self.max_auth_age {
            None => Some(None),
            Some(text) => cx.duration("max_auth_age", text).map(Some),
        };
        let theme = match self.theme {
            None => Some(None),
            Some(theme) => theme.validate(&mut cx.at("theme")).map(Some),
        };
        let pattern = ServicePattern::parse(&self.pattern)
            .map_err(|e| cx.problem("pattern", e.0))
            .ok();
        Some(RegisteredService {
            id: self.id,
            name: self.name,
            description: self.description,
            pattern: pattern?,
            evaluation_order: self.evaluation_order,
            enabled: self.enabled,
            attributes: self.attributes,
            proxy_callback: proxy_callback?,
            accept_proxy_tickets: self.accept_proxy_tickets,
            logout: logout?,
            response_type: response_type?,
            sso_enabled: self.sso,
            max_auth_age: max_auth_age?,
            create_cookie_on_renew: self.create_cookie_on_renew,
            theme: theme?,
        })
    }
}

fn logout_policy(cx: &mut Scope<'_>, kind: &str, url: Option<String>) -> Option<LogoutPolicy> {
    let kind = match kind {
        "back_channel" => LogoutType::BackChannel,
        "front_channel" => LogoutType::FrontChannel,
        "none" => LogoutType::None,
        other => {
            cx.problem(
                "logout_type",
                format!("`{other}` is not \"back_channel\", \"front_channel\" or \"none\""),
            );
            return None;
        }
    };
    if let Some(u) = &url {
        let ok = url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "https" | "http"))
            && !u.chars().any(char::is_control);
        if !ok {
            cx.problem(
                "logout_url",
                format!("`{u}` is not an absolute http(s) URL"),
            );
            return None;
        }
    }
    Some(LogoutPolicy { kind, url })
}

/// One `[[services]]` entry, validated.
#[derive(Debug, Clone)]
pub struct RegisteredService {
    pub id: u32,
    pub name: String,
    pub description: String,
    pub pattern: ServicePattern,
    pub evaluation_order: i32,
    /// A disabled entry behaves as if it were absent (SVC-02).
    pub enabled: bool,
    /// Names of the user attributes released to this service on `/p3` and JSON; none by default.
    pub attributes: Vec<String>,
    /// SVC-03: which `pgtUrl`s may receive a PGT for this service; `None` refuses proxying.
    pub proxy_callback: Option<ServicePattern>,
    /// Whether proxy tickets may be issued for this service (`/proxy?targetService=`).
    pub accept_proxy_tickets: bool,
    /// How this service learns of single logout (SVC-08).
    pub logout: LogoutPolicy,
    /// How the ticket is delivered (SVC-09, LOGIN-14).
    pub response_type: ResponseType,
    /// LOGIN-17: `false` asks for credentials every time, as if `renew` were always set.
    pub sso_enabled: bool,
    /// SVC-05: an SSO session authenticated longer ago than this must log in again.
    pub max_auth_age: Option<std::time::Duration>,
    /// TGC-09: overrides `sso.create_cookie_on_renew` for this service.
    pub create_cookie_on_renew: Option<bool>,
    /// The look of the pages shown for this service.
    pub theme: Option<Theme>,
}

/// SVC-09: how the browser is sent back to the service with its ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseType {
    /// A 302 to the service with `ticket` in the query (the default).
    #[default]
    Redirect,
    /// A page that POSTs `ticket` to the service (LOGIN-11).
    Post,
    /// `service` and `ticket` response headers, no redirect (LOGIN-12).
    Header,
}

impl ResponseType {
    /// The `method` parameter's meaning (LOGIN-11..13); unknown values are `None`.
    pub fn from_method(method: &str) -> Option<Self> {
        match method.to_ascii_uppercase().as_str() {
            "GET" => Some(Self::Redirect),
            "POST" => Some(Self::Post),
            "HEADER" => Some(Self::Header),
            _ => None,
        }
    }
}

/// The look of the pages: a name, a logo and an accent colour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Theme {
    pub display_name: Option<String>,
    pub logo_url: Option<String>,
    /// `#rrggbb`, checked at load.
    pub accent_colour: Option<String>,
}

/// SLO-07: how a service is told that an SSO session it joined has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogoutType {
    /// The server POSTs a LogoutRequest (the default).
    #[default]
    BackChannel,
    /// The logout page sends the user's browser with a SAMLRequest.
    FrontChannel,
    /// Not told.
    None,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogoutPolicy {
    pub kind: LogoutType,
    /// Where to send it; by default the service URL the ticket was issued for.
    pub url: Option<String>,
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    #[test]
    fn service_mistakes_name_the_file_and_the_entry() {
        let e = load_text(
            "[[services]]\nid = 1\nname = \"A\"\npattern = \"https://a.example.org/\"\n\
             [[services]]\nid = 1\nname = \" \"\npattern = \"regex:(\"\nlogout_type = \"smoke\"\nresponse_type = \"pigeon\"\nmax_auth_age = \"a while\"\ntheme = { accent_colour = \"red\" }\n",
        )
        .unwrap_err();
        assert_eq!(
            keys(&e),
            [
                "services[1].id",
                "services[1].name",
                "services[1].logout_type",
                "services[1].response_type",
                "services[1].max_auth_age",
                "services[1].theme.accent_colour",
                "services[1].pattern"
            ]
        );
        assert_problem(&e, "services[1].pattern", "regular expression");
        assert_problem(
            &e,
            "services[1].theme.accent_colour",
            "`red` is not a colour",
        );
    }

    #[test]
    fn service_proxy_policies_are_parsed_and_checked() {
        let s = load_text(
            "[[services]]\nid = 1\nname = \"Portal\"\npattern = \"https://p.example.org/\"\nproxy_callback = \"prefix:https://p.example.org/cb/\"\naccept_proxy_tickets = true\n",
        )
        .unwrap();
        assert!(s.services[0].accept_proxy_tickets);
        assert!(
            s.services[0]
                .proxy_callback
                .as_ref()
                .unwrap()
                .matches("https://p.example.org/cb/x")
        );
        let e = load_text(
            "[[services]]\nid = 1\nname = \"Portal\"\npattern = \"https://p.example.org/\"\nproxy_callback = \"regex:(\"\n[tickets]\npt_ttl = \"1h\"\n",
        )
        .unwrap_err();
        assert_eq!(
            keys(&e),
            vec!["tickets.pt_ttl", "services[0].proxy_callback"],
            "{e}"
        );
    }

    #[test]
    fn a_logout_url_must_be_absolute_http() {
        let e = load_text(
            "[[services]]\nid = 1\nname = \"A\"\npattern = \"https://a.example.org/\"\nlogout_url = \"/logout\"\n",
        )
        .unwrap_err();
        assert_problem(&e, "services[0].logout_url", "not an absolute http(s) URL");
    }

    /// The commented-out `[[services]]` example, uncommented, is a valid service entry: an
    /// operator copying it must not meet duplicate keys or stale names.
    #[test]
    fn the_commented_service_example_loads_once_uncommented() {
        const EXAMPLE: &str = include_str!("../../config/example.toml");
        let block = &EXAMPLE[EXAMPLE.find("# [[services]]").unwrap()..];
        let service: String = block
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter(|l| !l.starts_with("# #") && l.len() > 2)
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        let settings = load_text(&service).unwrap_or_else(|e| panic!("{e}\n{service}"));
        let entry = settings.services.iter().find(|s| s.name == "Staff portal");
        assert!(entry.is_some(), "{service}");
    }

    /// Security review (issue 13, item 5): a regex whose host part can leave the host
    /// loads, with a warning naming the entry (at startup and in `check-config`).
    #[test]
    fn a_regex_with_a_loose_host_part_is_a_warning() {
        let settings = load_text(
            "[[services]]\nid = 1\nname = \"Sloppy\"\npattern = 'regex:https://.*\\.sloppy\\.example\\.org/.*'\n\
             [[services]]\nid = 2\nname = \"Tight\"\npattern = 'regex:https://[a-z0-9-]+\\.tight\\.example\\.org/.*'\n\
             proxy_callback = 'regex:https://[^/]+\\.tight\\.example\\.org/cb'\n",
        )
        .unwrap();
        let warnings = settings.warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("services[0].pattern (`Sloppy`)"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("services[1].proxy_callback (`Tight`)"),
            "{warnings:?}"
        );
    }
}
