//! Who may direct an agent through an issue. On a public repository anyone can open an issue,
//! and a label can be added by the author in some setups, so the label alone proves nothing.

use bg_run_core::{Error, Result};

/// Which issue and comment authors are trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Trusted `author_association` values. Default `OWNER`, `MEMBER`, `COLLABORATOR`.
    /// GitHub's values: OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, FIRST_TIME_CONTRIBUTOR,
    /// FIRST_TIMER, MANNEQUIN, NONE.
    pub associations: Vec<String>,
    /// Logins trusted whatever their association.
    pub allow_logins: Vec<String>,
    /// Logins never trusted, even when their association or the allow list says otherwise.
    pub block_logins: Vec<String>,
    /// Leave one comment on an untrusted issue saying why it is not picked up.
    pub comment_on_untrusted: bool,
}

/// Every documented `author_association` value.
pub const ASSOCIATIONS: &[&str] =
    &["OWNER", "MEMBER", "COLLABORATOR", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER", "MANNEQUIN", "NONE"];

impl Default for TrustPolicy {
    fn default() -> Self {
        TrustPolicy {
            associations: vec!["OWNER".into(), "MEMBER".into(), "COLLABORATOR".into()],
            allow_logins: Vec::new(),
            block_logins: Vec::new(),
            comment_on_untrusted: false,
        }
    }
}

impl TrustPolicy {
    pub fn trusts(&self, login: &str, association: &str) -> bool {
        let listed = |list: &[String]| list.iter().any(|l| l.eq_ignore_ascii_case(login));
        if listed(&self.block_logins) {
            return false;
        }
        listed(&self.allow_logins) || self.associations.iter().any(|a| a.eq_ignore_ascii_case(association))
    }

    pub fn validate(&self) -> Result<()> {
        for a in &self.associations {
            if !ASSOCIATIONS.iter().any(|known| known.eq_ignore_ascii_case(a)) {
                return Err(Error::config(format!(
                    "github: unknown author association '{a}' in trust.associations; use any of {}",
                    ASSOCIATIONS.join(", ")
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_trusts_maintainers_only() {
        let policy = TrustPolicy::default();
        for a in ["OWNER", "MEMBER", "COLLABORATOR", "owner"] {
            assert!(policy.trusts("someone", a), "{a}");
        }
        for a in ["CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER", "MANNEQUIN", "NONE", ""] {
            assert!(!policy.trusts("someone", a), "{a}");
        }
    }

    #[test]
    fn block_list_beats_allow_list_and_association() {
        let policy = TrustPolicy {
            allow_logins: vec!["Friend".into(), "both".into()],
            block_logins: vec!["both".into(), "rogue-owner".into()],
            ..TrustPolicy::default()
        };
        assert!(policy.trusts("friend", "NONE"));
        assert!(!policy.trusts("both", "OWNER"));
        assert!(!policy.trusts("Rogue-Owner", "OWNER"));
    }

    #[test]
    fn unknown_association_is_a_config_error() {
        let policy = TrustPolicy { associations: vec!["ADMIN".into()], ..TrustPolicy::default() };
        let error = policy.validate().unwrap_err().to_string();
        assert!(error.contains("'ADMIN'") && error.contains("FIRST_TIMER"), "{error}");
    }
}
