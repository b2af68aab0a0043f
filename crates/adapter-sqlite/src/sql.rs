//! SQL text that depends on the queue's label filter, built once per opened queue so every call
//! hits the prepared-statement cache.

use crate::record::TASK_COLUMNS;

/// Keeps a row only if it carries every label in `:labels` (a JSON array).
const LABEL_FILTER: &str = " AND NOT EXISTS (SELECT 1 FROM json_each(:labels) AS want \
     WHERE want.value NOT IN (SELECT value FROM json_each(tasks.labels)))";

/// What a claim sets. `:token` is new for every claim, so a stale claimant can never match it.
const CLAIM_SET: &str = "status = 'running', attempts = attempts + 1, claimed_by = :worker, claimed_at = :now, \
     lease_token = :token, lease_until = :until, claim_max_attempts = :max_attempts, updated_at = :now";

pub(crate) struct Sql {
    pub(crate) poll: String,
    /// Pending tasks that are due, best first. Claims take candidates from here and from
    /// `stale_candidates`, then update them by id in the same write transaction: simple
    /// statements that need no temporary tables, which `UPDATE ... WHERE id IN (...) RETURNING`
    /// builds on every call (a third of a claim's cost).
    pub(crate) pending_candidates: String,
    /// Running tasks whose lease has expired (their worker died), best first.
    pub(crate) stale_candidates: String,
    pub(crate) claim_row: String,
    pub(crate) claim_one: String,
    pub(crate) next_due: String,
}

impl Sql {
    pub(crate) fn new(filter_labels: bool) -> Sql {
        let labels = if filter_labels { LABEL_FILTER } else { "" };
        // Both sides walk the (queue, status, priority) index and stop after :limit rows. INDEXED
        // BY because, without statistics, the planner may prefer another plan and sort every
        // pending task on each claim.
        let candidates = |eligible: &str| {
            format!(
                "SELECT {TASK_COLUMNS} FROM tasks INDEXED BY tasks_claim \
                 WHERE queue = :queue AND {eligible}{labels} ORDER BY priority DESC, id LIMIT :limit"
            )
        };
        let pending = candidates("status = 'pending' AND run_at <= :now");
        let stale = candidates("status = 'running' AND lease_until < :now");
        Sql {
            poll: format!(
                "SELECT * FROM ({pending}) UNION ALL SELECT * FROM ({stale}) ORDER BY priority DESC, id LIMIT :limit"
            ),
            pending_candidates: pending,
            stale_candidates: stale,
            claim_row: format!("UPDATE tasks SET {CLAIM_SET} WHERE id = :id"),
            claim_one: format!(
                "UPDATE tasks SET {CLAIM_SET} WHERE id = :id AND queue = :queue \
                 AND ((status = 'pending' AND run_at <= :now) OR (status = 'running' AND lease_until < :now)){labels} \
                 RETURNING {TASK_COLUMNS}"
            ),
            next_due: format!(
                "SELECT min(due) FROM ( \
                   SELECT min(run_at) AS due FROM tasks WHERE queue = :queue AND status = 'pending'{labels} \
                   UNION ALL \
                   SELECT min(lease_until) FROM tasks WHERE queue = :queue AND status = 'running'{labels})"
            ),
        }
    }
}
