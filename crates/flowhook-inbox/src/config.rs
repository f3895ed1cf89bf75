//! Configuration: compiled-in commented defaults (`config/default.toml`) < optional TOML file <
//! `FLOWHOOK_INBOX_*` environment < flags, validated before anything starts.
//!
//! Tokens are secrets: [`Token`]'s `Debug` shows a mask, so a logged configuration or error
//! never carries one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub const DEFAULTS_TOML: &str = include_str!("../config/default.toml");

/// A systemToken (secret).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// One token, or several during a rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Tokens {
    One(Token),
    Many(Vec<Token>),
}

impl Tokens {
    pub fn all(&self) -> Vec<String> {
        match self {
            Tokens::One(t) => vec![t.0.clone()],
            Tokens::Many(ts) => ts.iter().map(|t| t.0.clone()).collect(),
        }
    }
}

/// A sender of callbacks: its name is the URL segment, its apps' tokens verify its requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub name: String,
    pub apps: BTreeMap<String, Tokens>,
}

impl Source {
    /// The form `flowhook_sign::receive::Verifier` reads.
    pub fn token_map(&self) -> HashMap<String, Vec<String>> {
        self.apps
            .iter()
            .map(|(app, t)| (app.clone(), t.all()))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub database_max_connections: u32,
    pub max_skew_secs: u64,
    pub body_limit_bytes: usize,
    pub log_format: LogFormat,
    pub log_level: String,
    pub sources: Vec<Source>,
}

/// Flags that override the other layers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// The compiled-in defaults.
    pub fn defaults() -> Self {
        Figment::from(Toml::string(DEFAULTS_TOML))
            .extract()
            .expect("the compiled-in defaults are valid")
    }

    /// Loads every layer and validates; the error is one line naming the problem.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, String> {
        let mut figment = Figment::from(Toml::string(DEFAULTS_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(format!(
                    "configuration file `{}` does not exist",
                    path.display()
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            .merge(Env::prefixed("FLOWHOOK_INBOX_").only(&[
                "listen",
                "database_url",
                "database_max_connections",
                "max_skew_secs",
                "body_limit_bytes",
                "log_format",
                "log_level",
            ]))
            .merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().map_err(|e| {
            e.into_iter()
                .next()
                .map(|e| e.to_string())
                .unwrap_or_default()
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        let scheme = self.database_url.split(':').next().unwrap_or_default();
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            return Err(format!(
                "database_url: use sqlite://FILE or postgres://USER@HOST/DB, not `{scheme}:`"
            ));
        }
        if self.sources.is_empty() {
            return Err(
                "no sources: configure at least one [[sources]] with its apps' systemTokens".into(),
            );
        }
        let mut names = HashSet::new();
        for s in &self.sources {
            let ok = !s.name.is_empty()
                && s.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(format!(
                    "source `{}`: a name is letters, digits, `-` and `_`",
                    s.name
                ));
            }
            if !names.insert(&s.name) {
                return Err(format!("source `{}` is configured twice", s.name));
            }
            if s.apps.is_empty() {
                return Err(format!("source `{}` has no apps", s.name));
            }
            for (app, tokens) in &s.apps {
                let all = tokens.all();
                if all.is_empty() || all.iter().any(|t| t.trim().is_empty()) {
                    return Err(format!(
                        "source `{}`, app `{app}`: the systemToken is empty",
                        s.name
                    ));
                }
            }
        }
        if self.body_limit_bytes < 1024 {
            return Err("body_limit_bytes: at least 1024".into());
        }
        Ok(())
    }

    pub fn max_skew(&self) -> Duration {
        Duration::from_secs(self.max_skew_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_sources(toml: &str) -> Result<Config, String> {
        let dir = tempfile_dir();
        let path = dir.join("inbox.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load(Some(&path), &Overrides::default())
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "flowhook-inbox-config-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn sources_load_and_tokens_never_show_in_debug() {
        let c = with_sources(
            "[[sources]]\nname = \"yida\"\n[sources.apps]\nAPP_A = \"secret-a\"\nAPP_B = [\"new-b\", \"old-b\"]\n",
        )
        .unwrap();
        assert_eq!(c.sources[0].token_map()["APP_B"], ["new-b", "old-b"]);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("secret-a") && !shown.contains("old-b"),
            "{shown}"
        );
    }

    #[test]
    fn bad_configurations_say_why() {
        for (toml, says) in [
            ("", "no sources"),
            ("[[sources]]\nname = \"a b\"\n[sources.apps]\nX = \"t\"\n", "letters"),
            ("[[sources]]\nname = \"a\"\napps = {}\n", "no apps"),
            ("[[sources]]\nname = \"a\"\n[sources.apps]\nX = \"\"\n", "empty"),
            (
                "[[sources]]\nname = \"a\"\n[sources.apps]\nX = \"t\"\n[[sources]]\nname = \"a\"\n[sources.apps]\nX = \"t\"\n",
                "twice",
            ),
            ("listen = \"nowhere\"\n", "listen"),
            ("colour = \"red\"\n", "colour"),
        ] {
            let err = with_sources(toml).unwrap_err();
            assert!(err.contains(says), "{toml:?}: {err}");
        }
    }
}
