//! The service registry: which applications may use this server, and their policies.
//!
//! The registry is closed (GEN-07): a URL no enabled entry matches is not a service,
//! and gets neither a ticket nor a redirect. Entries are tried in `evaluation_order`,
//! then by `id`, and the first match wins (SVC-01).

pub use crate::config::pattern::{
    Candidate, PatternError, ServicePattern, is_well_formed, normalize,
};
pub use crate::config::{LogoutPolicy, LogoutType, RegisteredService, ResponseType, Theme};

#[derive(Debug, Clone, Default)]
pub struct ServiceRegistry {
    services: Vec<RegisteredService>,
}

/// What the protocol asks of the registry: a seam, so that tests can count lookups.
pub trait ServiceLookup: Send + Sync + std::fmt::Debug {
    /// The enabled entry responsible for `service`, if any.
    fn find(&self, service: &str) -> Option<&RegisteredService>;
    /// The entry with this `id`, enabled or not.
    fn by_id(&self, id: u32) -> Option<&RegisteredService>;
}

impl ServiceLookup for ServiceRegistry {
    fn find(&self, service: &str) -> Option<&RegisteredService> {
        ServiceRegistry::find(self, service)
    }

    fn by_id(&self, id: u32) -> Option<&RegisteredService> {
        ServiceRegistry::by_id(self, id)
    }
}

/// What `check-service` reports about one URL.
#[derive(Debug)]
pub enum Explanation<'a> {
    Matched {
        service: &'a RegisteredService,
        /// Enabled entries with a lower precedence that would also have matched.
        shadowed: Vec<&'a RegisteredService>,
    },
    /// Only disabled entries match.
    Disabled(&'a RegisteredService),
    NoMatch {
        /// The entry whose literal text shares the longest prefix with the URL.
        nearest: Option<(&'a RegisteredService, usize)>,
    },
}

impl ServiceRegistry {
    pub fn new(mut services: Vec<RegisteredService>) -> Self {
        services.sort_by_key(|s| (s.evaluation_order, s.id));
        Self { services }
    }

    /// The enabled entry responsible for `service`, if any.
    pub fn find(&self, service: &str) -> Option<&RegisteredService> {
        let candidate = Candidate::new(service)?;
        self.services
            .iter()
            .find(|s| s.enabled && s.pattern.matches_candidate(&candidate))
    }

    /// The entry with this `id`, enabled or not.
    pub fn by_id(&self, id: u32) -> Option<&RegisteredService> {
        self.services.iter().find(|s| s.id == id)
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    pub fn explain(&self, service: &str) -> Explanation<'_> {
        let mut matching = self.services.iter().filter(|s| s.pattern.matches(service));
        let enabled: Vec<_> = matching.clone().filter(|s| s.enabled).collect();
        if let Some((first, rest)) = enabled.split_first() {
            return Explanation::Matched {
                service: first,
                shadowed: rest.to_vec(),
            };
        }
        if let Some(disabled) = matching.next() {
            return Explanation::Disabled(disabled);
        }
        let wanted = normalize(service);
        let nearest = self
            .services
            .iter()
            .filter_map(|s| {
                let literal = normalize(s.pattern.literal()?);
                let common = literal
                    .chars()
                    .zip(wanted.chars())
                    .take_while(|(a, b)| a == b)
                    .count();
                Some((s, common))
            })
            .max_by_key(|(_, common)| *common);
        Explanation::NoMatch { nearest }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u32, order: i32, pattern: &str, enabled: bool) -> RegisteredService {
        RegisteredService {
            id,
            name: format!("svc{id}"),
            description: String::new(),
            pattern: ServicePattern::parse(pattern).unwrap(),
            evaluation_order: order,
            enabled,
            attributes: vec![],
            proxy_callback: None,
            accept_proxy_tickets: false,
            logout: LogoutPolicy::default(),
            response_type: ResponseType::Redirect,
            sso_enabled: true,
            max_auth_age: None,
            create_cookie_on_renew: None,
            theme: None,
        }
    }

    #[test]
    fn lowest_evaluation_order_wins_and_disabled_entries_are_absent() {
        let reg = ServiceRegistry::new(vec![
            entry(1, 10, "prefix:https://app.example.org/", true),
            entry(2, 0, "https://app.example.org/special", true),
            entry(3, -5, "https://app.example.org/off", false),
        ]);
        assert_eq!(reg.find("https://app.example.org/special").unwrap().id, 2);
        assert_eq!(reg.find("https://app.example.org/other").unwrap().id, 1);
        assert_eq!(reg.find("https://app.example.org/off").unwrap().id, 1);
        assert!(reg.find("https://elsewhere.example/").is_none());
    }

    #[test]
    fn explain_reports_shadowing_and_near_misses() {
        let reg = ServiceRegistry::new(vec![
            entry(1, 0, "https://app.example.org/a", true),
            entry(2, 1, "prefix:https://app.example.org/", true),
            entry(3, 2, "https://other.example/", false),
        ]);
        match reg.explain("https://app.example.org/a") {
            Explanation::Matched { service, shadowed } => {
                assert_eq!(service.id, 1);
                assert_eq!(shadowed.len(), 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            matches!(reg.explain("https://other.example/"), Explanation::Disabled(s) if s.id == 3)
        );
        match reg.explain("https://app.example.com/") {
            Explanation::NoMatch {
                nearest: Some((s, n)),
            } => {
                assert_eq!(s.id, 2);
                assert!(n > 10);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
