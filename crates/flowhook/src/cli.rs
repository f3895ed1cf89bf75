//! The `flowhook` command line: `serve`, `migrate`, `sign`, `verify`, `check-receiver`, `config`, …
//!
//! The configuration flags (`--config`, `--listen`, `--database-url`, `--log-format`,
//! `--log-level`) belong to the commands that read the configuration (`serve`, `migrate`,
//! `rotate-*`, `bench`, `config show`) and are accepted before the command too; `sign`,
//! `verify`, `backfill` and `redeliver` show only their own flags. `FLOWHOOK_*` variables
//! apply either way. Errors surface as one line on stderr and a non-zero exit status.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use flowhook_sign::event::EventKind;
use flowhook_sign::receive::{RawRequest, SystemTokens, Verifier};
use flowhook_sign::wire::{self, BodyEncoding};
use flowhook_sign::yida;

use crate::app::{shutdown_signal, Application};
use crate::config::{redact_url, Config, Overrides, DEFAULTS_TOML};
use crate::store::secrets::{self, KeySource};
use crate::store::Store;
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "flowhook",
    version,
    about = "Approval task center with reliable, Yida-compatible task event push"
)]
pub struct Cli {
    /// Configuration flags given before the command (the command's own win).
    #[command(flatten)]
    pub settings: ConfigArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The configuration flags, for the commands that read the configuration.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// A TOML configuration file (keys as in `flowhook config defaults`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// sqlite://FILE (default sqlite://flowhook.db) or postgres://USER@HOST/DB.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. info or flowhook=debug,info.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

impl ConfigArgs {
    /// These flags, each one absent taken from `outer` (the flags before the command).
    fn or(&self, outer: &ConfigArgs) -> ConfigArgs {
        ConfigArgs {
            config: self.config.clone().or_else(|| outer.config.clone()),
            listen: self.listen.clone().or_else(|| outer.listen.clone()),
            database_url: self
                .database_url
                .clone()
                .or_else(|| outer.database_url.clone()),
            log_format: self.log_format.clone().or_else(|| outer.log_format.clone()),
            log_level: self.log_level.clone().or_else(|| outer.log_level.clone()),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (migrates the database first).
    Serve {
        #[command(flatten)]
        settings: ConfigArgs,
        /// Seed a demo organisation (users, roles, an app, two processes, running instances);
        /// its API key is written to `flowhook-demo-key.txt`, the demo app's systemToken to
        /// `flowhook-demo-system-token.txt`.
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        settings: ConfigArgs,
    },
    /// Replace the installation's approval-link secret: every approval link sent so far stops
    /// working (deliveries sent from now on carry links signed with the new secret; running
    /// nodes pick it up within seconds).
    RotateLinkSecret {
        #[command(flatten)]
        settings: ConfigArgs,
    },
    /// Seal every secret in the database under a new master key. With a key file: a new key
    /// is generated and written first, the old one kept beside it until every secret is
    /// re-sealed, then dropped. With `master_key` (FLOWHOOK_MASTER_KEY): put the new key first,
    /// the old one after it (`NEW,OLD`), run this, then drop the old one.
    RotateMasterKey {
        #[command(flatten)]
        settings: ConfigArgs,
    },
    /// Compute a Yida signature: prints the sorted keys, the signing string and the sign.
    Sign {
        /// The application's systemToken.
        #[arg(long, env = "FLOWHOOK_SIGN_TOKEN", hide_env_values = true)]
        token: String,
        /// Print only the sign.
        #[arg(long, short)]
        quiet: bool,
        /// Parameters as KEY=VALUE (the value may contain `=`).
        #[arg(value_name = "KEY=VALUE", required = true)]
        params: Vec<String>,
    },
    /// Check a captured callback body: says `valid`, or why not (exit status 1).
    Verify {
        /// A systemToken to try (repeat for several, e.g. during a rotation).
        #[arg(
            long = "token",
            env = "FLOWHOOK_SIGN_TOKEN",
            hide_env_values = true,
            required = true
        )]
        tokens: Vec<String>,
        /// How the body is encoded.
        #[arg(long, value_enum, default_value_t = Encoding::Form)]
        encoding: Encoding,
        /// Also check the parameters of this event (created, finished, cancelled, deleted, cc).
        #[arg(long)]
        kind: Option<String>,
        /// With --kind: refuse a `dateTime` further than this from now (default: not checked,
        /// as captured bodies are usually old).
        #[arg(long, value_name = "SECONDS", requires = "kind")]
        max_skew_secs: Option<u64>,
        /// The body file; `-` or nothing reads standard input.
        file: Option<PathBuf>,
    },
    /// Backfill through a running Flowhook: push open tasks (or a time range) to the
    /// organisation's integration, with a progress bar.
    Backfill {
        #[command(flatten)]
        server: ServerArgs,
        /// Every event created at or after this time (epoch ms) instead of the open tasks.
        #[arg(long, requires = "to")]
        from: Option<i64>,
        /// … and before this time (epoch ms).
        #[arg(long, requires = "from")]
        to: Option<i64>,
    },
    /// Redeliver the delivered or dead deliveries matching a filter, through a running Flowhook.
    Redeliver {
        #[command(flatten)]
        server: ServerArgs,
        /// `dead` or `delivered`.
        #[arg(long, default_value = "dead")]
        status: String,
        /// Only deliveries created at or after this time (epoch ms).
        #[arg(long)]
        since: Option<i64>,
    },
    /// Check a receiver before going live: send it clearly marked probe requests (a signed
    /// event, its retry, an early finished, a forged sign, a replay, a wrong token, no sign,
    /// the five kinds, 20 at once) and grade each answer PASS / WARN / FAIL. Exit status 0,
    /// 1 when a probe FAILs, 2 when one WARNs and --strict is given.
    CheckReceiver(CheckReceiverArgs),
    /// Run a benchmark against a fresh database (default: a temporary SQLite file).
    Bench {
        /// Only `--database-url` is read (and the log flags).
        #[command(flatten)]
        settings: ConfigArgs,
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Show configuration.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
}

/// Where the running Flowhook is, and who asks.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The Flowhook's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// An API key with the `integration` (or `admin`) scope.
    #[arg(long, env = "FLOWHOOK_API_KEY", hide_env_values = true)]
    pub key: String,
    /// The organisation.
    #[arg(long)]
    pub org: String,
}

/// What `check-receiver` checks: a URL directly, or an action through a running Flowhook.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["url", "action"])))]
pub struct CheckReceiverArgs {
    /// The receiver's URL; `{event}` in it becomes created, finished, cancelled, deleted or cc
    /// (flowhook-inbox: http://127.0.0.1:8090/callbacks/SOURCE/{event}). Sent from here, under
    /// the egress policy of the configuration.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// With --url: the application's systemToken, as the receiver knows it.
    #[arg(long, env = "FLOWHOOK_SIGN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The application (`appType`) the receiver knows the token of. Required with --url; with
    /// --action the organisation's first application when absent.
    #[arg(long, value_name = "APP")]
    pub app_type: Option<String>,
    /// With --url: the `corpId` the probes carry.
    #[arg(long, default_value = "flowhook-check", value_name = "CORP")]
    pub corp_id: String,
    /// How the five kinds are sent: form (Yida's), json, or both (each kind in each). Default:
    /// form with --url, the actions' own with --action.
    #[arg(long, value_enum)]
    pub encoding: Option<CheckEncoding>,
    /// With --url: a header sent with every probe, `Name: value` (e.g. authentication);
    /// repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// With --url: a TOML configuration file; its egress policy (`egress_*`) applies to the
    /// probes, as to deliveries.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// With --url: time for one request, in ms (100 to 60000).
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub timeout_ms: u64,
    /// Check this action through a running Flowhook instead (its connector's URL,
    /// authentication and timeout; each kind to the action the sync strategy maps it to on
    /// that connector); the scorecard is kept there too.
    #[arg(long, value_name = "ID", conflicts_with_all = ["headers", "corp_id", "config"])]
    pub action: Option<String>,
    /// With --action: the Flowhook's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// With --action: an API key with the `integration` (or `admin`) scope.
    #[arg(long, env = "FLOWHOOK_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// With --action: the organisation.
    #[arg(long)]
    pub org: Option<String>,
    /// Exit 2 when a probe WARNs (and none FAILs).
    #[arg(long)]
    pub strict: bool,
    /// Print the scorecard as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckEncoding {
    Form,
    Json,
    Both,
}

impl CheckEncoding {
    fn encodings(self) -> Vec<crate::integration::connectors::Encoding> {
        use crate::integration::connectors::Encoding as E;
        match self {
            CheckEncoding::Form => vec![E::Form],
            CheckEncoding::Json => vec![E::Json],
            CheckEncoding::Both => vec![E::Form, E::Json],
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Concurrent clients start 3-approver instances and act on every task, over HTTP.
    Engine(crate::bench::EngineBench),
    /// API calls → events → deliveries to a receiver on 127.0.0.1: throughput and latency.
    Delivery(crate::bench::DeliveryBench),
    /// A healthy organisation's latency alone, then beside a hanging and a refusing neighbour.
    Neighbour(crate::bench::NeighbourBench),
    /// The console's busiest pages rendered with a large history in the database.
    Console(crate::bench::ConsoleBench),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the compiled-in defaults, every key commented.
    Defaults,
    /// Print the effective configuration (passwords hidden).
    Show {
        #[command(flatten)]
        settings: ConfigArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Encoding {
    Form,
    Json,
}

impl Cli {
    /// The configuration flags in effect: the command's own, then those before it.
    fn settings(&self) -> ConfigArgs {
        let inner = match &self.command {
            Command::Serve { settings, .. }
            | Command::Migrate { settings }
            | Command::RotateLinkSecret { settings }
            | Command::RotateMasterKey { settings }
            | Command::Bench { settings, .. }
            | Command::Config {
                what: ConfigCommand::Show { settings },
            } => settings.clone(),
            Command::CheckReceiver(args) => ConfigArgs {
                config: args.config.clone(),
                ..ConfigArgs::default()
            },
            _ => ConfigArgs::default(),
        };
        inner.or(&self.settings)
    }

    fn load_config(&self) -> anyhow::Result<Config> {
        let s = self.settings();
        let overrides = Overrides {
            listen: s.listen,
            database_url: s.database_url,
            log_format: s.log_format,
            log_level: s.log_level,
        };
        let config = Config::load(s.config.as_deref(), &overrides)?;
        crate::app::check_config(&config)?;
        Ok(config)
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Serve { demo, .. } => {
            let config = cli.load_config()?;
            telemetry::init_logging(&config);
            let app = Application::build(config).await?;
            if *demo {
                let key_file = std::path::Path::new("flowhook-demo-key.txt");
                if crate::demo::seed(app.store(), app.writer(), key_file).await? {
                    tracing::info!(
                        corp_id = crate::demo::CORP_ID,
                        key_file = %key_file.display(),
                        system_token_file = %crate::demo::system_token_file(key_file).display(),
                        "demo data seeded; the demo API key (admin scope) is in the key file, \
                         APP_DEMO's systemToken in the system token file"
                    );
                } else {
                    tracing::info!(corp_id = crate::demo::CORP_ID, "demo data already present");
                }
            }
            app.run_until_stopped(shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::RotateMasterKey { .. } => {
            let config = cli.load_config()?;
            telemetry::init_logging(&config);
            let store = Store::from_config(&config).await?;
            store.migrate().await?;
            let result = rotate_master_key(
                &store,
                &crate::store::secrets::KeySource::from_config(&config)
                    .map_err(crate::config::ConfigError::Invalid)?,
            )
            .await;
            store.close().await;
            println!("{}", result?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { .. } => {
            let config = cli.load_config()?;
            telemetry::init_logging(&config);
            let store = Store::from_config(&config).await?;
            let report = store.migrate().await?;
            store.close().await;
            println!(
                "{}: schema version {} -> {}",
                redact_url(&config.database_url),
                report.before,
                report.after
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::RotateLinkSecret { .. } => {
            let config = cli.load_config()?;
            telemetry::init_logging(&config);
            let store = Store::from_config(&config).await?;
            store.migrate().await?;
            store.rotate_link_secret().await?;
            store.close().await;
            println!(
                "{}: approval-link secret replaced; links sent before no longer work",
                redact_url(&config.database_url)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign {
            token,
            quiet,
            params,
        } => {
            let params = params
                .iter()
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .with_context(|| format!("`{p}` is not KEY=VALUE"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let sorted = yida::sorted_params(&params)?;
            let sign = yida::sign(&params, token)?;
            if !quiet {
                let keys: Vec<&str> = sorted.iter().map(|(k, _)| *k).collect();
                println!("sorted keys: {}", keys.join(", "));
                println!("signing string: {}", yida::signing_string(&params, token)?);
            }
            println!("sign: {sign}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            tokens,
            encoding,
            kind,
            max_skew_secs,
            file,
        } => {
            let body = read_body(file.as_ref())?;
            let encoding = match encoding {
                Encoding::Form => BodyEncoding::Form,
                Encoding::Json => BodyEncoding::Json,
            };
            let verdict = verify_body(&body, encoding, tokens, kind.as_deref(), *max_skew_secs)?;
            match verdict {
                Ok(what) => {
                    println!("valid: {what}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(why) => {
                    println!("invalid: {why}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Backfill { server, from, to } => {
            let body = match (from, to) {
                (Some(from), Some(to)) => {
                    serde_json::json!({"mode": "range", "from": from, "to": to})
                }
                _ => serde_json::json!({"mode": "open"}),
            };
            backfill(server, body).await
        }
        Command::Redeliver {
            server,
            status,
            since,
        } => {
            let mut url = format!(
                "{}/api/v1/orgs/{}/deliveries/redeliver?status={status}",
                server.server, server.org
            );
            if let Some(t) = since {
                url.push_str(&format!("&from={t}"));
            }
            let answer = api(server, reqwest::Method::POST, &url, None).await?;
            let jobs = format!("{}/api/v1/orgs/{}/jobs", server.server, server.org);
            follow_job(server, &jobs, &answer["job"], "redeliver").await
        }
        Command::CheckReceiver(args) => check_receiver(&cli, args).await,
        Command::Bench { what, .. } => {
            let _tmp;
            let url = match &cli.settings().database_url {
                Some(url) => url.clone(),
                None => {
                    let dir = tempfile::tempdir().context("a temporary directory")?;
                    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                    _tmp = dir;
                    url
                }
            };
            match what {
                BenchCommand::Engine(opts) => crate::bench::engine(&url, opts).await?,
                BenchCommand::Delivery(opts) => crate::bench::delivery(&url, opts).await?,
                BenchCommand::Neighbour(opts) => crate::bench::neighbour(&url, opts).await?,
                BenchCommand::Console(opts) => crate::bench::console(&url, opts).await?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { what } => {
            match what {
                ConfigCommand::Defaults => print!("{DEFAULTS_TOML}"),
                ConfigCommand::Show { .. } => {
                    let mut config = cli.load_config()?;
                    config.database_url = redact_url(&config.database_url);
                    if config.metrics_token.is_some() {
                        config.metrics_token = Some("***".into());
                    }
                    if config.master_key.is_some() {
                        config.master_key = Some(crate::config::Secret("***".into()));
                    }
                    if config.admin_key.is_some() {
                        config.admin_key = Some("***".into());
                    }
                    config.egress_proxy = config.egress_proxy.as_deref().map(redact_url);
                    print!("{}", toml_of(&config)?);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `flowhook rotate-master-key`: re-seals every secret under the first key of the keyring (a
/// new one, written into the key file first, when the file holds one key); then the key file
/// keeps the new key alone. Returns what to tell the operator.
async fn rotate_master_key(store: &Store, source: &KeySource) -> anyhow::Result<String> {
    const HEADER: &str =
        "# Flowhook master key: it seals the secrets in the database. Keep it, apart from\n\
                          # the database's backups; without it they cannot be read.\n";
    let keyring = secrets::load_keyring(store, source).await?;
    let (keyring, file) = match source {
        KeySource::File(path) => {
            let keyring = if keyring.ids().len() == 1 {
                // The new key first, the old one kept: a run cut short can be run again, and
                // a node started meanwhile reads both.
                let old = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let old = zeroize::Zeroizing::new(old);
                let keys: Vec<&str> = old
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .collect();
                let new = secrets::generate_key();
                let content = zeroize::Zeroizing::new(format!(
                    "{HEADER}{}\n{}\n",
                    new.as_str(),
                    keys.join("\n")
                ));
                secrets::write_key_file(path, &content, false)?;
                secrets::Keyring::parse(&content)?
            } else {
                keyring
            };
            (keyring, Some(path))
        }
        KeySource::Given(_) => (keyring, None),
    };
    let done = secrets::reseal(store, &keyring, true).await?;
    let left: u64 = secrets::census(store)
        .await?
        .into_iter()
        .filter(|(id, _)| id.as_deref() != Some(keyring.current_id()))
        .map(|(_, n)| n)
        .sum();
    if left > 0 {
        anyhow::bail!(
            "{left} secret(s) changed while being re-sealed and are not under key `{}` yet: run this again",
            keyring.current_id()
        );
    }
    let mut said = format!(
        "{} secret(s) re-sealed (and {} sealed from plaintext) under master key `{}`; every \
         secret is under it now",
        done.rekeyed,
        done.sealed,
        keyring.current_id()
    );
    match file {
        Some(path) => {
            let text = zeroize::Zeroizing::new(std::fs::read_to_string(path)?);
            let first = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .context("the key file holds no key")?;
            let content = zeroize::Zeroizing::new(format!("{HEADER}{first}\n"));
            secrets::write_key_file(path, &content, false)?;
            said.push_str(&format!(
                ".\nThe key file {} holds the new key alone: restart every node with it (a node \
                 still running with the old key cannot read the re-sealed secrets).",
                path.display()
            ));
        }
        None if keyring.ids().len() > 1 => said.push_str(
            ".\nNow drop the old key(s) from master_key (FLOWHOOK_MASTER_KEY) and restart.",
        ),
        None => said.push_str(
            ".\nTo rotate, put a new key first (FLOWHOOK_MASTER_KEY=NEW,OLD; `openssl rand -base64 32` \
             makes one), restart the nodes, and run this again.",
        ),
    }
    Ok(said)
}

fn toml_of(config: &Config) -> anyhow::Result<String> {
    let value = serde_json::to_value(config)?;
    let mut out = String::new();
    for (k, v) in value.as_object().context("a config is an object")? {
        out.push_str(&format!("{k} = {v}\n"));
    }
    Ok(out)
}

/// The largest body `verify` reads: a callback is a few KiB, and a file or pipe without end
/// (`/dev/zero`, a FIFO left open) must fail fast instead of filling memory.
pub const VERIFY_MAX_BYTES: u64 = 1024 * 1024;

fn read_body(file: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    let (source, reader): (String, Box<dyn Read>) = match file {
        Some(path) if path.as_os_str() != "-" => (
            path.display().to_string(),
            Box::new(
                std::fs::File::open(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            ),
        ),
        _ => ("standard input".to_owned(), Box::new(std::io::stdin())),
    };
    let mut body = Vec::new();
    // One byte more than allowed tells "exactly the limit" from "larger".
    reader
        .take(VERIFY_MAX_BYTES + 1)
        .read_to_end(&mut body)
        .with_context(|| format!("cannot read {source}"))?;
    if body.len() as u64 > VERIFY_MAX_BYTES {
        anyhow::bail!(
            "{source} is larger than {} MiB: not a captured callback body",
            VERIFY_MAX_BYTES / (1024 * 1024)
        );
    }
    // A captured body often ends with the newline an editor or `echo` added.
    while body.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        body.pop();
    }
    Ok(body)
}

/// Tokens given on the command line apply to whatever app the body names.
struct AnyApp<'a>(&'a [String]);

impl SystemTokens for AnyApp<'_> {
    fn tokens(&self, _app_type: &str) -> Vec<String> {
        self.0.to_vec()
    }
}

/// `Ok(Ok(description))` when valid, `Ok(Err(reason))` when not; `Err` for a usage error.
fn verify_body(
    body: &[u8],
    encoding: BodyEncoding,
    tokens: &[String],
    kind: Option<&str>,
    max_skew_secs: Option<u64>,
) -> anyhow::Result<Result<String, String>> {
    let Some(kind) = kind else {
        let params = match wire::decode(body, encoding) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.to_string())),
        };
        return Ok(yida::verify_any(&params, tokens.iter().map(String::as_str))
            .map(|()| format!("signature matches ({} parameters)", params.len()))
            .map_err(|e| e.to_string()));
    };
    let kind: EventKind = kind.parse()?;
    let request = RawRequest {
        content_type: Some(encoding.content_type()),
        body,
        headers: &[],
    };
    let skew = std::time::Duration::from_secs(max_skew_secs.unwrap_or(100 * 365 * 24 * 3600));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    Ok(Verifier::new(&AnyApp(tokens))
        .max_skew(skew)
        .verify(kind, &request, now_ms)
        .map(|v| format!("{} of app {}", v.event.kind(), v.event.app_type()))
        .map_err(|e| e.to_string()))
}

/// `check-receiver`: the probes from here (`--url`) or through a running Flowhook
/// (`--action`); the scorecard printed; the exit status from its grades.
async fn check_receiver(cli: &Cli, args: &CheckReceiverArgs) -> anyhow::Result<ExitCode> {
    use crate::delivery::check;
    let scorecard: check::Scorecard = match (&args.url, &args.action) {
        (Some(url), _) => {
            let token = args
                .token
                .clone()
                .context("--url needs --token (or FLOWHOOK_SIGN_TOKEN): the app's systemToken")?;
            let app_type = args.app_type.clone().context(
                "--url needs --app-type: the application the receiver knows the token of",
            )?;
            let target = url_target(url, &args.headers, args.timeout_ms)?;
            let egress =
                crate::delivery::dispatcher::DispatcherConfig::from_config(&cli.load_config()?)
                    .map_err(crate::config::ConfigError::Invalid)?
                    .egress;
            let probing = check::Probing {
                corp_id: args.corp_id.clone(),
                app_type,
                system_token: token,
                encodings: args.encoding.unwrap_or(CheckEncoding::Form).encodings(),
            };
            let client = crate::delivery::exchange::check_client(&egress);
            check::run(&client, &egress, &target, &probing).await
        }
        (None, Some(action)) => {
            let server = ServerArgs {
                server: args.server.trim_end_matches('/').to_owned(),
                key: args
                    .key
                    .clone()
                    .context("--action needs --key (or FLOWHOOK_API_KEY)")?,
                org: args.org.clone().context("--action needs --org")?,
            };
            let mut body = serde_json::json!({});
            if let Some(app) = &args.app_type {
                body["appType"] = app.clone().into();
            }
            if let Some(e) = args.encoding {
                body["encodings"] = serde_json::to_value(e.encodings())?;
            }
            let url = format!(
                "{}/api/v1/orgs/{}/actions/{}/check",
                server.server, server.org, action
            );
            let stored = api(&server, reqwest::Method::POST, &url, Some(body)).await?;
            serde_json::from_value(stored["scorecard"].clone())
                .context("the answer holds no scorecard")?
        }
        (None, None) => anyhow::bail!("give --url or --action"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&scorecard)?);
    } else {
        print!("{}", scorecard.render());
    }
    Ok(ExitCode::from(scorecard.exit_code(args.strict)))
}

/// The target of `check-receiver --url`: one connector (the URL's scheme, credentials, host and
/// port; the headers; the timeout) and per kind an action with the rest of the URL, `{event}`
/// replaced by the kind's short name.
fn url_target(
    url: &str,
    headers: &[String],
    timeout_ms: u64,
) -> anyhow::Result<crate::delivery::check::Target> {
    use crate::integration::connectors::{Action, Auth, Connector, Encoding};
    if !(100..=60_000).contains(&timeout_ms) {
        anyhow::bail!("--timeout-ms is 100 to 60000");
    }
    let mut default_headers = std::collections::BTreeMap::new();
    for h in headers {
        let (name, value) = h.split_once(':').with_context(|| {
            format!(
                "--header `{}` is not `Name: value`",
                h.split(':').next().unwrap_or("")
            )
        })?;
        default_headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let mut base: Option<String> = None;
    let mut routes = std::collections::BTreeMap::new();
    for kind in EventKind::ALL {
        let full = url.replace("{event}", kind.short_name());
        let parsed = url::Url::parse(&full).with_context(|| "--url is not a URL".to_string())?;
        if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
            anyhow::bail!("--url must be an http:// or https:// URL");
        }
        let origin = parsed[..url::Position::BeforePath].to_owned();
        if base.as_ref().is_some_and(|b| *b != origin) {
            anyhow::bail!("`{{event}}` may only be in the path or the query of --url");
        }
        base = Some(origin);
        routes.insert(
            kind,
            Action {
                id: format!("url-{}", kind.short_name()),
                corp_id: String::new(),
                connector_id: "url".into(),
                name: kind.event_type().into(),
                method: "POST".into(),
                path: parsed[url::Position::BeforePath..].to_owned(),
                encoding: Encoding::Form,
                created_at: 0,
            },
        );
    }
    Ok(crate::delivery::check::Target {
        connector: Connector {
            id: "url".into(),
            corp_id: String::new(),
            name: "check-receiver --url".into(),
            base_url: base.expect("five kinds"),
            auth: Auth::None,
            default_headers,
            timeout_ms,
            max_concurrency: crate::delivery::check::CONCURRENT as u32,
            created_at: 0,
            paused_at: None,
            paused_reason: None,
        },
        auth: Auth::None,
        routes,
    })
}

/// Calls the API of a running Flowhook; a non-2xx answer is an error with its message.
async fn api(
    server: &ServerArgs,
    method: reqwest::Method,
    url: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(&server.key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {}", server.server))?;
    let status = resp.status();
    let value: serde_json::Value = resp.json().await.context("the answer is not JSON")?;
    if !status.is_success() {
        anyhow::bail!("{status}: {}", value["message"].as_str().unwrap_or("error"));
    }
    Ok(value)
}

/// Starts a backfill and follows its progress until nothing is pending.
async fn backfill(server: &ServerArgs, body: serde_json::Value) -> anyhow::Result<ExitCode> {
    let base = format!("{}/api/v1/orgs/{}/backfills", server.server, server.org);
    let job = api(server, reqwest::Method::POST, &base, Some(body)).await?;
    follow_job(server, &base, &job, "backfill").await
}

/// Polls a job (`{base}/{id}`) with a progress bar until nothing is pending; exit 1 when any
/// of its deliveries is dead or cancelled.
async fn follow_job(
    server: &ServerArgs,
    base: &str,
    job: &serde_json::Value,
    label: &str,
) -> anyhow::Result<ExitCode> {
    let id = job["id"].as_str().context("a job id")?.to_owned();
    let total = job["total"].as_u64().unwrap_or(0);
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {label} [{{bar:40}}] {{pos}}/{{len}} {{msg}}"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let progress = loop {
        let p = api(server, reqwest::Method::GET, &format!("{base}/{id}"), None).await?;
        let done = ["delivered", "dead", "cancelled"]
            .iter()
            .map(|k| p[*k].as_u64().unwrap_or(0))
            .sum();
        bar.set_position(done);
        bar.set_message(format!("dead {} cancelled {}", p["dead"], p["cancelled"]));
        if p["state"] == "done" {
            break p;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    bar.finish_and_clear();
    println!(
        "{label} {id}: {} of {} delivered, {} dead, {} cancelled, in {:.1} s",
        progress["delivered"],
        progress["total"],
        progress["dead"],
        progress["cancelled"],
        started.elapsed().as_secs_f64()
    );
    let undelivered =
        progress["dead"].as_u64().unwrap_or(0) + progress["cancelled"].as_u64().unwrap_or(0);
    Ok(if undelivered == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
