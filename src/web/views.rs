//! The pages. Each is an askama template compiled into the binary; an operator may
//! replace any of them with a same-named file in `ui.templates_dir`, rendered at run time
//! (Jinja syntax, the same variables) with the built-in one used for every other page.
//!
//! Two engines, because askama compiles templates into the binary and cannot read a file
//! at run time: minijinja serves only the operator's overrides, with the same syntax and
//! variables, so a built-in page copied into `templates_dir` works as it is.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use super::i18n::{Messages, PagesError};

/// Where a page's look comes from: a service's theme, else the global one.
#[derive(Debug, Clone, Serialize)]
pub struct PageTheme {
    /// The name at the top of every page.
    pub title: String,
    pub logo: Option<String>,
    /// A stylesheet with the theme's accent colour.
    pub css: Option<String>,
}

/// What every page shares: strings in the user's language, the asset prefix, the theme.
#[derive(Serialize)]
pub struct Chrome<'a> {
    pub t: &'a Messages,
    pub assets: &'a str,
    pub theme: PageTheme,
    #[serde(skip)]
    pub overrides: Option<&'a Overrides>,
}

/// A page that can be rendered by askama or by an operator's override.
pub trait Page: Template + Serialize {
    const NAME: &'static str;
    fn chrome(&self) -> &Chrome<'_>;
}

macro_rules! page {
    ($ty:ident, $file:literal, { $($field:ident : $fty:ty),* $(,)? }) => {
        #[derive(Template, Serialize)]
        #[template(path = $file)]
        pub struct $ty<'a> {
            pub c: Chrome<'a>,
            $(pub $field: $fty,)*
        }

        impl Page for $ty<'_> {
            const NAME: &'static str = $file;
            fn chrome(&self) -> &Chrome<'_> {
                &self.c
            }
        }
    };
}

page!(LoginPage, "login.html", {
    // Echoed exactly as received (LOGIN-02).
    service: Option<&'a str>,
    // The registry entry's name: users see which application they sign in to.
    service_name: Option<&'a str>,
    lt: String,
    username: &'a str,
    error: Option<&'a str>,
    remember_me: bool,
    // Carried through the POST so a forced login stays forced.
    renew: bool,
    method: Option<&'a str>,
});

page!(LoggedInPage, "logged_in.html", {
    user: &'a str,
});

page!(LogoutPage, "logout.html", {
    // SLO-09: front-channel logout URLs, loaded in hidden frames.
    front_channel: &'a [String],
    // Where to go once the frames had their chance (a followed `service` redirect).
    continue_to: Option<&'a str>,
});

page!(WarnPage, "warn.html", {
    service: &'a str,
    service_name: &'a str,
    lt: String,
    method: Option<&'a str>,
});

page!(PostPage, "post.html", {
    action: &'a str,
    ticket: &'a str,
    nonce: &'a str,
});

page!(ErrorPage, "error.html", {
    title: &'a str,
    message: &'a str,
});

/// Operator templates from `ui.templates_dir`.
#[derive(Debug)]
pub struct Overrides {
    env: minijinja::Environment<'static>,
}

/// The built-in page names an override may replace.
pub const PAGE_NAMES: &[&str] = &[
    "login.html",
    "logged_in.html",
    "logout.html",
    "warn.html",
    "post.html",
    "error.html",
];

impl Overrides {
    /// Loads every `.html` file of `dir`; a template that does not parse is an error
    /// naming the file.
    pub fn load(dir: &std::path::Path) -> Result<Self, PagesError> {
        let mut env = minijinja::Environment::new();
        let entries =
            std::fs::read_dir(dir).map_err(|e| PagesError::TemplatesDir(dir.to_owned(), e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if !name.ends_with(".html") {
                continue;
            }
            let source =
                std::fs::read_to_string(&path).map_err(|e| PagesError::Read(path.clone(), e))?;
            env.add_template_owned(name.clone(), source)
                .map_err(|e| PagesError::Parse(path.clone(), e))?;
            if !PAGE_NAMES.contains(&name.as_str()) && name != "base.html" {
                tracing::warn!(file = %path.display(), "template override does not replace a built-in page");
            }
        }
        Ok(Self { env })
    }

    fn render(
        &self,
        name: &str,
        context: &impl Serialize,
    ) -> Option<Result<String, minijinja::Error>> {
        let template = self.env.get_template(name).ok()?;
        Some(template.render(minijinja::value::Serde(context)))
    }
}

/// Renders `page` with `status`; a page that fails to render becomes a bare 500.
pub fn html<P: Page>(status: StatusCode, page: &P) -> Response {
    let rendered: Result<String, Box<dyn std::error::Error + Send + Sync>> = match page
        .chrome()
        .overrides
        .and_then(|o| o.render(P::NAME, page))
    {
        Some(result) => result.map_err(Into::into),
        None => page.render().map_err(Into::into),
    };
    match rendered {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %crate::telemetry::Chain(&*e), page = P::NAME, "page rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response()
        }
    }
}
