//! Integrator features over the store, written once for both backends: live progress (the
//! order items were settled in) and webhooks (endpoints and the delivery outbox). The SQL
//! reads alike in both dialects; `integrations_impl!` expands the same methods over each
//! backend's pools.

use async_trait::async_trait;

use crate::store::StoreResult;

/// A registered webhook endpoint (without its secrets).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookEndpoint {
    pub id: String,
    pub account_id: String,
    pub url: String,
    /// Space-separated event types.
    pub events: String,
    pub low_balance_threshold: Option<i64>,
    pub created_at: i64,
    /// After a rotation: when the previous secret stops signing.
    pub previous_secret_until: Option<i64>,
}

/// One row of an endpoint's delivery log.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryView {
    pub id: String,
    pub event_type: String,
    pub task_id: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// A delivery claimed for sending, with what signing and sending it needs.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DueDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub account_id: String,
    pub event_type: String,
    pub task_id: Option<String>,
    pub task_kind: Option<String>,
    pub data: Option<String>,
    pub attempts: i64,
    pub retry_from: i64,
    pub url: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<i64>,
}

/// How one send attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx: never sent again (unless redelivered on request).
    Delivered,
    /// Try again at this time (ms).
    RetryAt(i64),
    /// Retries are used up.
    GaveUp,
}

/// A new endpoint, validated at the edge.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub account_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub low_balance_threshold: Option<i64>,
}

/// Most live endpoints one account may have.
pub const MAX_ENDPOINTS_PER_ACCOUNT: i64 = 20;

#[async_trait]
pub trait Integrations: Send + Sync {
    /// The task's settled item ids in the order they were settled.
    async fn settled_order(&self, task_id: &str) -> StoreResult<Vec<i64>>;

    /// `Invalid` when the account has `MAX_ENDPOINTS_PER_ACCOUNT` already.
    async fn create_webhook(&self, new: &NewWebhook) -> StoreResult<WebhookEndpoint>;
    async fn list_webhooks(&self, account_id: &str) -> StoreResult<Vec<WebhookEndpoint>>;
    /// `false` when the account has no such live endpoint. Its pending deliveries fail.
    async fn delete_webhook(&self, account_id: &str, endpoint_id: &str) -> StoreResult<bool>;
    /// The new secret signs from now on; the old one also signs until `overlap_until`.
    /// `None` when the account has no such live endpoint.
    async fn rotate_webhook_secret(
        &self,
        account_id: &str,
        endpoint_id: &str,
        new_secret: &str,
        overlap_until: i64,
    ) -> StoreResult<Option<WebhookEndpoint>>;
    /// Newest first; `None` when the account has no such live endpoint.
    async fn webhook_deliveries(
        &self,
        account_id: &str,
        endpoint_id: &str,
        limit: i64,
    ) -> StoreResult<Option<Vec<DeliveryView>>>;
    /// Queues a delivery again, due now, for another day of retries. `false` when the
    /// account has no such delivery, or it is being sent right now.
    async fn redeliver_webhook(
        &self,
        account_id: &str,
        endpoint_id: &str,
        delivery_id: &str,
    ) -> StoreResult<bool>;

