//! LDAP and Active Directory authentication.
//!
//! Search-then-bind: a service account (or anonymous) finds the user's entry with
//! `user_filter` (the username escaped per RFC 4515, so `*)(uid=*` is just a strange
//! name), then the password is checked by binding as that entry on a fresh connection.
//! Direct bind: the DN comes from a template instead. Either way the directory decides
//! the password; Active Directory has no readable password attribute anyway.
//!
//! Searches run on a bounded pool of connections bound as the service account. A
//! connection that fails an operation is dropped, never returned, and the operation is
//! retried once on a new one, so the source recovers by itself when the directory comes
//! back. Every network step has a deadline; an unreachable or slow directory is
//! [`AuthError::Unavailable`], and its details stay in the logs.
//!
//! The pool is a semaphore and a list of idle connections rather than `bb8-ldap` or
//! `deadpool-ldap`: only connections bound as the service account may be reused (a
//! connection bound as a user never is), the wait for a slot shares the bound of the
//! operation itself, and a failed pooled connection is retried once on a fresh one
//! instead of being validated by an extra search on every checkout, which those crates
//! do at the cost of a round trip per login.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use tokio::sync::Semaphore;

use super::Principal;
use super::{AuthError, Authenticator, SourceError, SourceHealth};
pub use crate::config::{LdapOptions, Lookup, Mode, UsernameRules};

/// OpenLDAP's password policy control (draft-behera-ldap-password-policy).
const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";
const INVALID_CREDENTIALS: u32 = 49;
const UNWILLING_TO_PERFORM: u32 = 53;

#[derive(Debug)]
pub struct LdapSource {
    options: LdapOptions,
    tls: Arc<rustls::ClientConfig>,
    /// Service-account connections ready for searches.
    idle: Mutex<Vec<Ldap>>,
    /// Bounds connections in use at once, searches and user binds alike.
    permits: Semaphore,
    /// A health probe is running (at most one at a time).
    probing: std::sync::atomic::AtomicBool,
    /// The last health probe: when, and whether the directory answered.
    health_cache: Mutex<Option<(std::time::Instant, bool)>>,
}

/// How long a health probe's answer is reused.
const HEALTH_CACHE: Duration = Duration::from_secs(2);

impl LdapSource {
    pub fn new(options: LdapOptions) -> Result<Self, SourceError> {
        let tls = tls_config(&options.extra_roots).map_err(|fault| SourceError::Ldap {
            name: options.name.clone(),
            fault: Box::new(fault),
        })?;
        let permits = Semaphore::new(options.pool_size.max(1));
        Ok(Self {
            options,
            tls: Arc::new(tls),
            idle: Mutex::new(Vec::new()),
            permits,
            probing: std::sync::atomic::AtomicBool::new(false),
            health_cache: Mutex::new(None),
        })
    }

    /// Connects and binds the service account, or reports why not (for `check-config
    /// --probe` and `/health`).
    pub async fn probe(&self) -> Result<(), LdapFault> {
        let (mut ldap, _) = self.service_connection().await?;
        ldap.with_timeout(self.options.operation_timeout)
            .search("", Scope::Base, "(objectClass=*)", vec!["1.1"])
            .await
            .and_then(|r| r.success())?;
        self.release(ldap);
        Ok(())
    }

    fn normalize(&self, username: &str) -> String {
        let rules = self.options.username;
        let mut name = if rules.trim {
            username.trim()
        } else {
            username
        }
        .to_owned();
        if rules.strip_domain
            && let Some((local, _)) = name.split_once('@')
        {
            name = local.to_owned();
        }
        if rules.lowercase {
            name = name.to_lowercase();
        }
        name
    }

