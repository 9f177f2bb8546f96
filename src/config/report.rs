//! The problem collector: every mistake found while loading, with where its value came
//! from (the file, or the environment variable that set it) and its exact key path.
//!
//! Sections are checked through a [`Scope`], which knows the key path it stands for, so
//! a check names a key relative to its table (`cx.problem("pool_size", ..)`) and the
//! report says `authn.ldap[0].pool_size`.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use super::settings::Origin;

/// Ten years: the longest any duration setting may be.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file or environment variable the value came from.
    pub origin: String,
    /// Dotted key path, e.g. `tickets.st_ttl` or `services[2].pattern`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// All problems found; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// A problem that stops loading before any key is read (an unreadable file, bad TOML).
    pub(super) fn single(origin: String, message: String) -> Self {
        Self {
            problems: vec![Problem {
                origin,
                key: String::new(),
                message,
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "the configuration has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            // Parser messages (regex, TOML) span lines; keep them indented under their item.
            let message = p.message.replace('\n', "\n    ");
            if p.key.is_empty() {
                writeln!(f, "  - {}: {message}", p.origin)?;
            } else {
                writeln!(f, "  - {}: key `{}`: {message}", p.origin, p.key)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A check failed and said why in the report; the caller has nothing to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reported;

/// The problems of one load, and what is needed to say where each value came from.
#[derive(Debug)]
pub(super) struct Report {
    origin: Origin,
    /// The names of the `CAS__…` variables set.
    env: BTreeSet<String>,
    problems: Vec<Problem>,
}

impl Report {
    pub(super) fn new(origin: Origin, env: BTreeSet<String>) -> Self {
        Self {
            origin,
            env,
            problems: Vec::new(),
        }
    }

    /// Checks under `path` (a section name, or `""` for the whole file).
    pub(super) fn scope(&mut self, path: &str) -> Scope<'_> {
        Scope {
            report: self,
            path: path.to_owned(),
        }
    }

    pub(super) fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            origin: self.origin_of(key),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Names the environment variable when one set `key`, the file otherwise.
    fn origin_of(&self, key: &str) -> String {
        let var = format!(
            "{}{}",
            super::ENV_PREFIX,
            key.replace('.', "__").to_uppercase()
        );
        if self.env.contains(&var) {
            format!("environment variable {var}")
        } else {
            self.origin.to_string()
        }
    }

    /// `settings` if nothing was wrong, otherwise every problem, with no decrypted value
    /// (`revealed`) left in a message.
    pub(super) fn finish<T>(
        self,
        settings: Option<T>,
        revealed: &[String],
    ) -> Result<T, ConfigError> {
        match settings {
            Some(settings) if self.problems.is_empty() => Ok(settings),
            _ => Err(ConfigError {
                problems: scrub(self.problems, revealed),
            }),
        }
    }
}

/// Messages quote values (`` `x` is not an address:port ``); a value that came from an
/// `ENC(…)` must not be printed in clear.
fn scrub(mut problems: Vec<Problem>, revealed: &[String]) -> Vec<Problem> {
    for problem in &mut problems {
        for secret in revealed.iter().filter(|s| !s.is_empty()) {
            // A short secret is replaced only where quoted, or it would garble every word
            // that happens to contain it.
            let quoted = [format!("`{secret}`"), format!("\"{secret}\"")];
            for q in &quoted {
                problem.message = problem.message.replace(q.as_str(), "`(encrypted value)`");
            }
            if secret.len() >= 8 {
                problem.message = problem
                    .message
                    .replace(secret.as_str(), "(encrypted value)");
            }
        }
    }
    problems
}

/// Checks of the keys under one path: a section, a nested table or an array entry.
#[derive(Debug)]
pub(super) struct Scope<'r> {
    report: &'r mut Report,
    path: String,
}

impl Scope<'_> {
    /// The full path of `name` in this scope; `""` is the scope itself.
    pub(super) fn key(&self, name: &str) -> String {
        join(&self.path, name)
    }

    pub(super) fn problem(&mut self, name: &str, message: impl Into<String>) {
        let key = self.key(name);
        self.report.problem(&key, message);
    }

    /// The nested table `name`.
    pub(super) fn at(&mut self, name: &str) -> Scope<'_> {
        Scope {
            path: self.key(name),
            report: self.report,
        }
    }

    /// Entry `index` of the array `name`.
    pub(super) fn entry(&mut self, name: &str, index: usize) -> Scope<'_> {
        Scope {
            path: format!("{}[{index}]", self.key(name)),
            report: self.report,
        }
    }

    pub(super) fn origin(&self) -> &Origin {
        &self.report.origin
    }

    /// How many problems are recorded so far (to tell whether a check added one).
    pub(super) fn problems(&self) -> usize {
        self.report.problems.len()
    }

    /// The duration written at `name`: humantime or ISO-8601, above zero, at most ten
    /// years.
    pub(super) fn duration(&mut self, name: &str, text: &str) -> Option<Duration> {
        match super::duration::parse(text) {
            Ok(d) if d.is_zero() => {
                self.problem(name, "must be longer than zero");
                None
            }
            // Longer would overflow date arithmetic somewhere, and means nothing here.
            Ok(d) if d > MAX_DURATION => {
                self.problem(name, "must be at most 10 years");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(name, e.to_string());
                None
            }
        }
    }

    /// `value` within `range`, or a problem naming it. Upper bounds keep a typo from
    /// preallocating gigabytes or starting a thread per value.
    pub(super) fn within(
        &mut self,
        name: &str,
        value: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> bool {
        let ok = range.contains(&value);
        if !ok {
            self.problem(
                name,
                format!("must be between {} and {}", range.start(), range.end()),
            );
        }
        ok
    }

    /// The regular expression written at `name`, anchored at both ends.
    pub(super) fn regex(&mut self, name: &str, pattern: &str) -> Option<regex::Regex> {
        match regex::Regex::new(&format!("^(?:{pattern})$")) {
            Ok(re) => Some(re),
            Err(e) => {
                self.problem(name, format!("invalid regular expression: {e}"));
                None
            }
        }
    }
}

/// `parent.name`, or `name` at the top.
pub(super) fn join(parent: &str, name: &str) -> String {
    match (parent.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (false, true) => parent.to_owned(),
        (false, false) => format!("{parent}.{name}"),
    }
}

/// `; did you mean `parent.known`?` for the known name within three edits of `wrong`.
pub(super) fn hint<'a>(
    parent: &str,
    wrong: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> String {
    known
        .into_iter()
        .map(|c| (strsim::levenshtein(wrong, c), c))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map_or_else(String::new, |(_, best)| {
            format!("; did you mean `{}`?", join(parent, best))
        })
}
