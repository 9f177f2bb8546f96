//! `cas-server`: the command line. Run with no arguments for the demo on
//! http://127.0.0.1:8080/cas, or `--config cas.toml` for a real deployment.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cas_server::config::{self, DEMO_PASSWORD, Settings, Source};
use cas_server::services::{Explanation, ServiceRegistry};
use cas_server::{App, app, auth, clock, telemetry, tgc};
use clap::{Parser, Subcommand};

/// glibc's allocator spent a fifth of an SSO cycle in malloc/free and its arena locks
/// under load; mimalloc's thread-local free lists take most of that away.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "A CAS 1/2/3 single sign-on server")]
struct Cli {
    /// The TOML configuration file (without it: the built-in loopback demo).
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (the default).
    Serve,
    /// Load and validate the configuration, report every problem, and exit.
    CheckConfig {
        /// Also connect to each LDAP source and bind its service account.
        #[arg(long)]
        probe: bool,
    },
    /// Show which [[services]] entry matches a service URL, and why.
    CheckService {
        /// The service URL as a CAS client would send it (decoded).
        url: String,
    },
    /// Print fresh TGC and login-flow keys in config syntax, and a CAS_CONFIG_KEY.
    Keygen,
    /// Read a value from stdin and print it as ENC(...) for the config file, encrypted
    /// with the key in the environment variable CAS_CONFIG_KEY.
    EncryptValue,
    /// Read a password from stdin and print its argon2id hash for [[users]].
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config),
        Command::CheckConfig { probe } => check_config(cli.config, probe),
        Command::CheckService { url } => check_service(cli.config, &url),
        Command::Keygen => keygen(),
        Command::EncryptValue => encrypt_value(),
        Command::HashPassword => hash_password(),
    }
}

fn load(path: Option<&PathBuf>) -> Result<Settings, ExitCode> {
    let source = path.map_or(Source::Demo, |p| Source::File(p));
    config::load(source).map_err(|e| {
        eprint!("cas-server: {e}");
        ExitCode::from(1)
    })
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let settings = match load(path.as_ref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let _log_flusher = telemetry::init();
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cas-server: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let demo = settings.is_demo();
        let users = settings.users.first().map(|u| u.username.clone());
        let app = match App::build(settings, Arc::new(clock::SystemClock)).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("cas-server: {}", telemetry::Chain(&e));
                return ExitCode::from(1);
            }
        };
        // Signal handlers go in before the listening line: a supervisor may stop us at once.
        let shutdown = app::shutdown_signal();
        println!("cas-server listening on {}", app.url());
        if demo {
            println!(
                "DEMO MODE (no --config): loopback only, ephemeral keys (sessions end on restart).\n  \
                 Sign in at {}/login as user `{}` with password `{DEMO_PASSWORD}`.\n  \
                 Services accepted: http(s)://localhost and 127.0.0.1 URLs.",
                app.url(),
                users.unwrap_or_default()
            );
        }
        match app.run_until(shutdown).await {
            Ok(()) => {
                println!("cas-server stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cas-server: server error: {e}");
                ExitCode::from(1)
            }
        }
    })
}

fn check_config(path: Option<PathBuf>, probe: bool) -> ExitCode {
    let s = match load(path.as_ref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    println!(
        "{}: ok ({} service{}, {} user{}, {} LDAP source{}, tickets in {})",
        s.origin,
        s.services.len(),
        if s.services.len() == 1 { "" } else { "s" },
        s.users.len(),
        if s.users.len() == 1 { "" } else { "s" },
        s.authn.ldap.len(),
        if s.authn.ldap.len() == 1 { "" } else { "s" },
        match s.tickets.store {
            config::TicketStore::Redis(_) => "redis",
            config::TicketStore::Memory if s.tickets.snapshot_file.is_some() => {
                "memory, with a snapshot file"
            }
            config::TicketStore::Memory => "memory",
        },
    );
    for warning in s.warnings() {
        println!("warning: {warning}");
    }
    let redis = match &s.tickets.store {
        config::TicketStore::Redis(options) => Some(options),
        config::TicketStore::Memory => None,
    };
    if !probe || (s.authn.ldap.is_empty() && redis.is_none()) {
        return ExitCode::SUCCESS;
    }
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        eprintln!("cas-server: cannot start the async runtime");
        return ExitCode::from(1);
    };
    runtime.block_on(async {
        let mut failed = false;
        for options in &s.authn.ldap {
            let outcome: Result<(), Box<dyn std::error::Error>> =
                match cas_server::auth::ldap::LdapSource::new(options.clone()) {
                    Ok(source) => source.probe().await.map_err(Into::into),
                    Err(e) => Err(e.into()),
                };
            match outcome {
                Ok(()) => println!(
                    "ldap source `{}` ({}): reachable, bind ok",
                    options.name,
                    options.display_url()
                ),
                Err(e) => {
                    failed = true;
                    eprintln!(
                        "cas-server: ldap source `{}` ({}): {}",
                        options.name,
                        options.display_url(),
                        telemetry::Chain(&*e)
                    );
                }
            }
        }
        if let (Some(options), Some(key)) = (redis, &s.tickets.key) {
            let checked = cas_server::tickets::RedisRegistry::new(
                options,
                key.expose(),
                std::time::Duration::ZERO,
                std::sync::Arc::new(cas_server::clock::SystemClock),
            );
            match checked {
                Ok(registry) => match registry.key_matches().await {
                    Ok(Some(false)) => {
                        failed = true;
                        eprintln!(
                            "cas-server: ticket store redis: the tickets there were written with another tickets.key; every node needs the same key"
                        );
                    }
                    Ok(key) => {
                        println!("ticket store redis: reachable, authenticated");
                        if key.is_none() {
                            println!(
                                "ticket store redis: no node has recorded its registry key yet (the first node to start will)"
                            );
                        }
                        match registry.eviction_policy().await.as_deref() {
                            Some("noeviction") => println!("ticket store redis: maxmemory-policy noeviction"),
                            Some(policy) => {
                                failed = true;
                                eprintln!(
                                    "cas-server: ticket store redis: maxmemory-policy is {policy}: Redis may evict live sessions under memory pressure; set it to noeviction"
                                );
                            }
                            None => println!(
                                "ticket store redis: cannot read maxmemory-policy (no permission); make sure it is noeviction"
                            ),
                        }
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("cas-server: {}", telemetry::Chain(&e));
                    }
                },
                Err(e) => {
                    failed = true;
                    eprintln!("cas-server: {}", telemetry::Chain(&e));
                }
            }
        }
        if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    })
}

