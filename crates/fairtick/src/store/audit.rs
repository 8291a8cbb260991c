//! `fairtick audit`: every ledger invariant, checked over the whole database.

use serde::Serialize;

use super::{Store, StoreResult};

/// What the audit looked at and every violation it found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditReport {
    pub transactions: i64,
    pub postings: i64,
    pub accounts: i64,
    pub trades: i64,
    pub violations: Vec<String>,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

impl Store {
    #[tracing::instrument(skip_all)]
    pub async fn audit(&self) -> StoreResult<AuditReport> {
        let mut report = AuditReport::default();
        let (transactions, postings, accounts): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM ledger_transactions), (SELECT COUNT(*) FROM postings), \
                    (SELECT COUNT(*) FROM accounts)",
        )
        .fetch_one(&self.pool)
        .await?;
        report.transactions = transactions;
        report.postings = postings;
        report.accounts = accounts;

        let unbalanced: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT t.id, CAST(COALESCE(SUM(p.amount), 0) AS BIGINT), COUNT(p.id) \
             FROM ledger_transactions t LEFT JOIN postings p ON p.transaction_id = t.id \
             GROUP BY t.id HAVING COALESCE(SUM(p.amount), 0) <> 0 OR COUNT(p.id) < 2",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id, sum, count) in unbalanced {
            report.violations.push(format!("transaction {id}: {count} postings summing to {sum} cents"));
        }

        let drifted: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            // One pass over the postings: no index leads with the account any more.
            "SELECT a.id, a.kind, a.balance, CAST(COALESCE(s.total, 0) AS BIGINT) \
             FROM accounts a \
             LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM postings GROUP BY account_id) AS s \
               ON s.account_id = a.id \
             WHERE a.user_id IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id, kind, cached, summed) in drifted {
            if cached != summed {
                report.violations.push(format!(
                    "account {id} ({kind}): cached balance {cached} cents but postings sum to {summed}"
                ));
            }
            if cached < 0 {
                report.violations.push(format!("account {id} ({kind}) is negative: {cached} cents"));
            }
        }

        // A trade's postings match its status: while active its stake is in play; once ended
        // nothing of it is, and its user got back exactly the recorded payout.
        let trades: Vec<(i64, String, i64, Option<i64>, i64, i64)> = sqlx::query_as(
            "SELECT t.id, t.status, t.stake, t.payout, \
                    CAST(COALESCE(SUM(CASE WHEN a.kind = 'in_play' THEN p.amount ELSE 0 END), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(CASE WHEN a.kind = 'cash' THEN p.amount ELSE 0 END), 0) AS BIGINT) \
             FROM trades t \
             LEFT JOIN ledger_transactions l ON l.reference = CAST(t.id AS TEXT) AND l.user_id = t.user_id \
             LEFT JOIN postings p ON p.transaction_id = l.id \
             LEFT JOIN accounts a ON a.id = p.account_id AND a.user_id = t.user_id \
             GROUP BY t.id, t.status, t.stake, t.payout",
        )
        .fetch_all(&self.pool)
        .await?;
        report.trades = trades.len() as i64;
        for (id, status, stake, payout, in_play, cash) in trades {
            let (want_in_play, want_cash) = match status.as_str() {
                "active" => (stake, -stake),
                _ => (0, payout.unwrap_or(0) - stake),
            };
            if (in_play, cash) != (want_in_play, want_cash) {
                report.violations.push(format!(
                    "trade {id} ({status}): in play {in_play} and cash {cash} cents, expected {want_in_play} and {want_cash}"
                ));
            }
        }
        Ok(report)
    }
}