    /// Leases up to `limit` due deliveries to `worker` until `now + lease_ms`: no other
    /// worker claims them meanwhile.
    async fn claim_webhook_deliveries(
        &self,
        worker: &str,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<DueDelivery>>;
    /// Records an attempt of a delivery `worker` holds; `false` when its lease was lost.
    async fn finish_webhook_attempt(
        &self,
        worker: &str,
        delivery_id: &str,
        outcome: &AttemptOutcome,
        status_code: Option<u16>,
        error: Option<&str>,
    ) -> StoreResult<bool>;
    /// Deletes up to `limit` finished (delivered or failed) deliveries created before
    /// `before_ms`; returns how many.
    async fn prune_webhook_deliveries(&self, before_ms: i64, limit: i64) -> StoreResult<i64>;
    /// The one place `credits.low` is decided, whatever moved the balance (a create's hold,
    /// a release, a grant, an expiry): re-arms the endpoints whose account's available
    /// balance is back at or over their threshold, and fires the armed ones under it, each
    /// firing disarming its endpoint and enqueuing its delivery in one transaction. Returns
    /// how many fired.
    async fn sweep_low_balances(&self) -> StoreResult<i64>;
}

pub(crate) const SETTLED_ORDER: &str = "SELECT id FROM task_items WHERE task_id = $1 \
     AND status IN ('unlocked', 'failed') \
     ORDER BY COALESCE(settle_round, 0), id";

pub(crate) const COUNT_ENDPOINTS: &str =
    "SELECT COUNT(*) FROM webhook_endpoints WHERE account_id = $1 AND deleted_at IS NULL";

pub(crate) const INSERT_ENDPOINT: &str = "INSERT INTO webhook_endpoints \
     (id, account_id, url, events, secret, low_balance_threshold, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(crate) const ENDPOINT_COLUMNS: &str =
    "id, account_id, url, events, low_balance_threshold, created_at, previous_secret_until";

pub(crate) const LIVE_ENDPOINT: &str = "WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL";

pub(crate) const DELETE_ENDPOINT: &str = "UPDATE webhook_endpoints SET deleted_at = $3 \
     WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL";

pub(crate) const FAIL_PENDING_OF_ENDPOINT: &str = "UPDATE webhook_deliveries \
     SET status = 'failed', last_error = 'endpoint deleted' \
     WHERE endpoint_id = $1 AND status = 'pending'";

pub(crate) const ROTATE_SECRET: &str = "UPDATE webhook_endpoints \
     SET previous_secret = secret, previous_secret_until = $4, secret = $3 \
     WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL";

pub(crate) const DELIVERIES: &str = "SELECT id, event_type, task_id, status, attempts, \
     next_attempt_at, last_status_code, last_error, created_at, delivered_at \
     FROM webhook_deliveries WHERE endpoint_id = $1 \
     ORDER BY created_at DESC, id DESC LIMIT $2";

pub(crate) const REDELIVER: &str = "UPDATE webhook_deliveries \
     SET status = 'pending', next_attempt_at = $4, retry_from = $4 \
     WHERE id = $1 AND endpoint_id = $2 \
       AND endpoint_id IN (SELECT id FROM webhook_endpoints \
                           WHERE account_id = $3 AND deleted_at IS NULL) \
       AND (status <> 'pending' OR lease_expires_at IS NULL OR lease_expires_at <= $4)";

/// The available balance of endpoint `e`'s account.
macro_rules! endpoint_balance {
    () => {
        "(SELECT COALESCE(SUM(balance), 0) FROM credit_buckets WHERE account_id = e.account_id)"
    };
}

/// `credits.low` endpoints whose state must change: armed ones whose account's balance is
/// under their threshold (to fire), disarmed ones whose balance is back at or over it (to
/// re-arm). Returns `(id, armed)`.
pub(crate) const LOW_BALANCE_CHANGES: &str = concat!(
    "SELECT e.id, e.low_balance_armed FROM webhook_endpoints e \
     WHERE e.deleted_at IS NULL AND e.low_balance_threshold IS NOT NULL \
       AND (' ' || e.events || ' ') LIKE '% credits.low %' \
       AND ((e.low_balance_armed = 1 AND ",
    endpoint_balance!(),
    " < e.low_balance_threshold) OR (e.low_balance_armed = 0 AND ",
    endpoint_balance!(),
    " >= e.low_balance_threshold))"
);

/// Re-arms endpoint `$1` if its account's balance is still at or over its threshold.
pub(crate) const REARM_ONE: &str = concat!(
    "UPDATE webhook_endpoints SET low_balance_armed = 1 WHERE id = $1 AND low_balance_armed = 0 \
       AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = $1 AND ",
    endpoint_balance!(),
    " >= e.low_balance_threshold)"
);

/// Takes one endpoint's firing (`$1`): only one transaction disarms it (PostgreSQL
/// re-checks the row after its lock), and only if the balance is still under.
pub(crate) const DISARM_ONE: &str = "UPDATE webhook_endpoints SET low_balance_armed = 0 \
     WHERE id = $1 AND low_balance_armed = 1 AND deleted_at IS NULL \
       AND (SELECT COALESCE(SUM(balance), 0) FROM credit_buckets \
            WHERE account_id = webhook_endpoints.account_id) < low_balance_threshold";

/// The `credits.low` delivery of endpoint `$1`, at `$2`.
pub(crate) const ENQUEUE_LOW_BALANCE_OF: &str = "INSERT INTO webhook_deliveries \
         (id, endpoint_id, account_id, event_type, data, status, attempts, next_attempt_at, \
          retry_from, created_at) \
     SELECT 'msg_' || e.id || '_low_' || $2, e.id, e.account_id, 'credits.low', \
            '{\"availableCredits\":' || \
              (SELECT COALESCE(SUM(balance), 0) FROM credit_buckets WHERE account_id = e.account_id) || \
              ',\"threshold\":' || e.low_balance_threshold || '}', \
            'pending', 0, $2, $2, $2 \
     FROM webhook_endpoints e WHERE e.id = $1 ON CONFLICT (id) DO NOTHING";

pub(crate) const ANY_DUE: &str = "SELECT id FROM webhook_deliveries \
     WHERE status = 'pending' AND next_attempt_at <= $1 \
       AND (lease_expires_at IS NULL OR lease_expires_at <= $1) LIMIT 1";

/// Re-checks the outer conditions on each row it updates, so two workers racing for the
/// same rows (PostgreSQL re-evaluates them after the row lock) never both lease one.
pub(crate) const CLAIM_DELIVERIES: &str = "UPDATE webhook_deliveries \
     SET lease_owner = $1, lease_expires_at = $3 \
     WHERE id IN (SELECT d.id FROM webhook_deliveries d \
                  JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                  WHERE d.status = 'pending' AND d.next_attempt_at <= $2 \
                    AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= $2) \
                    AND e.deleted_at IS NULL \
                  ORDER BY d.next_attempt_at LIMIT $4) \
       AND status = 'pending' AND (lease_expires_at IS NULL OR lease_expires_at <= $2)";

pub(crate) const CLAIMED_DELIVERIES: &str = "SELECT d.id, d.endpoint_id, d.account_id, \
     d.event_type, d.task_id, d.task_kind, d.data, d.attempts, d.retry_from, e.url, e.secret, \
     e.previous_secret, e.previous_secret_until \
     FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
     WHERE d.lease_owner = $1 AND d.lease_expires_at = $2 AND d.status = 'pending' \
     ORDER BY d.next_attempt_at, d.id";

pub(crate) const FINISH_ATTEMPT: &str = "UPDATE webhook_deliveries \
     SET status = $3, attempts = attempts + 1, next_attempt_at = $4, last_status_code = $5, \
         last_error = $6, delivered_at = $7, lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = $1 AND lease_owner = $2 AND status = 'pending'";

pub(crate) const PRUNE_DELIVERIES: &str = "DELETE FROM webhook_deliveries WHERE id IN \
     (SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND created_at < $1 LIMIT $2)";

/// Implements [`Integrations`] for a backend store type with a `clock` field, reading from
/// `$read` and writing to `$write` (both sqlx pools of that backend); transactions come
/// from its `write_tx` (`BEGIN IMMEDIATE` on SQLite).
macro_rules! integrations_impl {
    ($store:ty, $read:ident, $write:ident) => {
        #[async_trait::async_trait]
        impl $crate::store::integrations::Integrations for $store {
            async fn settled_order(&self, task_id: &str) -> $crate::store::StoreResult<Vec<i64>> {
                use $crate::store::integrations::SETTLED_ORDER;
                Ok(sqlx::query_scalar(SETTLED_ORDER)
                    .bind(task_id)
                    .fetch_all(&self.$read)
                    .await?)
            }

            async fn create_webhook(
                &self,
                new: &$crate::store::integrations::NewWebhook,
            ) -> $crate::store::StoreResult<$crate::store::integrations::WebhookEndpoint> {
                use $crate::store::integrations::*;
                let now = self.clock.now_ms();
                let id = format!("wh_{}", uuid::Uuid::new_v4().simple());
                let events = new.events.join(" ");
                let mut tx = self.write_tx().await?;
                let live: i64 = sqlx::query_scalar(COUNT_ENDPOINTS)
                    .bind(&new.account_id)
                    .fetch_one(&mut *tx)
                    .await?;
                if live >= MAX_ENDPOINTS_PER_ACCOUNT {
                    return Err($crate::store::StoreError::Invalid(format!(
                        "an account may have at most {MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints"
                    )));
                }
                sqlx::query(INSERT_ENDPOINT)
                    .bind(&id)
                    .bind(&new.account_id)
                    .bind(&new.url)
                    .bind(&events)
                    .bind(&new.secret)
                    .bind(new.low_balance_threshold)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(WebhookEndpoint {
                    id,
                    account_id: new.account_id.clone(),
                    url: new.url.clone(),
                    events,
                    low_balance_threshold: new.low_balance_threshold,
                    created_at: now,
                    previous_secret_until: None,
                })
            }

            async fn list_webhooks(
                &self,
                account_id: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::integrations::WebhookEndpoint>> {
                use $crate::store::integrations::*;
                Ok(sqlx::query_as(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
                     WHERE account_id = $1 AND deleted_at IS NULL ORDER BY created_at, id"
                ))
                .bind(account_id)
                .fetch_all(&self.$read)
                .await?)
            }

            async fn delete_webhook(
                &self,
                account_id: &str,
                endpoint_id: &str,
            ) -> $crate::store::StoreResult<bool> {
                use $crate::store::integrations::*;
                let now = self.clock.now_ms();
                let mut tx = self.write_tx().await?;
                let deleted = sqlx::query(DELETE_ENDPOINT)
                    .bind(endpoint_id)
                    .bind(account_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Ok(false);
                }
                sqlx::query(FAIL_PENDING_OF_ENDPOINT)
                    .bind(endpoint_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn rotate_webhook_secret(
                &self,
                account_id: &str,
                endpoint_id: &str,
                new_secret: &str,
                overlap_until: i64,
            ) -> $crate::store::StoreResult<Option<$crate::store::integrations::WebhookEndpoint>>
            {
                use $crate::store::integrations::*;
                let mut tx = self.write_tx().await?;
                let rotated = sqlx::query(ROTATE_SECRET)
                    .bind(endpoint_id)
                    .bind(account_id)
                    .bind(new_secret)
                    .bind(overlap_until)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if rotated == 0 {
                    return Ok(None);
                }
                let endpoint = sqlx::query_as(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints {LIVE_ENDPOINT}"
                ))
                .bind(endpoint_id)
                .bind(account_id)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(endpoint)
            }

            async fn webhook_deliveries(
                &self,
                account_id: &str,
                endpoint_id: &str,
                limit: i64,
            ) -> $crate::store::StoreResult<Option<Vec<$crate::store::integrations::DeliveryView>>>
            {
                use $crate::store::integrations::*;
                let live: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT id FROM webhook_endpoints {LIVE_ENDPOINT}"
                ))
                .bind(endpoint_id)
                .bind(account_id)
                .fetch_optional(&self.$read)
                .await?;
                if live.is_none() {
                    return Ok(None);
                }
                Ok(Some(
                    sqlx::query_as(DELIVERIES)
                        .bind(endpoint_id)
                        .bind(limit)
                        .fetch_all(&self.$read)
                        .await?,
                ))
            }

            async fn redeliver_webhook(
                &self,
                account_id: &str,
                endpoint_id: &str,
                delivery_id: &str,
            ) -> $crate::store::StoreResult<bool> {
                use $crate::store::integrations::*;
                let now = self.clock.now_ms();
                let done = sqlx::query(REDELIVER)
                    .bind(delivery_id)
                    .bind(endpoint_id)
                    .bind(account_id)
                    .bind(now)
                    .execute(&self.$write)
                    .await?
                    .rows_affected();
                Ok(done > 0)
            }

            async fn sweep_low_balances(&self) -> $crate::store::StoreResult<i64> {
                use $crate::store::integrations::*;
                // A read first: most rounds find nothing, and need no write lock.
                let changes: Vec<(String, i64)> = sqlx::query_as(LOW_BALANCE_CHANGES)
                    .fetch_all(&self.$read)
                    .await?;
                let mut fired = 0;
                for (endpoint, armed) in changes {
                    if armed == 0 {
                        sqlx::query(REARM_ONE)
                            .bind(&endpoint)
                            .execute(&self.$write)
                            .await?;
                        continue;
                    }
                    let now = self.clock.now_ms();
                    let mut tx = self.write_tx().await?;
                    let taken = sqlx::query(DISARM_ONE)
                        .bind(&endpoint)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if taken == 1 {
                        sqlx::query(ENQUEUE_LOW_BALANCE_OF)
                            .bind(&endpoint)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        fired += 1;
                    }
                    tx.commit().await?;
                }
                Ok(fired)
            }

            async fn claim_webhook_deliveries(
                &self,
                worker: &str,
                lease_ms: i64,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::integrations::DueDelivery>> {
                use $crate::store::integrations::*;
                let now = self.clock.now_ms();
                // A read first: an idle sender polls often, and on SQLite even an UPDATE
                // that changes nothing takes the write lock.
                let due: Option<String> = sqlx::query_scalar(ANY_DUE)
                    .bind(now)
                    .fetch_optional(&self.$read)
                    .await?;
                if due.is_none() {
                    return Ok(Vec::new());
                }
                let until = now + lease_ms;
                let claimed = sqlx::query(CLAIM_DELIVERIES)
                    .bind(worker)
                    .bind(now)
                    .bind(until)
                    .bind(limit)
                    .execute(&self.$write)
                    .await?
                    .rows_affected();
                if claimed == 0 {
                    return Ok(Vec::new());
                }
                Ok(sqlx::query_as(CLAIMED_DELIVERIES)
                    .bind(worker)
                    .bind(until)
                    .fetch_all(&self.$write)
                    .await?)
            }

            async fn finish_webhook_attempt(
                &self,
                worker: &str,
                delivery_id: &str,
                outcome: &$crate::store::integrations::AttemptOutcome,
                status_code: Option<u16>,
                error: Option<&str>,
            ) -> $crate::store::StoreResult<bool> {
                use $crate::store::integrations::*;
                let now = self.clock.now_ms();
                let (status, next, delivered_at) = match outcome {
                    AttemptOutcome::Delivered => ("delivered", now, Some(now)),
                    AttemptOutcome::RetryAt(at) => ("pending", *at, None),
                    AttemptOutcome::GaveUp => ("failed", now, None),
                };
                let done = sqlx::query(FINISH_ATTEMPT)
                    .bind(delivery_id)
                    .bind(worker)
                    .bind(status)
                    .bind(next)
                    .bind(status_code.map(i64::from))
                    .bind(error)
                    .bind(delivered_at)
                    .execute(&self.$write)
                    .await?
                    .rows_affected();
                Ok(done > 0)
            }

            async fn prune_webhook_deliveries(
                &self,
                before_ms: i64,
                limit: i64,
            ) -> $crate::store::StoreResult<i64> {
                let pruned = sqlx::query($crate::store::integrations::PRUNE_DELIVERIES)
                    .bind(before_ms)
                    .bind(limit)
                    .execute(&self.$write)
                    .await?
                    .rows_affected();
                Ok(pruned as i64)
            }
        }
    };
}
pub(crate) use integrations_impl;
