//! Operator actions (account create/disable/enable, key create/revoke, credit grants),
//! each with its audit-log row in one transaction, written once for both backends: the
//! statements are portable SQL (`$N` placeholders, `CAST`), and this macro instantiates
//! them for a backend's store and connection types. The store supplies `now()`,
//! `write_tx()` (a transaction holding the write lock) and a read pool.

macro_rules! operator_actions {
    ($store:ty, $conn:ty, $reader:ident) => {
        use serde_json::{json, Value};

        use crate::domain::keys::{GeneratedKey, KeyPrefix};
        use crate::domain::ledger::BucketKind;
        use crate::store::audit::{AuditAction, AuditEntry};
        use crate::store::{AccountInfo, Grant, StoreError, StoreResult};

        async fn append_audit(
            conn: &mut $conn,
            at: i64,
            actor: &str,
            action: AuditAction,
            account_id: Option<&str>,
            details: Value,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO audit_log (at, actor, action, account_id, details) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(at)
            .bind(actor)
            .bind(action.as_str())
            .bind(account_id)
            .bind(details.to_string())
            .execute(conn)
            .await?;
            Ok(())
        }

        async fn require_account(conn: &mut $conn, account_id: &str) -> StoreResult<()> {
            let exists: Option<i64> = sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM accounts WHERE id = $1")
                .bind(account_id)
                .fetch_optional(conn)
                .await?;
            match exists {
                Some(_) => Ok(()),
                None => Err(StoreError::NotFound(format!("account {account_id}"))),
            }
        }

        async fn insert_key(
            conn: &mut $conn,
            at: i64,
            account_id: &str,
            key: &GeneratedKey,
            prefix: KeyPrefix,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO api_keys (id, account_id, digest, prefix, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&key.key_id)
            .bind(account_id)
            .bind(&key.digest)
            .bind(prefix.as_str())
            .bind(at)
            .execute(conn)
            .await?;
            Ok(())
        }

        async fn insert_grant(
            conn: &mut $conn,
            at: i64,
            grant: &Grant,
            bucket_id: &str,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO credit_buckets (id, account_id, kind, granted, balance, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $4, $5, $6)",
            )
            .bind(bucket_id)
            .bind(&grant.account_id)
            .bind(grant.kind.as_str())
            .bind(grant.amount)
            .bind(grant.expires_at)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO ledger (account_id, bucket_id, entry_type, amount, created_at) \
                 VALUES ($1, $2, 'grant', $3, $4)",
            )
            .bind(&grant.account_id)
            .bind(bucket_id)
            .bind(grant.amount)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        fn grant_details(grant: &Grant, bucket_id: &str) -> Value {
            json!({
                "bucket_id": bucket_id,
                "kind": grant.kind.as_str(),
                "amount": grant.amount,
                "expires_at": grant.expires_at,
            })
        }

        pub(in crate::store) async fn create_account(
            store: &$store,
            actor: &str,
            name: &str,
            credits: i64,
            key: &GeneratedKey,
            prefix: KeyPrefix,
        ) -> StoreResult<AccountInfo> {
            if credits < 0 {
                return Err(StoreError::Invalid("credits must not be negative".into()));
            }
            let at = store.now();
            let account = AccountInfo {
                id: uuid::Uuid::now_v7().to_string(),
                name: name.to_string(),
                created_at: at,
            };
            let mut tx = store.write_tx().await?;
            sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&account.id)
                .bind(&account.name)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            append_audit(
                &mut tx,
                at,
                actor,
                AuditAction::AccountCreate,
                Some(&account.id),
                json!({"name": account.name}),
            )
            .await?;
            if credits > 0 {
                let grant = Grant {
                    account_id: account.id.clone(),
                    kind: BucketKind::Gift,
                    amount: credits,
                    expires_at: None,
                };
                let bucket_id = uuid::Uuid::now_v7().to_string();
                insert_grant(&mut tx, at, &grant, &bucket_id).await?;
                let details = grant_details(&grant, &bucket_id);
                append_audit(
                    &mut tx,
                    at,
                    actor,
                    AuditAction::CreditsGrant,
                    Some(&account.id),
                    details,
                )
                .await?;
            }
            insert_key(&mut tx, at, &account.id, key, prefix).await?;
            let details = json!({"key_id": key.key_id, "prefix": prefix.as_str()});
            append_audit(
                &mut tx,
                at,
                actor,
                AuditAction::KeyCreate,
                Some(&account.id),
                details,
            )
            .await?;
            tx.commit().await?;
            Ok(account)
        }

        pub(in crate::store) async fn add_api_key(
            store: &$store,
            actor: &str,
            account_id: &str,
            key: &GeneratedKey,
            prefix: KeyPrefix,
        ) -> StoreResult<()> {
            let at = store.now();
            let mut tx = store.write_tx().await?;
            require_account(&mut tx, account_id).await?;
            insert_key(&mut tx, at, account_id, key, prefix).await?;
            let details = json!({"key_id": key.key_id, "prefix": prefix.as_str()});
            append_audit(
                &mut tx,
                at,
                actor,
                AuditAction::KeyCreate,
                Some(account_id),
                details,
            )
            .await?;
            tx.commit().await?;
            Ok(())
        }

        pub(in crate::store) async fn revoke_api_key(
            store: &$store,
            actor: &str,
            key_id: &str,
        ) -> StoreResult<bool> {
            let at = store.now();
            let mut tx = store.write_tx().await?;
            let account_id: Option<String> = sqlx::query_scalar(
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
                 RETURNING account_id",
            )
            .bind(at)
            .bind(key_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(account_id) = account_id else {
                return Ok(false);
            };
            let details = json!({"key_id": key_id});
            append_audit(
                &mut tx,
                at,
                actor,
                AuditAction::KeyRevoke,
                Some(&account_id),
                details,
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        }

        pub(in crate::store) async fn grant_credits(
            store: &$store,
            actor: &str,
            grant: &Grant,
        ) -> StoreResult<String> {
            if grant.amount <= 0 {
                return Err(StoreError::Invalid("amount must be positive".into()));
            }
            let at = store.now();
            let bucket_id = uuid::Uuid::now_v7().to_string();
            let mut tx = store.write_tx().await?;
            require_account(&mut tx, &grant.account_id).await?;
            insert_grant(&mut tx, at, grant, &bucket_id).await?;
            let details = grant_details(grant, &bucket_id);
            append_audit(
                &mut tx,
                at,
                actor,
                AuditAction::CreditsGrant,
                Some(&grant.account_id),
                details,
            )
            .await?;
            tx.commit().await?;
            Ok(bucket_id)
        }

        pub(in crate::store) async fn set_disabled(
            store: &$store,
            actor: &str,
            account_id: &str,
            disabled: bool,
        ) -> StoreResult<bool> {
            let at = store.now();
            let mut tx = store.write_tx().await?;
            require_account(&mut tx, account_id).await?;
            // Only a change of state is an action: disabling twice keeps the first time.
            let done = sqlx::query(
                "UPDATE accounts SET disabled_at = CASE WHEN $1 THEN CAST($2 AS BIGINT) END \
                 WHERE id = $3 AND (disabled_at IS NULL) = $1",
            )
            .bind(disabled)
            .bind(at)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            let action = if disabled {
                AuditAction::AccountDisable
            } else {
                AuditAction::AccountEnable
            };
            append_audit(&mut tx, at, actor, action, Some(account_id), json!({})).await?;
            tx.commit().await?;
            Ok(true)
        }

        pub(in crate::store) async fn audit_log(
            store: &$store,
            account_id: Option<&str>,
        ) -> StoreResult<Vec<AuditEntry>> {
            let rows: Vec<crate::store::audit::AuditRow> = sqlx::query_as(
                "SELECT id, at, actor, action, account_id, details FROM audit_log \
                 WHERE CAST($1 AS TEXT) IS NULL OR account_id = $1 ORDER BY id",
            )
            .bind(account_id)
            .fetch_all(&store.$reader)
            .await?;
            Ok(rows.into_iter().map(AuditEntry::from_row).collect())
        }
    };
}

pub(crate) use operator_actions;
