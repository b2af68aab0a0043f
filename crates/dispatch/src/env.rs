//! The agent's environment: built from scratch, never inherited wholesale.
//!
//! A worker process holds tracker tokens and database URLs that an agent has no business seeing
//! (and that a prompt-injected agent could leak). The child starts from an empty environment and
//! receives only the basics a CLI needs, the agents' own API keys, and what the configuration
//! explicitly allows or sets.

use std::collections::BTreeMap;
use std::fmt;

use bg_run_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Passed through from the parent when present: what any CLI needs to find programs, its home
/// directory, a temp dir, a terminal type, a locale and a time zone. Entries ending in `*` match
/// every name with that prefix.
pub const BASE_VARS: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TMPDIR", "LANG", "LC_*", "TZ"];

/// Passed through from the parent when present: the agent CLIs' own credentials and settings.
pub const AGENT_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_AUTH_TOKEN",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "CODEX_HOME",
    "CLAUDE_CONFIG_DIR",
];

/// Set by the dispatcher for every run; configuration may not set them.
pub const TASK_VARS: &[&str] = &["BG_RUN_TASK_ID", "BG_RUN_TASK_URL", "BG_RUN_ATTEMPT", "BG_RUN_SUMMARY_FILE"];

/// What the agent's environment holds beyond [`BASE_VARS`] and [`AGENT_VARS`].
///
/// Tracker tokens (`GITHUB_TOKEN`, `GH_TOKEN`, `LINEAR_API_KEY`, `TODOIST_API_TOKEN`) and
/// `DATABASE_URL` reach the agent only when named in `allow`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvPolicy {
    /// More variables to pass through from the parent: exact names, or `PREFIX_*` for every name
    /// starting with `PREFIX_`.
    pub allow: Vec<String>,
    /// Variables to set to fixed values. They win over anything passed through.
    pub set: BTreeMap<String, String>,
    /// The environment to pass variables through from. `None` means this process's environment,
    /// read once when the environment is resolved (normally when the dispatcher is built). Tests
    /// and embedders give an explicit map instead of changing the process environment.
    #[serde(skip)]
    pub parent: Option<BTreeMap<String, String>>,
}

impl EnvPolicy {
    /// Checks `allow` and `set` without resolving anything.
    pub fn validate(&self) -> Result<()> {
        for pattern in &self.allow {
            let name = pattern.strip_suffix('*').unwrap_or(pattern);
            if !is_var_name(name) {
                return Err(Error::config(format!(
                    "env allow entry {pattern:?} is not a variable name or a PREFIX_* pattern \
                     (letters, digits and '_', not starting with a digit; '*' only at the end)"
                )));
            }
        }
        for name in self.set.keys() {
            if !is_var_name(name) {
                return Err(Error::config(format!(
                    "env set entry {name:?} is not a valid variable name (letters, digits and '_', not starting with a digit)"
                )));
            }
            if TASK_VARS.contains(&name.as_str()) {
                return Err(Error::config(format!(
                    "env set entry {name} is reserved: bg-run sets it for every task; remove it from the configuration"
                )));
            }
        }
        for (name, value) in &self.set {
            if value.contains('\0') {
                return Err(Error::config(format!(
                    "env set entry {name} contains a NUL byte, which no environment can hold"
                )));
            }
        }
        Ok(())
    }

    /// The agent's environment, minus the per-task variables: the base and agent variables and
    /// the allowed ones taken from the parent, then `set` on top.
    ///
    /// Values of the secret variables that `bg_run_core::redact` knows by name are registered
    /// with it, so an agent echoing its API key does not leak it into a tracker comment.
    pub fn resolve(&self) -> Result<ResolvedEnv> {
        self.validate()?;
        let vars = match &self.parent {
            Some(parent) => self.pick(parent.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            None => {
                // Variables that are not UTF-8 cannot be named in a bg-run config and are skipped.
                let parent: Vec<(String, String)> = std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                    .collect();
                self.pick(parent.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            }
        };
        for (name, value) in &vars {
            if bg_run_core::redact::SECRET_ENV_VARS.contains(&name.as_str()) {
                bg_run_core::redact::register_secret(value);
            }
        }
        Ok(ResolvedEnv { vars })
    }

    fn pick<'a>(&self, parent: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
        let mut vars: BTreeMap<String, String> = parent
            .filter(|(name, _)| {
                matches_any(name, BASE_VARS.iter().copied())
                    || matches_any(name, AGENT_VARS.iter().copied())
                    || matches_any(name, self.allow.iter().map(String::as_str))
            })
            .filter(|(name, _)| !TASK_VARS.contains(name))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        vars.extend(self.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        vars.into_iter().collect()
    }
}

// Debug shows names only: values include API keys, and specs and dispatchers get logged.
impl fmt::Debug for EnvPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvPolicy")
            .field("allow", &self.allow)
            .field("set", &self.set.keys().collect::<Vec<_>>())
            .field("parent", &self.parent.as_ref().map(|p| format!("{} variables", p.len())))
            .finish()
    }
}

