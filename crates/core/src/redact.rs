//! Keeps secrets out of comments, logs and error messages.
//!
//! Two nets: the exact values of the secret environment variables bg-run knows about (plus any
//! registered at run time), and the well-known token shapes (`ghp_…`, `sk-ant-…`, URL passwords)
//! so a secret the agent printed from somewhere else is caught too.

use std::sync::{OnceLock, RwLock};

/// Environment variables whose values are secrets.
pub const SECRET_ENV_VARS: &[&str] = &[
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "LINEAR_API_KEY",
    "TODOIST_API_TOKEN",
    "DATABASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
];

const MASK: &str = "[REDACTED]";

/// Prefixes of token formats published by their vendors.
const TOKEN_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "sk-ant-",
    "sk-proj-",
    "sk-",
    "lin_api_",
    "xoxb-",
    "xoxp-",
    "AIza",
];

/// Values shorter than this are not treated as secrets: masking "1" everywhere helps nobody.
const MIN_SECRET_LEN: usize = 8;

fn registry() -> &'static RwLock<Vec<String>> {
    static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| {
        let mut values = Vec::new();
        for var in SECRET_ENV_VARS {
            if let Ok(value) = std::env::var(var) {
                push_secret(&mut values, &value);
            }
        }
        RwLock::new(values)
    })
}

fn push_secret(values: &mut Vec<String>, value: &str) {
    let value = value.trim();
    if value.len() >= MIN_SECRET_LEN && !values.iter().any(|v| v == value) {
        values.push(value.to_owned());
        // Longest first, so a secret that contains another is masked whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// Treat `value` as a secret from now on, everywhere in this process.
pub fn register_secret(value: &str) {
    let mut values = registry().write().unwrap_or_else(|e| e.into_inner());
    push_secret(&mut values, value);
}

/// `text` with every known secret and token-shaped string replaced by `[REDACTED]`.
pub fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    {
        let values = registry().read().unwrap_or_else(|e| e.into_inner());
        for secret in values.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
    }
    mask_url_passwords(&mask_token_shapes(&out))
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn mask_token_shapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for prefix in TOKEN_PREFIXES {
            if rest.starts_with(prefix) && at_word_start(text, rest) {
                let tail_len = rest[prefix.len()..].find(|c| !is_token_char(c)).unwrap_or(rest.len() - prefix.len());
                if tail_len >= 16 {
                    out.push_str(MASK);
                    rest = &rest[prefix.len() + tail_len..];
                    continue 'scan;
                }
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn at_word_start(whole: &str, rest: &str) -> bool {
    let offset = whole.len() - rest.len();
    whole[..offset].chars().next_back().is_none_or(|c| !is_token_char(c))
}

/// `scheme://user:password@host` → `scheme://user:[REDACTED]@host`.
fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let authority_end = tail.find(|c: char| c == '/' || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_registered_values_and_token_shapes() {
        register_secret("s3cret-value-42");
        let text = "token s3cret-value-42 and ghp_abcdefghijklmnopqrstuvwxyz0123 in postgres://bob:hunter22@db/x";
        let out = redact(text);
        assert!(!out.contains("s3cret-value-42"), "{out}");
        assert!(!out.contains("ghp_abc"), "{out}");
        assert!(!out.contains("hunter22"), "{out}");
        assert!(out.contains("postgres://bob:[REDACTED]@db/x"), "{out}");
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        let text = "a task-list with sk-short and https://example.com/a:b@c, ünïcödé";
        assert_eq!(redact(text), text);
    }
}
