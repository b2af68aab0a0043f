//! Text helpers shared by every adapter: size limits and the wording of tracker comments, so
//! GitHub, Linear and Todoist say the same thing the same way.

use std::time::Duration;

use crate::queue::{Claim, Failure, Report, RetryDecision};

/// At most `max` bytes of `text`, cut on a char boundary, with a marker when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    const MARK: &str = "\n… (truncated)";
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

/// The last `max` bytes of `text`, starting on a char boundary.
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// `1h 2m 3s`, `4.2s`, `15ms`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h {}m {}s", secs / 3600, secs % 3600 / 60, secs % 60)
    } else if secs >= 60 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else if secs >= 1 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The "working on it" comment a tracker shows when a task is claimed.
pub fn working_comment(claim: &Claim) -> String {
    format!(
        "🤖 **{}** is working on this (attempt {}/{}, worker `{}`).",
        claim.claimant.agent, claim.attempt, claim.claimant.max_attempts, claim.claimant.worker_id
    )
}

/// The "done" comment: the agent's summary plus duration, cost and turns where known.
/// `limit` is the tracker's maximum comment size in bytes.
pub fn done_comment(claim: &Claim, report: &Report, limit: usize) -> String {
    let mut facts = vec![format!("took {}", human_duration(report.duration))];
    if let Some(cost) = report.usage.cost_usd {
        facts.push(format!("cost ${cost:.4}"));
    }
    if let Some(turns) = report.usage.turns {
        facts.push(format!("{turns} turns"));
    }
    if let Some(tokens) = report.usage.tokens {
        facts.push(format!("{} tokens in, {} out", tokens.input, tokens.output));
    }
    if !report.usage.permission_denials.is_empty() {
        facts.push(format!("denied tools: {}", report.usage.permission_denials.join(", ")));
    }
    let head = format!(
        "✅ **{}** finished attempt {}/{} ({}). Ready for review.\n\n",
        claim.claimant.agent,
        claim.attempt,
        claim.claimant.max_attempts,
        facts.join(", ")
    );
    let room = limit.saturating_sub(head.len());
    format!("{head}{}", truncate(report.summary.trim(), room))
}

/// The failure comment: the reason, the stderr tail, and what happens next.
pub fn failure_comment(claim: &Claim, failure: &Failure, limit: usize) -> String {
    let next = match &failure.decision {
        RetryDecision::RetryAt(at) => format!("Will retry after {} (UTC).", at.format("%Y-%m-%d %H:%M:%S")),
        RetryDecision::GiveUp => "Giving up: a human needs to look at this.".to_owned(),
    };
    let exit = failure.exit_code.map(|c| format!(", exit code {c}")).unwrap_or_default();
    let head = format!(
        "❌ **{}** attempt {}/{} failed ({}{exit}, after {}). {next}\n\n",
        claim.claimant.agent,
        claim.attempt,
        claim.claimant.max_attempts,
        failure.kind.as_str(),
        human_duration(failure.duration),
    );
    let mut body = truncate(failure.reason.trim(), limit.saturating_sub(head.len()) / 2);
    if !failure.stderr_tail.trim().is_empty() {
        let room = limit.saturating_sub(head.len() + body.len() + 32);
        body.push_str(&format!("\n\n```\n{}\n```", tail(failure.stderr_tail.trim(), room)));
    }
    format!("{head}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_limit_and_char_boundaries() {
        let text = "é".repeat(100);
        let cut = truncate(&text, 51);
        assert!(cut.len() <= 51, "{}", cut.len());
        assert!(cut.ends_with("(truncated)"));
        assert_eq!(truncate("short", 10), "short");
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("hello world", 5), "world");
        assert_eq!(tail("ééé", 3), "é");
    }
}
