//! Role implementations whose statements both backends read alike (`$N` placeholders
//! work on SQLite too): each macro implements one role trait for a backend's store, from
//! the backend's own methods (its dialect's statements: `json_each` or `ANY`, one
//! statement or a locked transaction) plus the methods written once here. `$reader` and
//! `$writer` name the store's pools for reads and for low-rate writes; the forwarded
//! modules (`admin`, `catalog`, `reads`, `search`, `exhibitors`) are the backend's own.

/// Implements `Accounts`.
macro_rules! accounts_impl {
    ($store:ty, $reader:ident, $writer:ident { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::Accounts for $store {
        $($own)*

            async fn create_account(&self, name: &str) -> StoreResult<AccountInfo> {
                let account = AccountInfo {
                    id: uuid::Uuid::now_v7().to_string(),
                    name: name.to_string(),
                    created_at: self.now(),
                };
                sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(&account.id)
                    .bind(&account.name)
                    .bind(account.created_at)
                    .execute(&self.$writer)
                    .await?;
                Ok(account)
            }

            async fn find_account(&self, account_id: &str) -> StoreResult<Option<AccountInfo>> {
                Ok(sqlx::query_as("SELECT id, name, created_at FROM accounts WHERE id = $1")
                    .bind(account_id)
                    .fetch_optional(&self.$reader)
                    .await?)
            }

            async fn list_accounts(&self) -> StoreResult<Vec<(AccountInfo, i64)>> {
                let rows: Vec<$crate::store::rows::AccountKeysRow> = sqlx::query_as(
                    "SELECT a.id, a.name, a.created_at, \
                     (SELECT COUNT(*) FROM api_keys k WHERE k.account_id = a.id AND k.revoked_at IS NULL) \
                     AS active_keys FROM accounts a ORDER BY a.created_at, a.id",
                )
                .fetch_all(&self.$reader)
                .await?;
                Ok(rows.into_iter().map(|row| (row.account, row.active_keys)).collect())
            }

            async fn revoke_api_key(&self, key_id: &str) -> StoreResult<bool> {
                let done =
                    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                        .bind(self.now())
                        .bind(key_id)
                        .execute(&self.$writer)
                        .await?;
                self.auth_cache.forget_all();
                Ok(done.rows_affected() == 1)
            }

            async fn list_api_keys(&self, account_id: &str) -> StoreResult<Vec<ApiKeyInfo>> {
                Ok(sqlx::query_as(
                    "SELECT id AS key_id, account_id, prefix, created_at, revoked_at FROM api_keys \
                     WHERE account_id = $1 ORDER BY created_at, id",
                )
                .bind(account_id)
                .fetch_all(&self.$reader)
                .await?)
            }

            async fn authenticate(&self, key_digest: &str) -> StoreResult<Option<Principal>> {
                $crate::store::auth_cache::authenticate(&self.auth_cache, &self.$reader, key_digest)
                    .await
            }

            async fn refresh_auth_cache(&self) -> StoreResult<()> {
                $crate::store::auth_cache::refresh(&self.auth_cache, &self.$reader).await
            }

            async fn buckets(&self, account_id: &str) -> StoreResult<Vec<BucketState>> {
                let rows: Vec<$crate::store::rows::BucketRow> = sqlx::query_as(
                    "SELECT id, kind, granted, balance, held, expired, expires_at, created_at \
                     FROM credit_buckets WHERE account_id = $1 ORDER BY created_at, id",
                )
                .bind(account_id)
                .fetch_all(&self.$reader)
                .await?;
                rows.into_iter().map(BucketState::try_from).collect()
            }

            async fn admin_create_account(
                &self,
                actor: &str,
                name: &str,
                credits: i64,
                key: &GeneratedKey,
                prefix: KeyPrefix,
            ) -> StoreResult<AccountInfo> {
                admin::create_account(self, actor, name, credits, key, prefix).await
            }

            async fn admin_add_api_key(
                &self,
                actor: &str,
                account_id: &str,
                key: &GeneratedKey,
                prefix: KeyPrefix,
            ) -> StoreResult<()> {
                admin::add_api_key(self, actor, account_id, key, prefix).await
            }

            async fn admin_revoke_api_key(&self, actor: &str, key_id: &str) -> StoreResult<bool> {
                let revoked = admin::revoke_api_key(self, actor, key_id).await;
                self.auth_cache.forget_all();
                revoked
            }

            async fn admin_grant_credits(&self, actor: &str, grant: &Grant) -> StoreResult<String> {
                admin::grant_credits(self, actor, grant).await
            }

            async fn set_account_disabled(
                &self,
                actor: &str,
                account_id: &str,
                disabled: bool,
            ) -> StoreResult<bool> {
                let changed = admin::set_disabled(self, actor, account_id, disabled).await;
                self.auth_cache.forget_all();
                changed
            }

            async fn audit_log(&self, account_id: Option<&str>) -> StoreResult<Vec<audit::AuditEntry>> {
                admin::audit_log(self, account_id).await
            }
        }
    };
}
pub(crate) use accounts_impl;

/// Implements `Catalog`.
macro_rules! catalog_impl {
    ($store:ty, $reader:ident, $writer:ident { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::Catalog for $store {
        $($own)*

            async fn import_catalog(
                &self,
                rows: &CatalogImport,
                progress: &(dyn Fn(u64) + Send + Sync),
            ) -> StoreResult<()> {
                catalog::import_catalog(self, rows, progress).await
            }

            async fn catalog_counts(&self) -> StoreResult<CatalogCounts> {
                let counts: $crate::store::rows::CatalogCountsRow = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM events) AS events, \
                     (SELECT COUNT(*) FROM exhibitors) AS exhibitors, \
                     (SELECT COUNT(*) FROM personnel) AS personnel",
                )
                .fetch_one(&self.$reader)
                .await?;
                Ok(counts.into())
            }

            async fn event_keys(&self) -> StoreResult<Vec<(String, String)>> {
                Ok(sqlx::query_as("SELECT id, event_id FROM events")
                    .fetch_all(&self.$reader)
                    .await?)
            }

            async fn contact_of(
                &self,
                personnel_id: &str,
                kind: ContactKind,
            ) -> StoreResult<Option<Option<String>>> {
                let sql = match kind {
                    ContactKind::Email => "SELECT email FROM personnel WHERE id = $1",
                    ContactKind::Phone => "SELECT phone FROM personnel WHERE id = $1",
                };
                let row: Option<(Option<String>,)> = sqlx::query_as(sql)
                    .bind(personnel_id)
                    .fetch_optional(&self.$reader)
                    .await?;
                Ok(row.map(|(v,)| v))
            }

            async fn find_event(&self, reference: &str) -> StoreResult<Option<EventView>> {
                reads::find_event(self, reference).await
            }

            async fn list_events(
                &self,
                filter: &EventFilter,
                page: PageRequest,
            ) -> StoreResult<Page<EventView>> {
                reads::list_events(self, filter, page).await
            }

            async fn list_personnel(
                &self,
                account_id: &str,
                event_id: &str,
                filter: &PersonnelFilter,
                page: PageRequest,
            ) -> StoreResult<Page<ContactView>> {
                reads::list_personnel(self, account_id, event_id, filter, page).await
            }

            async fn personnel_profile(
                &self,
                account_id: &str,
                personnel_id: &str,
            ) -> StoreResult<Option<ContactView>> {
                reads::personnel_profile(self, account_id, personnel_id).await
            }

            async fn search_contacts(
                &self,
                account_id: &str,
                search: &ContactSearch,
                page: PageRequest,
            ) -> StoreResult<Page<ContactView>> {
                search::search_contacts(self, account_id, search, page).await
            }

            async fn list_exhibitors(
                &self,
                account_id: &str,
                event_id: &str,
                filter: &ExhibitorFilter,
                page: PageRequest,
            ) -> StoreResult<Page<ExhibitorView>> {
                exhibitors::list_exhibitors(self, account_id, event_id, filter, page).await
            }

            async fn exhibitor_profile(&self, exhibitor_id: &str) -> StoreResult<Option<ExhibitorView>> {
                exhibitors::exhibitor_profile(self, exhibitor_id).await
            }

            async fn exhibitor_events(
                &self,
                exhibitor_id: &str,
                page: PageRequest,
            ) -> StoreResult<Option<Page<EventView>>> {
                exhibitors::exhibitor_events(self, exhibitor_id, page).await
            }

            async fn personnel_events(
                &self,
                personnel_id: &str,
                page: PageRequest,
            ) -> StoreResult<Option<Page<EventView>>> {
                exhibitors::personnel_events(self, personnel_id, page).await
            }
        }
    };
}
pub(crate) use catalog_impl;