    async fn connect(&self) -> Result<Ldap, LdapFault> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.options.connect_timeout)
            .set_starttls(self.options.start_tls)
            .set_config(self.tls.clone());
        let (conn, ldap) = tokio::time::timeout(
            self.options.connect_timeout + self.options.operation_timeout,
            LdapConnAsync::with_settings(settings, &self.options.url),
        )
        .await
        .map_err(|_| LdapFault::ConnectTimeout)??;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// A pooled connection bound as the service account, or a new one.
    /// A bound service connection, and whether it came from the pool (and so may have
    /// died since it was last used).
    async fn service_connection(&self) -> Result<(Ldap, bool), LdapFault> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(ldap) = pooled {
            return Ok((ldap, true));
        }
        let mut ldap = self.connect().await?;
        if let Some((dn, password)) = &self.options.bind {
            ldap.with_timeout(self.options.operation_timeout)
                .simple_bind(dn, password.expose())
                .await?
                .success()
                .map_err(LdapFault::ServiceBind)?;
        }
        Ok((ldap, false))
    }

    fn release(&self, ldap: Ldap) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.options.pool_size {
            idle.push(ldap);
        }
    }

    fn wanted_attributes(&self) -> Vec<String> {
        let mut wanted: Vec<String> = self
            .options
            .attributes
            .iter()
            .map(|(from, _)| from.clone())
            .collect();
        if let Some(principal) = &self.options.principal_attribute {
            wanted.push(principal.clone());
        }
        if wanted.is_empty() {
            // "1.1": no attributes, only the DN.
            wanted.push("1.1".into());
        }
        wanted
    }

    /// The entry for `user`: its DN and attributes; `None` if there is no single match.
    async fn find(
        &self,
        user: &str,
        base_dn: &str,
        filter: &str,
    ) -> Result<Option<SearchEntry>, LdapFault> {
        let filter = filter.replace("{user}", &ldap3::ldap_escape(user));
        let wanted = self.wanted_attributes();
        // A pooled connection may have died with a directory restart: a failure on one is
        // tried once more on a fresh connection. A fresh one that fails is the answer: a
        // second try would only double the wait while the directory is down.
        loop {
            let (mut ldap, pooled) = self.service_connection().await?;
            let searched = ldap
                .with_timeout(self.options.operation_timeout)
                .search(base_dn, Scope::Subtree, &filter, wanted.clone())
                .await
                .and_then(|r| r.success());
            match searched {
                Ok((entries, _)) => {
                    self.release(ldap);
                    let mut entries = entries.into_iter().map(SearchEntry::construct);
                    return Ok(match (entries.next(), entries.next()) {
                        (Some(entry), None) => Some(entry),
                        (Some(_), Some(_)) => {
                            tracing::warn!(source = %self.options.name, "user filter matched several entries; refusing");
                            None
                        }
                        _ => None,
                    });
                }
                Err(e) if pooled => {
                    tracing::debug!(source = %self.options.name, error = %e, "pooled LDAP connection failed; trying a fresh one");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Binds as `dn` on a fresh connection; `Ok(connection)` if the password is right.
    async fn bind_as(&self, dn: &str, password: &str) -> Result<Ldap, AuthError> {
        let mut ldap = self.connect().await.map_err(|e| self.unavailable(e))?;
        let result = ldap
            .with_controls(RawControl {
                ctype: PPOLICY_OID.into(),
                crit: false,
                val: None,
            })
            .with_timeout(self.options.operation_timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| self.unavailable(e.into()))?;
        let ppolicy = result
            .ctrls
            .iter()
            .find(|c| c.1.ctype == PPOLICY_OID)
            .and_then(|c| c.1.val.as_deref())
            .and_then(ppolicy_error);
        match result.rc {
            // A password an administrator reset binds, with `changeAfterReset`: it is a
            // temporary secret, not one to sign in to every application with.
            0 if matches!(ppolicy, Some(AuthError::PasswordExpired)) => {
                let _ = ldap.unbind().await;
                Err(AuthError::PasswordExpired)
            }
            0 => Ok(ldap),
            INVALID_CREDENTIALS | UNWILLING_TO_PERFORM => {
                let _ = ldap.unbind().await;
                let state = match self.options.mode {
                    Mode::Ldap => ppolicy,
                    Mode::ActiveDirectory => ad_state(&result.text),
                };
                Err(state.unwrap_or(AuthError::InvalidCredentials))
            }
            rc => {
                let _ = ldap.unbind().await;
                Err(self.unavailable(LdapFault::BindResult {
                    rc,
                    text: result.text,
                }))
            }
        }
    }

    fn unavailable(&self, fault: LdapFault) -> AuthError {
        AuthError::unavailable(SourceError::Ldap {
            name: self.options.name.clone(),
            fault: Box::new(fault),
        })
    }

    /// The principal for `user`. With `principal_attribute`, its one value is the id: an
    /// entry without it, or with several, is refused rather than falling back to the
    /// login name, which could then equal another person's attribute value.
    fn principal(&self, user: String, entry: Option<&SearchEntry>) -> Result<Principal, AuthError> {
        let attrs = entry.map(|e| &e.attrs);
        let id = match &self.options.principal_attribute {
            None => user,
            Some(name) => {
                let values = attrs
                    .and_then(|a| a.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                    .map(|(_, values)| values.as_slice())
                    .unwrap_or_default();
                match values {
                    [one] if !one.is_empty() => one.clone(),
                    _ => {
                        return Err(self.unavailable(LdapFault::PrincipalAttribute {
                            user,
                            attribute: name.clone(),
                            values: values.len(),
                        }));
                    }
                }
            }
        };
        let mut attributes = BTreeMap::new();
        if let Some(attrs) = attrs {
            for (from, to) in &self.options.attributes {
                if let Some((_, values)) = attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(from))
                    && !values.is_empty()
                {
                    attributes.insert(to.clone(), values.clone());
                }
            }
        }
        Ok(Principal { id, attributes })
    }
}

/// Clears a flag when dropped.
struct ClearOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

#[async_trait]
impl Authenticator for LdapSource {
    async fn authenticate(&self, username: &str, password: &str) -> Result<Principal, AuthError> {
        let user = self.normalize(username);
        // An empty password is an LDAP "unauthenticated bind", which succeeds: never send it.
        if user.is_empty() || password.is_empty() {
            return Err(AuthError::InvalidCredentials);
        }
        // Waiting for a connection counts against the same bound as using one.
        let _permit = tokio::time::timeout(
            self.options.connect_timeout + self.options.operation_timeout,
            self.permits.acquire(),
        )
        .await
        .map_err(|_| self.unavailable(LdapFault::PoolBusy))?
        .map_err(|_| self.unavailable(LdapFault::PoolClosed))?;
        match &self.options.lookup {
            Lookup::Search { base_dn, filter } => {
                let Some(entry) = self
                    .find(&user, base_dn, filter)
                    .await
                    .map_err(|e| self.unavailable(e))?
                else {
                    // Bind as an entry that cannot exist, so an unknown user costs the
                    // same round trips as a wrong password.
                    let decoy = format!("uid={},{base_dn}", crate::crypto::random_base62(24));
                    let _ = self.bind_as(&decoy, password).await;
                    return Err(AuthError::InvalidCredentials);
                };
                let mut ldap = self.bind_as(&entry.dn, password).await?;
                let _ = ldap.unbind().await;
                self.principal(user, Some(&entry))
            }
            Lookup::Template(template) => {
                let dn = template.replace("{user}", &ldap3::dn_escape(user.as_str()));
                let mut ldap = self.bind_as(&dn, password).await?;
                let read = ldap
                    .with_timeout(self.options.operation_timeout)
                    .search(
                        &dn,
                        Scope::Base,
                        "(objectClass=*)",
                        self.wanted_attributes(),
                    )
                    .await
                    .and_then(|r| r.success());
                let _ = ldap.unbind().await;
                let entry = match read {
                    Ok((entries, _)) => entries.into_iter().next().map(SearchEntry::construct),
                    // A template may name a UPN rather than a DN (Active Directory): the
                    // bind succeeded, so the login stands, without attributes.
                    Err(e) => {
                        tracing::debug!(source = %self.options.name, error = %e, "could not read the user's attributes");
                        None
                    }
                };
                self.principal(user, entry.as_ref())
            }
        }
    }

    /// Probed at most every few seconds, and within the pool's bound: `/health` is
    /// public, and must not become a way to flood the directory.
    async fn health(&self) -> Vec<SourceHealth> {
        let cached = *self
            .health_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let reachable = match cached {
            Some((at, reachable)) if at.elapsed() < HEALTH_CACHE => reachable,
            // One probe at a time: a burst of `/health` requests while the answer is stale
            // gets the last answer, not a connection each.
            _ if self.probing.swap(true, std::sync::atomic::Ordering::AcqRel) => {
                cached.is_none_or(|(_, reachable)| reachable)
            }
            _ => {
                // Cleared however the probe ends, a dropped request included.
                let _probing = ClearOnDrop(&self.probing);
                let reachable = match self.permits.try_acquire() {
                    Ok(_permit) => tokio::time::timeout(
                        self.options.connect_timeout + self.options.operation_timeout,
                        self.probe(),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok()),
                    // Every connection is busy with logins: the directory answers.
                    Err(_) => true,
                };
                *self
                    .health_cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) =
                    Some((std::time::Instant::now(), reachable));
                reachable
            }
        };
        vec![SourceHealth {
            name: self.options.name.clone(),
            reachable,
        }]
    }
}

/// TLS for `ldaps://` and StartTLS: system roots plus the source's CAs, host names verified.
fn tls_config(extra_roots: &[Vec<u8>]) -> Result<rustls::ClientConfig, LdapFault> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::crypto::system_roots() {
        let _ = roots.add(cert);
    }
    for der in extra_roots {
        roots
            .add(rustls_pki_types::CertificateDer::from(der.clone()))
            .map_err(LdapFault::CaFile)?;
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth())
    .map_err(LdapFault::Tls)
}

/// Why a directory could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LdapFault {
    #[error("the connection timed out")]
    ConnectTimeout,
    #[error("the directory failed")]
    Ldap(#[from] ldap3::LdapError),
    #[error("the service account's bind was refused")]
    ServiceBind(#[source] ldap3::LdapError),
    #[error("a bind answered result code {rc}: {text}")]
    BindResult { rc: u32, text: String },
    #[error(
        "the entry of `{user}` has {values} values of principal_attribute `{attribute}`; exactly one is needed"
    )]
    PrincipalAttribute {
        user: String,
        attribute: String,
        values: usize,
    },
    #[error("every connection stayed busy")]
    PoolBusy,
    #[error("the connection pool is closed")]
    PoolClosed,
    #[error("unusable CA certificate in ca_file")]
    CaFile(#[source] rustls::Error),
    #[error("TLS cannot be set up")]
    Tls(#[source] rustls::Error),
}

/// The `error` of a PasswordPolicyResponseValue: `SEQUENCE { warning [0] OPTIONAL,
/// error [1] ENUMERATED OPTIONAL }`.
fn ppolicy_error(value: &[u8]) -> Option<AuthError> {
    let (&tag, rest) = value.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (len, mut body) = ber_length(rest)?;
    body = body.get(..len)?;
    while let Some((&tag, rest)) = body.split_first() {
        let (len, rest) = ber_length(rest)?;
        let content = rest.get(..len)?;
        if tag == 0x81 {
            return match content.last()? {
                0 | 2 => Some(AuthError::PasswordExpired),
                1 => Some(AuthError::AccountLocked),
                _ => None,
            };
        }
        body = rest.get(len..)?;
    }
    None
}

fn ber_length(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    if first < 0x80 {
        return Some((usize::from(first), rest));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 || rest.len() < n {
        return None;
    }
    let len = rest[..n]
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    Some((len, &rest[n..]))
}

/// Active Directory's bind failures carry the reason as `data <hex>` in the text.
fn ad_state(text: &str) -> Option<AuthError> {
    let code = text
        .split("data ")
        .nth(1)?
        .split([',', ' '])
        .next()?
        .to_ascii_lowercase();
    match code.as_str() {
        "775" => Some(AuthError::AccountLocked),
        "533" => Some(AuthError::AccountDisabled),
        "532" | "773" => Some(AuthError::PasswordExpired),
        "701" => Some(AuthError::AccountExpired),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppolicy_errors_are_decoded() {
        assert_eq!(
            ppolicy_error(&[0x30, 0x03, 0x81, 0x01, 0x01]),
            Some(AuthError::AccountLocked)
        );
        assert_eq!(
            ppolicy_error(&[0x30, 0x03, 0x81, 0x01, 0x00]),
            Some(AuthError::PasswordExpired)
        );
        // A warning first ([0] constructed), then the error.
        assert_eq!(
            ppolicy_error(&[0x30, 0x08, 0xa0, 0x03, 0x80, 0x01, 0x05, 0x81, 0x01, 0x02]),
            Some(AuthError::PasswordExpired)
        );
        assert_eq!(ppolicy_error(&[0x30, 0x00]), None);
        assert_eq!(
            ppolicy_error(&[0x30, 0x05, 0x81]),
            None,
            "truncated input is no panic"
        );
        assert_eq!(ppolicy_error(&[]), None);
    }

    #[test]
    fn active_directory_sub_codes_are_decoded() {
        let text = |code| {
            format!(
                "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {code}, v4563"
            )
        };
        assert_eq!(ad_state(&text("775")), Some(AuthError::AccountLocked));
        assert_eq!(ad_state(&text("533")), Some(AuthError::AccountDisabled));
        assert_eq!(ad_state(&text("532")), Some(AuthError::PasswordExpired));
        assert_eq!(ad_state(&text("701")), Some(AuthError::AccountExpired));
        assert_eq!(ad_state(&text("52e")), None);
        assert_eq!(ad_state("no data here"), None);
    }

    fn source(rules: UsernameRules) -> LdapSource {
        LdapSource::new(LdapOptions {
            name: "t".into(),
            url: "ldap://127.0.0.1:1".into(),
            start_tls: false,
            extra_roots: vec![],
            bind: None,
            lookup: Lookup::Search {
                base_dn: "dc=example,dc=org".into(),
                filter: "(uid={user})".into(),
            },
            mode: Mode::Ldap,
            attributes: vec![],
            principal_attribute: None,
            username: rules,
            connect_timeout: Duration::from_millis(200),
            operation_timeout: Duration::from_millis(200),
            pool_size: 1,
        })
        .unwrap()
    }

    #[test]
    fn usernames_are_normalised_per_source() {
        let s = source(UsernameRules {
            trim: true,
            lowercase: true,
            strip_domain: true,
        });
        assert_eq!(s.normalize("  JDoe@Example.org "), "jdoe");
        let s = source(UsernameRules {
            trim: false,
            lowercase: false,
            strip_domain: false,
        });
        assert_eq!(s.normalize(" JDoe@x "), " JDoe@x ");
    }

    #[tokio::test]
    async fn an_unreachable_directory_is_unavailable_not_a_wrong_password() {
        let s = source(UsernameRules {
            trim: true,
            lowercase: false,
            strip_domain: false,
        });
        let e = s.authenticate("jdoe", "pw").await.unwrap_err();
        assert!(matches!(e, AuthError::Unavailable(_)), "{e:?}");
        assert_eq!(
            s.authenticate("jdoe", "").await.unwrap_err(),
            AuthError::InvalidCredentials
        );
        assert!(!s.health().await[0].reachable);
    }
}
