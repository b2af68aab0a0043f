//! Which repository, which token, which API: resolved the way `gh` and GitHub Actions users
//! expect, each source named in the error when none gives an answer.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use bg_run_core::{redact, Error, Result};

/// The public GitHub API; GitHub Enterprise Server lives at `https://HOST/api/v3`.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// A repository on GitHub: `owner/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
}

impl RepoRef {
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Result<Self> {
        let (owner, name) = (owner.into(), name.into());
        check_owner(&owner).and_then(|()| check_name(&name)).map_err(|why| {
            Error::config(format!(
                "invalid repository '{owner}/{name}': {why}; expected owner/name, like octo-org/widgets"
            ))
        })?;
        Ok(RepoRef { owner, name })
    }

    /// `owner/name`. A GitHub URL (https or ssh) is accepted too, so a pasted clone URL works.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.contains("://") || text.contains('@') {
            return Self::from_remote_url(text);
        }
        let bad = |why: &str| {
            Error::config(format!("invalid repository '{text}': {why}; expected owner/name, like octo-org/widgets"))
        };
        let mut parts = text.split('/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(owner), Some(name), None) => RepoRef::new(owner, name.strip_suffix(".git").unwrap_or(name)),
            (_, _, Some(_)) => Err(bad("too many '/'")),
            _ => Err(bad("missing '/'")),
        }
    }

    /// The repository of a git remote URL: `https://github.com/o/r.git`, `git@github.com:o/r.git`,
    /// `ssh://git@github.com/o/r`, `git://…`, or the same on a GitHub Enterprise host.
    pub fn from_remote_url(url: &str) -> Result<Self> {
        let url = url.trim();
        // Never echo credentials embedded in a remote URL.
        let shown = redact::redact(url);
        let bad =
            |why: &str| Error::config(format!("cannot read a GitHub repository from remote URL '{shown}': {why}"));
        let path = if let Some((_, rest)) = url.split_once("://") {
            let rest = rest.rsplit_once('@').map(|(_, host_path)| host_path).unwrap_or(rest);
            rest.split_once('/').map(|(_, path)| path).ok_or_else(|| bad("no path after the host"))?
        } else if let Some((_, rest)) = url.split_once('@') {
            // scp-like syntax: user@host:owner/name.git
            rest.split_once(':').map(|(_, path)| path).ok_or_else(|| bad("expected user@host:owner/name"))?
        } else {
            return Err(bad("not a URL"));
        };
        let path = path.trim_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        let mut parts = path.split('/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(owner), Some(name), None) => RepoRef::new(owner, name).map_err(|_| bad("not an owner/name path")),
            _ => Err(bad("expected exactly owner/name after the host")),
        }
    }
}

fn check_owner(owner: &str) -> std::result::Result<(), &'static str> {
    if owner.is_empty() {
        return Err("empty owner");
    }
    if owner.len() > 39 {
        return Err("owner longer than 39 characters");
    }
    if !owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err("owner may contain only letters, digits and '-'");
    }
    Ok(())
}

fn check_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty repository name");
    }
    if name.len() > 100 {
        return Err("repository name longer than 100 characters");
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are not repository names");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err("repository name may contain only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

impl FromStr for RepoRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RepoRef::parse(s)
    }
}

/// The repository to work on: `--repo`, then the config file, then `GITHUB_REPOSITORY` (set by
/// GitHub Actions), then the `origin` remote of the clone at `workdir`.
pub fn resolve_repo(flag: Option<&str>, config: Option<&str>, workdir: &Path) -> Result<RepoRef> {
    let env = std::env::var("GITHUB_REPOSITORY").ok();
    resolve_repo_with(flag, config, env.as_deref(), workdir)
}