/// A complete environment for a child process, sorted by name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ResolvedEnv {
    vars: Vec<(String, String)>,
}

impl ResolvedEnv {
    /// Exactly these variables, nothing else.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        ResolvedEnv { vars: vars.into_iter().collect() }
    }

    /// Sets `name` to `value`, replacing any earlier value.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.vars.binary_search_by(|(k, _)| k.as_str().cmp(&name)) {
            Ok(i) => self.vars[i].1 = value,
            Err(i) => self.vars.insert(i, (name, value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.binary_search_by(|(k, _)| k.as_str().cmp(name)).ok().map(|i| self.vars[i].1.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

impl fmt::Debug for ResolvedEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.vars.iter().map(|(k, _)| k)).finish()
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn matches_any<'a>(name: &str, patterns: impl IntoIterator<Item = &'a str>) -> bool {
    patterns.into_iter().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> BTreeMap<String, String> {
        [
            ("PATH", "/usr/bin"),
            ("HOME", "/home/me"),
            ("LC_ALL", "C.UTF-8"),
            ("GITHUB_TOKEN", "ghp_parenttokenparenttoken"),
            ("DATABASE_URL", "postgres://u:p@h/db"),
            ("OPENAI_API_KEY", "sk-test"),
            ("MY_APP_MODE", "fast"),
            ("MY_APPLE", "no"),
            ("BG_RUN_TASK_ID", "from-parent"),
            ("RANDOM", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn passes_only_base_agent_and_allowed_vars() {
        let policy = EnvPolicy {
            allow: vec!["MY_APP_*".into()],
            set: [("EXTRA".to_owned(), "1".to_owned()), ("HOME".to_owned(), "/override".to_owned())].into(),
            parent: Some(parent()),
        };
        let env = policy.resolve().unwrap();
        let names: Vec<&str> = env.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["EXTRA", "HOME", "LC_ALL", "MY_APP_MODE", "OPENAI_API_KEY", "PATH"]);
        assert_eq!(env.get("HOME"), Some("/override"));
        assert_eq!(env.get("GITHUB_TOKEN"), None);
        let shown = format!("{env:?} {policy:?}");
        assert!(!shown.contains("sk-test") && !shown.contains("ghp_") && !shown.contains("/override"), "{shown}");
        assert!(shown.contains("OPENAI_API_KEY"), "{shown}");
    }

    #[test]
    fn tracker_tokens_pass_only_when_allowed_by_name() {
        let policy = EnvPolicy { allow: vec!["GITHUB_TOKEN".into()], parent: Some(parent()), ..Default::default() };
        let env = policy.resolve().unwrap();
        assert_eq!(env.get("GITHUB_TOKEN"), Some("ghp_parenttokenparenttoken"));
        assert_eq!(env.get("DATABASE_URL"), None);
    }

    #[test]
    fn rejects_bad_patterns_and_reserved_names() {
        for bad in ["*", "A*B", "1X", "", "FOO-BAR"] {
            let policy = EnvPolicy { allow: vec![bad.into()], ..Default::default() };
            let err = policy.validate().unwrap_err().to_string();
            assert!(err.contains("env allow entry"), "{bad}: {err}");
        }
        let policy = EnvPolicy { set: [("BG_RUN_ATTEMPT".to_owned(), "9".to_owned())].into(), ..Default::default() };
        assert!(policy.validate().unwrap_err().to_string().contains("reserved"));
    }
}
