//! The `keyrail` binary: command line, configuration, logging, and the commands.

mod backup;
mod config;

/// mimalloc: the verify path allocates small, short-lived buffers per request, where glibc's
/// malloc showed up as the largest user-space cost in the profile (see bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use keyrail_core::SystemClock;
use keyrail_server::config::{Config, LogFormat};
use keyrail_server::{StartOptions, bootstrap};

/// Self-hosted API access management: API keys, logins, roles and app grants in one binary.
#[derive(Parser)]
#[command(
    name = "keyrail",
    version,
    about,
    after_help = "Configuration: a TOML file (--config) over built-in defaults; every key can be \
                  overridden by KEYRAIL_<KEY>, with __ between nested keys \
                  (KEYRAIL_LIMITS__LOGIN_PER_IP=100/15m).\n\
                  With no configuration at all, `keyrail serve` listens on 127.0.0.1:8080 with \
                  an embedded SQLite database in ./keyrail-data/."
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server until SIGTERM or Ctrl-C.
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Create (or promote) the platform superuser and their `admin` workspace, then print one
    /// JSON line {"user_id", "workspace_id", "api_key"}. Idempotent; safe beside a running
    /// server on the same store.
    Init {
        /// The superuser's email.
        #[arg(long)]
        email: String,
        /// A file holding the password (first line). Without it a password is generated and
        /// printed once on stderr.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Print the effective configuration (secrets left out) and exit.
    Config,
    /// API-key operations for operators.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Write a backup of the whole database to FILE (the master key is not included).
    ///
    /// Every table, sealed secrets and hashes included, in a versioned, gzip-compressed,
    /// checksummed archive, read in one consistent snapshot; safe beside a running server. The master key is NOT in it: keep the master key
    /// with the backup, or the sealed secrets in it cannot be opened.
    Backup {
        /// Where to write the archive (replaced if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a backup into the configured, empty database (SQLite or PostgreSQL).
    ///
    /// Migrates it first; refuses a database holding any row unless --force.
    /// Checks the archive's format, versions and checksum before writing anything; writes all
    /// tables in one transaction. Start the server with the same master key as the source.
    Restore {
        /// The archive written by `keyrail backup`.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Delete everything in the target database first.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Verify a key against the store, as `POST /api/v1/keys/verify` would (without spending
    /// credits or rate limit), and print the answer as JSON. Exit code 0 when valid, 1 if not.
    Verify {
        /// The key (or `-` to read it from standard input, keeping it out of shell history).
        key: String,
        /// Scopes the key must hold (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Only a key of this workspace passes (custom scope names are per workspace).
        #[arg(long = "workspace")]
        workspace: Option<String>,
    },
}

/// `serve` logs to stdout; one-shot commands keep stdout for their answer and log to stderr.
fn init_logging(config: &Config, to_stderr: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Whatever the level asked for: rmcp's debug events print whole MCP messages (secrets).
    let filter = match keyrail_server::mcp::LOG_DIRECTIVE.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let writer = tracing_subscriber::fmt::writer::BoxMakeWriter::new(if to_stderr {
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr)
    } else {
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout)
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

/// SIGTERM or Ctrl-C (SIGINT). Made before the server starts, so that a signal that comes as
/// soon as it listens is a clean shutdown too, not the default action (an abrupt exit).
#[cfg(unix)]
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

#[cfg(not(unix))]
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

async fn serve(config: Config) -> Result<(), String> {
    let stop = stop_signal()?;
    let server = keyrail_server::start(config, StartOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    stop.await;
    tracing::info!("shutting down: finishing requests in flight");
    server.shutdown().await.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(config: Config) -> Result<(), String> {
    bootstrap::ensure_data_dir(&config.data_dir)
        .map_err(|e| format!("data directory {}: {e}", config.data_dir.display()))?;
    let applied = keyrail_store::migrate(&config.database_url, &config.data_dir)
        .await
        .map_err(|e| format!("database: {e}"))?;
    println!(
        "{}",
        serde_json::json!({
            "applied": applied,
            "store": keyrail_store::describe(&config.database_url, &config.data_dir),
        })
    );
    Ok(())
}

async fn init(
    config: Config,
    email: &str,
    password_file: Option<&std::path::Path>,
) -> Result<(), String> {
    let password = match password_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("password file {}: {e}", path.display()))?;
            let line = text.lines().next().unwrap_or("").to_owned();
            Some(keyrail_core::secret::Secret::new(line))
        }
        None => None,
    };
    bootstrap::ensure_data_dir(&config.data_dir)
        .map_err(|e| format!("data directory {}: {e}", config.data_dir.display()))?;
    bootstrap::load_or_create_master_key(&config).map_err(|e| format!("master key: {e}"))?;
    let store = keyrail_store::open(&config.database_url, &config.data_dir)
        .await
        .map_err(|e| format!("database: {e}"))?;
    let outcome =
        keyrail_core::platform::init_superuser(store.as_ref(), &SystemClock, email, password)
            .await
            .map_err(|e| e.to_string())?;
    store.close().await;
    if let Some(p) = &outcome.generated_password {
        eprintln!(
            "keyrail: generated password for {} (shown once): {}",
            outcome.user.email,
            p.expose()
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "user_id": outcome.user.id,
            "workspace_id": outcome.workspace.id,
            "api_key": outcome.api_key.expose(),
        })
    );
    Ok(())
}

async fn verify_key(
    config: Config,
    key: String,
    scopes: Vec<String>,
    workspace: Option<String>,
) -> Result<(), String> {
    use keyrail_core::keys::verify::{KeyVerifier, VerifyCode};
    let key = if key == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("reading the key: {e}"))?;
        line.trim().to_owned()
    } else {
        key
    };
    let store = keyrail_store::open(&config.database_url, &config.data_dir)
        .await
        .map_err(|e| format!("database: {e}"))?;
    let limiter = Arc::new(keyrail_server::limiter::MemoryLimiter::new());
    let verifier = KeyVerifier::new(store.clone(), Arc::new(SystemClock), limiter);
    verifier.reload_formats().await.map_err(|e| e.to_string())?;
    let required: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let v = verifier
        .verify(&key, &required, 0, workspace.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    store.close().await;
    println!(
        "{}",
        serde_json::to_string(&keyrail_server::routes::keys::verify_out(&v)).unwrap_or_default()
    );
    if v.code == VerifyCode::Valid {
        Ok(())
    } else {
        Err(format!("key is not valid: {}", v.code.as_str()))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, warnings) = match config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("keyrail: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Config = cli.command {
        for w in &warnings {
            eprintln!("keyrail: warning: {w}");
        }
        match toml::to_string_pretty(&config) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("keyrail: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    init_logging(&config, !matches!(cli.command, Command::Serve));
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyrail: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(config).await,
            Command::Init {
                email,
                password_file,
            } => init(config, &email, password_file.as_deref()).await,
            Command::Config => unreachable!("handled above"),
            Command::Keys(KeysCommand::Verify {
                key,
                scopes,
                workspace,
            }) => verify_key(config, key, scopes, workspace).await,
            Command::Backup { out } => backup::backup(config, &out).await,
            Command::Restore { from, force } => backup::restore(config, &from, force).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "keyrail stopped");
            eprintln!("keyrail: {e}");
            ExitCode::FAILURE
        }
    }
}
