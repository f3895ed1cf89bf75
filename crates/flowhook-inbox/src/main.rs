//! The `flowhook-inbox` command: `serve` (the receiver) and `config` (print the defaults).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flowhook_inbox::config::{Config, LogFormat, Overrides, DEFAULTS_TOML};
use flowhook_inbox::Application;

#[derive(Parser)]
#[command(
    name = "flowhook-inbox",
    version,
    about = "Receives signed approval-task callbacks from many sources and serves each user's unified task lists."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the callback endpoints and the lists.
    Serve {
        /// A TOML file (see `flowhook-inbox config`).
        #[arg(long, env = "FLOWHOOK_INBOX_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (port 0: any free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// sqlite://FILE or postgres://USER@HOST/DB.
        #[arg(long)]
        database_url: Option<String>,
        /// text or json.
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Print the commented default configuration.
    Config,
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a collector must not get escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Config => {
            print!("{DEFAULTS_TOML}");
            ExitCode::SUCCESS
        }
        Cmd::Serve {
            config,
            listen,
            database_url,
            log_format,
        } => {
            let log_format = match log_format.as_deref() {
                None => None,
                Some("text") => Some(LogFormat::Text),
                Some("json") => Some(LogFormat::Json),
                Some(other) => {
                    eprintln!("error: --log-format: `{other}` is not text or json");
                    return ExitCode::from(2);
                }
            };
            let overrides = Overrides {
                listen,
                database_url,
                log_format,
            };
            let config = match Config::load(config.as_deref(), &overrides) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&config);
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
            let result = runtime.block_on(async move {
                let app = Application::build(config).await?;
                app.run_until_stopped(shutdown_signal()).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
