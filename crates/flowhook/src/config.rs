//! Configuration: compiled-in commented defaults (`config/default.toml`) < optional TOML file <
//! `FLOWHOOK_*` environment < command-line flags, validated before anything starts.
//!
//! A bad configuration stops the process with one line naming the key and the problem; an
//! unknown key in a file is an error (a typo must not silently fall back to a default).
//! Unknown `FLOWHOOK_*` variables are ignored: tests and tools use that prefix too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The defaults, with a comment on every key; printed by `flowhook config defaults`.
pub const DEFAULTS_TOML: &str = include_str!("../config/default.toml");

/// Every configuration key (the names of the file, `FLOWHOOK_<KEY>` and `--<key>`).
pub const KEYS: &[&str] = &[
    "listen",
    "database_url",
    "database_max_connections",
    "database_connect_timeout_secs",
    "log_format",
    "log_level",
    "body_limit_bytes",
    "shutdown_grace_secs",
    "admin_key",
    "public_base_url",
    "delivery_concurrency",
    "delivery_org_share_percent",
    "delivery_lease_secs",
    "delivery_poll_ms",
    "delivery_node_timeout_ms",
    "retry_schedule_ms",
    "retry_then_every_ms",
    "retry_give_up_after_ms",
    "breaker_threshold",
    "breaker_first_cooldown_ms",
    "breaker_cooldown_ms",
    "egress_deny_private",
    "egress_allow",
    "egress_deny",
    "attempt_body_retention_days",
    "console_links",
    "console_link_valid_days",
    "console_session_idle_mins",
    "console_session_max_hours",
    "console_trusted_user_header",
    "console_trusted_user_org",
    "metrics_token",
    "master_key",
    "master_key_file",
];

/// The validated configuration. Every field is documented in `config/default.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub database_max_connections: u32,
    pub database_connect_timeout_secs: u64,
    pub log_format: LogFormat,
    pub log_level: String,
    pub body_limit_bytes: usize,
    pub shutdown_grace_secs: u64,
    /// Bootstrap admin key (secret; never logged or shown).
    #[serde(default)]
    pub admin_key: Option<String>,
    pub public_base_url: String,
    pub delivery_concurrency: usize,
    /// Of `delivery_concurrency`, the percentage one organisation may hold (1–100).
    pub delivery_org_share_percent: u8,
    pub delivery_lease_secs: u64,
    pub delivery_poll_ms: u64,
    pub delivery_node_timeout_ms: u64,
    pub retry_schedule_ms: Vec<u64>,
    pub retry_then_every_ms: u64,
    pub retry_give_up_after_ms: u64,
    pub breaker_threshold: u32,
    pub breaker_first_cooldown_ms: u64,
    pub breaker_cooldown_ms: u64,
    pub egress_deny_private: bool,
    pub egress_allow: Vec<String>,
    pub egress_deny: Vec<String>,
    /// The proxy deliveries go through (may hold credentials: never logged or shown in full).
    #[serde(default)]
    pub egress_proxy: Option<String>,
    pub attempt_body_retention_days: u64,
    /// Whether each `taskUrl` sent is a signed approval link (false: the task page's plain
    /// address, for approvers who sign in to the console, e.g. by single sign-on).
    pub console_links: bool,
    /// How long an approval link (`taskUrl`) works, counted from the attempt that sent it.
    pub console_link_valid_days: u64,
    /// A console session unused this long ends.
    pub console_session_idle_mins: u64,
    /// A console session ends this long after sign-in.
    pub console_session_max_hours: u64,
    /// Single sign-on: a header an authenticating proxy sets to the user's id (off when unset).
    #[serde(default)]
    pub console_trusted_user_header: Option<String>,
    /// The organisation of the users the trusted header names.
    #[serde(default)]
    pub console_trusted_user_org: Option<String>,
    /// When set, `/metrics` answers only to `Authorization: Bearer <metrics_token>` (secret;
    /// never logged or shown).
    #[serde(default)]
    pub metrics_token: Option<String>,
    /// The master key(s) sealing the secrets at rest: base64 of 32 bytes, comma-separated, the
    /// first one sealing (secret; never logged or shown — prefer FLOWHOOK_MASTER_KEY).
    #[serde(default)]
    pub master_key: Option<Secret>,
    /// The key file read (and created on first start) when `master_key` is unset; default
    /// `flowhook-master.key` beside a SQLite database, else in the working directory.
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
}

