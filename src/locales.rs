//! The user-interface languages built into the binary: one message catalogue per locale
//! (`static/i18n/<code>.toml`), compiled in. A leaf module, so that the configuration can
//! check `ui.default_locale` against the same list the web layer loads its catalogues
//! from.

/// Each built-in locale's code and catalogue (TOML).
pub const BUILTIN: &[(&str, &str)] = &[
    ("en", include_str!("../static/i18n/en.toml")),
    ("fr", include_str!("../static/i18n/fr.toml")),
];

/// The built-in locales' codes.
pub fn codes() -> Vec<&'static str> {
    BUILTIN.iter().map(|(code, _)| *code).collect()
}