fn check_service(path: Option<PathBuf>, url: &str) -> ExitCode {
    let settings = match load(path.as_ref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let registry = ServiceRegistry::new(settings.services);
    match registry.explain(url) {
        Explanation::Matched { service, shadowed } => {
            println!(
                "{url}\n  matches service {} \"{}\" (evaluation_order {}) by pattern `{}`",
                service.id, service.name, service.evaluation_order, service.pattern
            );
            println!(
                "  attributes released on /p3: {}",
                if service.attributes.is_empty() {
                    "none".to_owned()
                } else {
                    service.attributes.join(", ")
                }
            );
            for s in shadowed {
                println!(
                    "  also matched, but later in evaluation order: service {} \"{}\" (`{}`)",
                    s.id, s.name, s.pattern
                );
            }
            ExitCode::SUCCESS
        }
        Explanation::Disabled(service) => {
            println!(
                "{url}\n  matches only service {} \"{}\" (`{}`), which is disabled: it is refused",
                service.id, service.name, service.pattern
            );
            ExitCode::from(1)
        }
        Explanation::NoMatch { nearest } => {
            println!("{url}\n  matches no enabled service: CAS will refuse it");
            if let Some((s, common)) = nearest {
                let literal = s.pattern.literal().unwrap_or_default();
                println!(
                    "  nearest: service {} \"{}\" (`{}`); the URLs agree for {common} characters, then differ at `{}` vs `{}`",
                    s.id,
                    s.name,
                    s.pattern,
                    url.chars().skip(common).take(20).collect::<String>(),
                    literal.chars().skip(common).take(20).collect::<String>(),
                );
            }
            ExitCode::from(1)
        }
    }
}

fn keygen() -> ExitCode {
    let keys = tgc::TgcKeys::generate();
    let flow = cas_server::crypto::b64url_encode(&cas_server::crypto::random_bytes::<32>());
    let registry = cas_server::crypto::b64url_encode(&cas_server::crypto::random_bytes::<32>());
    let config_key = cas_server::crypto::b64url_encode(&cas_server::crypto::random_bytes::<32>());
    print!(
        "# Fresh keys: paste into your cas.toml and use the same on every node.\n[tgc]\n{}\n[login]\nflow_key = \"{flow}\"\n\n[tickets]\n# Encrypts tickets at rest (Redis, the snapshot file) and keys their stored ids.\nkey = \"{registry}\"\n\n# For ENC(...) values (cas-server encrypt-value): keep it out of the file, in the\n# environment of the server process.\n# CAS_CONFIG_KEY={config_key}\n",
        keys.to_config()
    );
    ExitCode::SUCCESS
}

fn encrypt_value() -> ExitCode {
    let Ok(key) = std::env::var(config::secrets::KEY_VARIABLE) else {
        eprintln!(
            "cas-server: set {} to the configuration key first (`cas-server keygen` prints one)",
            config::secrets::KEY_VARIABLE
        );
        return ExitCode::from(1);
    };
    let sealer = match config::secrets::parse_key(&key) {
        Ok(sealer) => sealer,
        Err(e) => {
            eprintln!("cas-server: {e}");
            return ExitCode::from(1);
        }
    };
    match read_stdin_line("Value to encrypt") {
        Ok(value) => {
            println!("{}", config::secrets::encrypt(&sealer, &value));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// One line from stdin without its line ending; refuses an empty value.
fn read_stdin_line(prompt: &str) -> Result<String, ExitCode> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("{prompt} (input is echoed; pipe it in to avoid that):");
    }
    let mut line = String::new();
    if let Err(e) = stdin.lock().read_line(&mut line) {
        eprintln!("cas-server: cannot read stdin: {e}");
        return Err(ExitCode::from(1));
    }
    let value = line.strip_suffix('\n').unwrap_or(&line);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        eprintln!("cas-server: the value is empty");
        return Err(ExitCode::from(1));
    }
    Ok(value.to_owned())
}

fn hash_password() -> ExitCode {
    let password = match read_stdin_line("Password") {
        Ok(p) => p,
        Err(code) => return code,
    };
    match auth::hash_password(&password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cas-server: cannot hash the password: {e}");
            ExitCode::from(1)
        }
    }
}