/// A configuration value that is a secret: serialised as is (for `config show` to redact), but
/// never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Values given as command-line flags; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
}

/// A configuration that cannot be used; its `Display` is the one line the user sees.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0}: not found")]
    FileNotFound(PathBuf),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Where a database URL points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl Config {
    /// The compiled-in defaults alone.
    pub fn defaults() -> Self {
        Figment::from(Toml::string(DEFAULTS_TOML))
            .extract()
            .expect("the compiled-in defaults are a valid configuration")
    }

    /// Loads defaults < `file` < environment < `flags` and validates the result.
    pub fn load(file: Option<&std::path::Path>, flags: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::FileNotFound(path.to_owned()));
            }
            figment = figment.merge(Toml::file(path));
        }
        let config: Config = figment
            .merge(Env::prefixed("FLOWHOOK_").only(KEYS))
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|e| ConfigError::Invalid(one_line(&e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot, of the plain settings; each layer checks its own when
    /// it builds its typed settings from them (`app::check_config` runs them all).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, why: String| Err(ConfigError::Invalid(format!("`{key}`: {why}")));
        if let Err(why) = database_kind(&self.database_url) {
            return invalid("database_url", why);
        }
        if self.database_max_connections == 0 {
            return invalid("database_max_connections", "must be at least 1".into());
        }
        if self.body_limit_bytes < 1024 {
            return invalid("body_limit_bytes", "must be at least 1024".into());
        }
        if self.delivery_concurrency == 0
            || self.delivery_lease_secs == 0
            || self.delivery_poll_ms == 0
        {
            return invalid(
                "delivery_*",
                "concurrency, lease and poll must be positive".into(),
            );
        }
        if !(1..=100).contains(&self.delivery_org_share_percent) {
            return invalid(
                "delivery_org_share_percent",
                "must be a percentage from 1 to 100".into(),
            );
        }
        if self.delivery_node_timeout_ms < 2_500 {
            return invalid(
                "delivery_node_timeout_ms",
                "must be at least 2500 (heartbeats go every second)".into(),
            );
        }
        if self.breaker_first_cooldown_ms == 0
            || self.breaker_first_cooldown_ms > self.breaker_cooldown_ms
        {
            return invalid(
                "breaker_first_cooldown_ms",
                "must be positive and at most breaker_cooldown_ms".into(),
            );
        }
        if self.retry_schedule_ms.is_empty() {
            return invalid("retry_schedule_ms", "needs at least one delay".into());
        }
        if let Some(key) = &self.admin_key {
            if key.len() < 16 {
                return invalid("admin_key", "must be at least 16 characters".into());
            }
        }
        if let Some(token) = &self.metrics_token {
            if token.len() < 16 {
                return invalid("metrics_token", "must be at least 16 characters".into());
            }
        }
        match url::Url::parse(&self.public_base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return invalid(
                    "public_base_url",
                    format!("`{}` is not an http(s) URL", self.public_base_url),
                )
            }
        }
        if self.console_link_valid_days == 0
            || self.console_session_idle_mins == 0
            || self.console_session_max_hours == 0
        {
            return invalid(
                "console_*",
                "link validity and session lifetimes must be positive".into(),
            );
        }
        match (
            &self.console_trusted_user_header,
            &self.console_trusted_user_org,
        ) {
            (Some(h), Some(o)) if !o.trim().is_empty() => {
                if axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    return invalid(
                        "console_trusted_user_header",
                        format!("`{h}` is not a header name"),
                    );
                }
            }
            (None, None) => {}
            _ => {
                return invalid(
                    "console_trusted_user_header",
                    "set it together with `console_trusted_user_org` (the users' organisation)"
                        .into(),
                )
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return invalid(
                "log_level",
                format!("`{}` is not a log filter: {e}", self.log_level),
            );
        }
        Ok(())
    }

    pub fn database_kind(&self) -> DatabaseKind {
        database_kind(&self.database_url).expect("validated")
    }

    /// The delivery slots one organisation may hold: `delivery_org_share_percent` of
    /// `delivery_concurrency`, rounded up, at least one.
    pub fn delivery_org_share(&self) -> usize {
        (self.delivery_concurrency * usize::from(self.delivery_org_share_percent))
            .div_ceil(100)
            .max(1)
    }

    pub fn database_connect_timeout(&self) -> Duration {
        Duration::from_secs(self.database_connect_timeout_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// The backend of a database URL, or why it is not one Flowhook can use.
pub fn database_kind(url: &str) -> Result<DatabaseKind, String> {
    let shown = redact_url(url);
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(format!(
            "`{shown}` is not a URL: use sqlite://FILE or postgres://USER@HOST/DB"
        ));
    };
    match scheme {
        "sqlite" if !rest.trim_start_matches('/').is_empty() => Ok(DatabaseKind::Sqlite),
        "sqlite" => Err(format!("`{shown}` names no file")),
        "postgres" | "postgresql" => match url::Url::parse(url) {
            Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => Ok(DatabaseKind::Postgres),
            Ok(_) => Err(format!("`{shown}` names no host")),
            Err(e) => Err(format!("`{shown}` is not a valid URL: {e}")),
        },
        other => Err(format!(
            "unsupported scheme `{other}` in `{shown}`: use sqlite://FILE or postgres://USER@HOST/DB"
        )),
    }
}

/// The URL with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

fn one_line(e: &figment::Error) -> String {
    // figment chains several errors; the first says which key and where.
    e.clone()
        .into_iter()
        .next()
        .map(|e| e.to_string())
        .unwrap_or_else(|| e.to_string())
        .replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_every_key_is_documented() {
        let c = Config::defaults();
        c.validate().unwrap();
        assert_eq!(c.database_kind(), DatabaseKind::Sqlite);
        for key in KEYS {
            assert!(
                DEFAULTS_TOML.contains(&format!("\n{key} = "))
                    || DEFAULTS_TOML.contains(&format!("\n# {key} = ")),
                "{key} in default.toml"
            );
        }
    }

    #[test]
    fn an_organisations_share_follows_the_node_s_slots() {
        let mut c = Config::defaults();
        assert_eq!(c.delivery_org_share(), 48, "75 % of 64");
        c.delivery_concurrency = 10;
        assert_eq!(c.delivery_org_share(), 8, "rounded up");
        c.delivery_concurrency = 1;
        c.delivery_org_share_percent = 1;
        assert_eq!(c.delivery_org_share(), 1, "never none");
        c.delivery_org_share_percent = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("delivery_org_share_percent"));
        c.delivery_org_share_percent = 101;
        assert!(c.validate().is_err());
    }

    #[test]
    fn file_then_flags_override_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.toml");
        std::fs::write(&file, "log_level = \"debug\"\nlisten = \"127.0.0.1:9\"\n").unwrap();
        let flags = Overrides {
            listen: Some("127.0.0.1:10".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&file), &flags).unwrap();
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.listen.port(), 10);

        std::fs::write(&file, "databse_url = \"sqlite://x.db\"\n").unwrap();
        let err = Config::load(Some(&file), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("databse_url"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn database_urls_are_checked_and_passwords_hidden() {
        assert_eq!(database_kind("sqlite://f.db"), Ok(DatabaseKind::Sqlite));
        assert_eq!(database_kind("sqlite:f.db"), Ok(DatabaseKind::Sqlite));
        assert_eq!(
            database_kind("postgresql://u@h/db"),
            Ok(DatabaseKind::Postgres)
        );
        let e = database_kind("mysql://u:hunter2@h/db").unwrap_err();
        assert!(
            e.contains("unsupported scheme `mysql`") && !e.contains("hunter2"),
            "{e}"
        );
        assert!(database_kind("flowhook.db").is_err());
        assert!(database_kind("sqlite://").is_err());
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    }
}
