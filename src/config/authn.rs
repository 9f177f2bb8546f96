//! `[authn]`: how many password checks run at once, and at what priority; the LDAP
//! sources (`[[authn.ldap]]`) are read in `ldap.rs`.

use serde::Deserialize;

use super::ldap::LdapOptions;
use super::report::Scope;
use super::{Section, ldap};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    max_concurrent_verifications: u32,
    verification_nice: u8,
    #[serde(default)]
    ldap: Vec<ldap::Raw>,
}

#[derive(Debug, Clone)]
pub struct Authn {
    pub max_concurrent_verifications: usize,
    /// How much lower than the request threads password verifiers run (0 to 19).
    pub verification_nice: u8,
    /// LDAP / Active Directory sources, tried in order after the static users.
    pub ldap: Vec<LdapOptions>,
}

impl Section for Raw {
    const NAME: &'static str = "authn";
    type Checked = Authn;

    fn validate(self, cx: &mut Scope<'_>) -> Option<Authn> {
        let ldap = ldap::validate_all(self.ldap, cx);
        let threads_ok = cx.within(
            "max_concurrent_verifications",
            self.max_concurrent_verifications as usize,
            0..=1024,
        );
        if self.verification_nice > 19 {
            cx.problem(
                "verification_nice",
                "must be between 0 (same priority as requests) and 19 (lowest)",
            );
            return None;
        }
        threads_ok.then_some(())?;
        Some(Authn {
            ldap: ldap?,
            max_concurrent_verifications: match self.max_concurrent_verifications {
                // Half the cores: a flood of logins cannot starve ticket validation.
                0 => std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2)),
                n => n as usize,
            },
            verification_nice: self.verification_nice,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    #[test]
    fn verification_nice_is_a_unix_nice_increment() {
        let e = load_text("[authn]\nverification_nice = 20\n").unwrap_err();
        assert_eq!(keys(&e), vec!["authn.verification_nice"], "{e}");
        assert_problem(&e, "authn.verification_nice", "between 0 (same priority");
        let e = load_text("[authn]\nverification_nice = -1\n").unwrap_err();
        assert_eq!(keys(&e), vec!["authn.verification_nice"], "{e}");
        assert_eq!(load_text("").unwrap().authn.verification_nice, 10);
    }

    #[test]
    fn zero_verifications_at_once_means_half_the_cores() {
        let e = load_text("[authn]\nmax_concurrent_verifications = 1025\n").unwrap_err();
        assert_problem(
            &e,
            "authn.max_concurrent_verifications",
            "between 0 and 1024",
        );
        assert!(load_text("").unwrap().authn.max_concurrent_verifications >= 1);
        let s = load_text("[authn]\nmax_concurrent_verifications = 3\n").unwrap();
        assert_eq!(s.authn.max_concurrent_verifications, 3);
    }
}
