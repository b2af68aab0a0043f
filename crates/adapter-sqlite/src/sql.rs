//! SQL text that depends on the queue's label filter, built once per opened queue so every call
//! hits the prepared-statement cache.

use crate::record::TASK_COLUMNS;

/// Keeps a row only if it carries every label in `:labels` (a JSON array).
const LABEL_FILTER: &str = " AND NOT EXISTS (SELECT 1 FROM json_each(:labels) AS want \
     WHERE want.value NOT IN (SELECT value FROM json_each(tasks.labels)))";

/// What a claim sets. The token is random per row, so every claimed task gets its own.
const CLAIM_SET: &str = "status = 'running', attempts = attempts + 1, claimed_by = :worker, claimed_at = :now, \
     lease_token = lower(hex(randomblob(12))), lease_until = :until, claim_max_attempts = :max_attempts, \
     updated_at = :now";

pub(crate) struct Sql {
    pub(crate) poll: String,
    pub(crate) claim_batch: String,
    pub(crate) claim_one: String,
    pub(crate) next_due: String,
}

impl Sql {
    pub(crate) fn new(filter_labels: bool) -> Sql {
        let labels = if filter_labels { LABEL_FILTER } else { "" };
        // Pending-and-due and running-with-expired-lease are scanned separately so each side walks
        // the (queue, status, priority) index and stops after :limit rows; one OR would sort the
        // whole backlog on every claim. INDEXED BY because, without statistics, the planner
        // prefers the run_at range of `tasks_due` and then sorts every pending task.
        let eligible_ids = format!(
            "SELECT id FROM ( \
               SELECT id, priority FROM (SELECT id, priority FROM tasks INDEXED BY tasks_claim \
                 WHERE queue = :queue AND status = 'pending' AND run_at <= :now{labels} \
                 ORDER BY priority DESC, id LIMIT :limit) \
               UNION ALL \
               SELECT id, priority FROM (SELECT id, priority FROM tasks INDEXED BY tasks_claim \
                 WHERE queue = :queue AND status = 'running' AND lease_until < :now{labels} \
                 ORDER BY priority DESC, id LIMIT :limit) \
               ORDER BY priority DESC, id LIMIT :limit)"
        );
        Sql {
            poll: format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id IN ({eligible_ids}) ORDER BY priority DESC, id"),
            claim_batch: format!(
                "UPDATE tasks SET {CLAIM_SET} WHERE id IN ({eligible_ids}) \
                 RETURNING {TASK_COLUMNS}, lease_token"
            ),
            claim_one: format!(
                "UPDATE tasks SET {CLAIM_SET} WHERE id = :id AND queue = :queue \
                 AND ((status = 'pending' AND run_at <= :now) OR (status = 'running' AND lease_until < :now)){labels} \
                 RETURNING {TASK_COLUMNS}, lease_token"
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
