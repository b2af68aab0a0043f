//! The lifecycle states of a task in the embedded queue.

use std::fmt;
use std::str::FromStr;

use bg_run_core::Error;
use serde::{Deserialize, Serialize};

/// Where a task is in its life. The worker moves `pending → running → review | failed`; a human
/// moves tasks to `closed` or `cancelled`, or back to `pending` with a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a worker (possibly until its retry time).
    Pending,
    /// Claimed by a worker whose agent is working on it.
    Running,
    /// The agent finished; a human reviews the result.
    Review,
    /// Given up after its attempts ran out.
    Failed,
    /// Closed by a human.
    Closed,
    /// Cancelled by a human before or while it ran.
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 6] =
        [Status::Pending, Status::Running, Status::Review, Status::Failed, Status::Closed, Status::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Review => "review",
            Status::Failed => "failed",
            Status::Closed => "closed",
            Status::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Status::ALL.into_iter().find(|status| status.as_str() == wanted).ok_or_else(|| {
            let valid: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            Error::config(format!("unknown task status '{s}'; valid statuses: {}", valid.join(", ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_status_it_prints() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>().ok(), Some(status));
            assert_eq!(serde_json::to_string(&status).ok(), Some(format!("\"{status}\"")));
        }
        assert_eq!(" Review ".parse::<Status>().ok(), Some(Status::Review));
    }

    #[test]
    fn unknown_status_lists_the_valid_ones() {
        let message = "done".parse::<Status>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("'done'"), "{message}");
        assert!(message.contains("pending, running, review, failed, closed, cancelled"), "{message}");
    }
}