fn resolve_repo_with(flag: Option<&str>, config: Option<&str>, env: Option<&str>, workdir: &Path) -> Result<RepoRef> {
    let given = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    if let Some(repo) = given(flag) {
        return RepoRef::parse(&repo);
    }
    if let Some(repo) = given(config) {
        return RepoRef::parse(&repo).map_err(|e| Error::config(format!("config 'repo': {e}")));
    }
    if let Some(repo) = given(env) {
        return RepoRef::parse(&repo).map_err(|e| Error::config(format!("GITHUB_REPOSITORY: {e}")));
    }
    repo_from_git_remote(workdir).map_err(|e| {
        Error::config(format!(
            "no GitHub repository given: pass --repo owner/name, set 'repo' in the config or GITHUB_REPOSITORY, \
             or run inside a clone with a GitHub 'origin' remote ({e})"
        ))
    })
}

/// The repository of the `origin` remote of the git clone at `dir`.
pub fn repo_from_git_remote(dir: &Path) -> Result<RepoRef> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["config", "--get", "remote.origin.url"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::config(format!("cannot run git: {e}")))?;
    let url = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || url.is_empty() {
        return Err(Error::config(format!("{} has no 'origin' remote", dir.display())));
    }
    RepoRef::from_remote_url(&url)
}

/// The token from `GITHUB_TOKEN`, else `GH_TOKEN`, registered as a secret so it is masked in
/// every log line, comment and error from here on.
pub fn resolve_token() -> Result<String> {
    token_from(std::env::var("GITHUB_TOKEN").ok(), std::env::var("GH_TOKEN").ok())
}

fn token_from(github_token: Option<String>, gh_token: Option<String>) -> Result<String> {
    let token = [github_token, gh_token]
        .into_iter()
        .flatten()
        .map(|t| t.trim().to_owned())
        .find(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::config(
                "no GitHub token: set GITHUB_TOKEN or GH_TOKEN to a token that can read and write the repository's issues",
            )
        })?;
    redact::register_secret(&token);
    Ok(token)
}

/// The API base URL: `--api-url`, then the config's `api_url`, then `GITHUB_API_URL` (set by
/// GitHub Actions, also on Enterprise Server), else `https://api.github.com`.
pub fn resolve_api_url(flag: Option<&str>, config: Option<&str>) -> Result<String> {
    let env = std::env::var("GITHUB_API_URL").ok();
    resolve_api_url_with(flag, config, env.as_deref())
}

fn resolve_api_url_with(flag: Option<&str>, config: Option<&str>, env: Option<&str>) -> Result<String> {
    let (source, url) = [("--api-url", flag), ("config 'api_url'", config), ("GITHUB_API_URL", env)]
        .into_iter()
        .find_map(|(source, v)| v.map(str::trim).filter(|v| !v.is_empty()).map(|v| (source, v)))
        .unwrap_or(("default", DEFAULT_API_URL));
    normalize_api_url(url).map_err(|why| Error::config(format!("{source}: invalid API URL '{url}': {why}")))
}