/// Implements `Tasks`. The store's `with_retries` runs a whole transaction again when the
/// database asks for it (PostgreSQL); work that is safe to run again is passed to it.
macro_rules! tasks_impl {
    ($store:ty, $reader:ident, $writer:ident { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::Tasks for $store {
        $($own)*

            async fn claim_task(&self, worker_id: &str, policy: ClaimPolicy) -> StoreResult<Claim> {
                self.with_retries(|| claim::claim(self, worker_id, policy)).await
            }

            async fn start_items(&self, lease: &Lease, item_ids: &[i64]) -> StoreResult<()> {
                self.with_retries(|| claim::start_items(self, lease, item_ids)).await
            }

            async fn settle_items(
                &self,
                lease: &Lease,
                outcomes: Vec<(i64, LookupOutcome)>,
            ) -> StoreResult<SettleReport> {
                self.with_retries(|| claim::settle(self, lease, outcomes.clone())).await
            }

            async fn create_unlock_task_keyed(
                &self,
                request: &NewUnlock,
                key: &crate::store::integrators::IdempotencyKey,
                token: &str,
                render: crate::store::integrators::ResponseRenderer,
            ) -> StoreResult<crate::store::integrators::KeyedCreate> {
                self.with_retries(|| {
                    integrators::create_keyed(self, request, key, token, render.clone())
                })
                .await
            }

            async fn queue_gauges(&self) -> StoreResult<QueueGauges> {
                Ok(sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM tasks WHERE status IN ('pending', 'processing')) AS live_tasks, \
                     (SELECT COUNT(*) FROM task_items i JOIN tasks t ON t.id = i.task_id \
                      WHERE t.status IN ('pending', 'processing') AND i.status IN ('pending', 'processing')) \
                     AS unsettled_items, \
                     (SELECT CAST(COALESCE(SUM(held), 0) AS BIGINT) FROM credit_buckets) AS credits_held",
                )
                .fetch_one(&self.$reader)
                .await?)
            }

            async fn renew_lease(&self, lease: &Lease, lease_ms: i64) -> StoreResult<()> {
                claim::renew_lease(self, lease, lease_ms).await
            }

            async fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
                claim::release_lease(self, lease).await
            }

            async fn reserve_idempotency_key(
                &self,
                key: &crate::store::integrators::IdempotencyKey,
                lock_ms: i64,
            ) -> StoreResult<crate::store::integrators::KeyReservation> {
                integrators::reserve_key(self, key, lock_ms).await
            }

            async fn release_idempotency_key(
                &self,
                key: &crate::store::integrators::IdempotencyKey,
                token: &str,
            ) -> StoreResult<()> {
                integrators::release_key(self, key, token).await
            }

            async fn list_tasks(
                &self,
                account_id: &str,
                kind: ContactKind,
                filter: &crate::store::integrators::TaskFilter,
                page: PageRequest,
            ) -> StoreResult<Page<TaskView>> {
                integrators::list_tasks(self, account_id, kind, filter, page).await
            }

            async fn usage(
                &self,
                account_id: &str,
                query: crate::store::integrators::UsageQuery,
            ) -> StoreResult<Vec<crate::store::integrators::UsageRow>> {
                integrators::usage(self, account_id, query).await
            }

            async fn task_counts(&self) -> StoreResult<Vec<(String, String, i64)>> {
                let rows: Vec<$crate::store::rows::TaskCountRow> =
                    sqlx::query_as(crate::store::TASK_COUNTS_SQL)
                        .fetch_all(&self.$reader)
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|row| (row.kind, row.status, row.tasks))
                    .collect())
            }
        }
    };
}
pub(crate) use tasks_impl;