/// Checks the URL's shape and drops a trailing slash, so paths join cleanly.
pub(crate) fn normalize_api_url(url: &str) -> std::result::Result<String, &'static str> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("it must start with https:// (or http:// for a local proxy)")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("it has no host");
    }
    if rest.contains(char::is_whitespace) || rest.contains('?') || rest.contains('#') {
        return Err("it must be a plain base URL without spaces, query or fragment");
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_owner_name_and_urls() {
        let want = RepoRef::new("octo-org", "widgets").unwrap();
        for text in [
            "octo-org/widgets",
            " octo-org/widgets.git ",
            "https://github.com/octo-org/widgets",
            "https://github.com/octo-org/widgets.git",
            "https://github.com/octo-org/widgets/",
            "https://x-access-token:ghs_abcdefghijklmnopqrstuvwxyz@github.com/octo-org/widgets.git",
            "git@github.com:octo-org/widgets.git",
            "ssh://git@github.com/octo-org/widgets.git",
            "ssh://git@github.com:22/octo-org/widgets",
            "git://github.com/octo-org/widgets.git",
            "https://ghe.example.com/octo-org/widgets.git",
        ] {
            assert_eq!(RepoRef::parse(text).unwrap(), want, "{text}");
        }
        assert_eq!(RepoRef::parse("a/b.c").unwrap().name, "b.c");
    }

    #[test]
    fn rejects_bad_repositories_with_clear_errors() {
        for (text, says) in [
            ("widgets", "missing '/'"),
            ("a/b/c", "too many '/'"),
            ("/widgets", "empty owner"),
            ("octo-org/", "empty repository name"),
            ("octo org/widgets", "owner may contain only"),
            ("octo/wid gets", "repository name may contain only"),
            ("octo/..", "'.' and '..'"),
            ("https://gitlab.com/group/sub/project.git", "exactly owner/name"),
        ] {
            let error = RepoRef::parse(text).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn remote_url_errors_never_show_credentials() {
        let error = RepoRef::from_remote_url("https://bob:hunter2-secret-pw@github.com/only-owner").unwrap_err();
        assert!(!error.to_string().contains("hunter2-secret-pw"), "{error}");
    }

    #[test]
    fn repo_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let pick = |flag, config, env| resolve_repo_with(flag, config, env, dir.path()).map(|r| r.to_string());
        assert_eq!(pick(Some("a/flag"), Some("b/config"), Some("c/env")).unwrap(), "a/flag");
        assert_eq!(pick(None, Some("b/config"), Some("c/env")).unwrap(), "b/config");
        assert_eq!(pick(Some(" "), None, Some("c/env")).unwrap(), "c/env");
        let none = pick(None, None, None).unwrap_err().to_string();
        assert!(none.contains("--repo owner/name") && none.contains("GITHUB_REPOSITORY"), "{none}");
        let bad = pick(None, None, Some("nope")).unwrap_err().to_string();
        assert!(bad.starts_with("GITHUB_REPOSITORY: invalid repository 'nope'"), "{bad}");
    }

    #[test]
    fn repo_from_a_clones_origin() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let status = std::process::Command::new("git").arg("-C").arg(dir.path()).args(args).status().unwrap();
            assert!(status.success(), "git {args:?}");
        };
        git(&["init", "-q"]);
        assert!(repo_from_git_remote(dir.path()).unwrap_err().to_string().contains("no 'origin' remote"));
        git(&["remote", "add", "origin", "git@github.com:octo-org/widgets.git"]);
        assert_eq!(repo_from_git_remote(dir.path()).unwrap(), RepoRef::new("octo-org", "widgets").unwrap());
        assert_eq!(resolve_repo_with(None, None, None, dir.path()).unwrap().to_string(), "octo-org/widgets");
    }

    #[test]
    fn token_prefers_github_token_and_is_registered_as_secret() {
        let token = token_from(Some("  ".into()), Some("gh-token-value-123456".into())).unwrap();
        assert_eq!(token, "gh-token-value-123456");
        assert_eq!(redact::redact("x gh-token-value-123456 y"), "x [REDACTED] y");
        assert_eq!(token_from(Some("first-token-abcdef".into()), Some("second".into())).unwrap(), "first-token-abcdef");
        assert!(token_from(None, None).unwrap_err().to_string().contains("GITHUB_TOKEN or GH_TOKEN"));
    }

    #[test]
    fn api_url_sources_and_checks() {
        assert_eq!(resolve_api_url_with(None, None, None).unwrap(), DEFAULT_API_URL);
        assert_eq!(
            resolve_api_url_with(None, None, Some("https://ghe.local/api/v3/")).unwrap(),
            "https://ghe.local/api/v3"
        );
        assert_eq!(
            resolve_api_url_with(None, Some("http://127.0.0.1:9"), Some("https://x")).unwrap(),
            "http://127.0.0.1:9"
        );
        assert_eq!(resolve_api_url_with(Some("https://f"), Some("http://c"), None).unwrap(), "https://f");
        let error = resolve_api_url_with(None, Some("api.github.com"), None).unwrap_err().to_string();
        assert!(error.starts_with("config 'api_url': invalid API URL 'api.github.com'"), "{error}");
    }
}
