//! Creating an unlock task, written once for both backends: read the facts (under the
//! account's lock for a create), let the domain decide (`domain::unlock::decide`) and plan
//! the writes (`domain::create::plan_create`), write the plan. The precheck runs the same
//! decision without the lock and without writing; the keyed create (Idempotency-Key) runs
//! `create` inside its own transaction. A backend supplies only the statements.

use async_trait::async_trait;

use crate::domain::create::{plan_create, CreatePlan};
use crate::domain::unlock::{decide, is_valid_personnel_id, UnlockDecision, UnlockFacts};
use crate::store::{CreateResult, NewUnlock, StoreResult};

/// The task row, in both dialects (`$N` placeholders work on SQLite too).
pub(crate) const INSERT_TASK_ROW: &str =
    "INSERT INTO tasks (id, account_id, kind, event_id, event_ref, status, call_source, price, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $8)";

/// What a create decides on: the resolved event, the time the task is stamped with (the
/// backend's clock), and the facts about the requested people and the account's buckets.
#[derive(Debug, Clone)]
pub(crate) struct CreateFacts {
    pub event_id: String,
    pub now: i64,
    pub facts: UnlockFacts,
}

/// The task a plan is written for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewTask<'a> {
    pub id: &'a str,
    pub event_id: &'a str,
    pub now: i64,
    pub request: &'a NewUnlock,
}

/// The statements a create needs, run inside the caller's transaction.
#[async_trait]
pub(crate) trait CreateStatements: Send {
    /// Resolves the event (`None`: not found) and reads the facts about `valid_ids`. With
    /// `lock` (a create) the account's facts are read after its lock is granted, so no
    /// other create of the account can change them before this one commits.
    async fn create_facts(
        &mut self,
        request: &NewUnlock,
        valid_ids: &[&str],
        lock: bool,
    ) -> StoreResult<Option<CreateFacts>>;
    /// Writes the task, its items, guards, hold entries and bucket takes. Fails (and the
    /// caller rolls back) when a write does not match the plan; a guard's primary-key
    /// violation means another live task holds the person.
    async fn insert_task(&mut self, task: NewTask<'_>, plan: &CreatePlan) -> StoreResult<()>;
}

async fn decide_with<S>(
    conn: &mut S,
    request: &NewUnlock,
    lock: bool,
) -> StoreResult<Option<(CreateFacts, UnlockDecision)>>
where
    S: CreateStatements + ?Sized,
{
    let valid: Vec<&str> = request
        .personnel_ids
        .iter()
        .filter(|id| is_valid_personnel_id(id))
        .map(String::as_str)
        .collect();
    let Some(loaded) = conn.create_facts(request, &valid, lock).await? else {
        return Ok(None);
    };
    let decision = decide(
        &request.personnel_ids,
        &loaded.facts,
        request.price,
        loaded.now,
    );
    Ok(Some((loaded, decision)))
}

/// The decision a create would take now, without writing (the caller reads on one
/// snapshot).
pub(crate) async fn precheck<S>(conn: &mut S, request: &NewUnlock) -> StoreResult<CreateResult>
where
    S: CreateStatements + ?Sized,
{
    Ok(match decide_with(conn, request, false).await? {
        None => CreateResult::EventNotFound,
        Some((_, decision)) => CreateResult::Decided {
            decision,
            task_id: None,
        },
    })
}

/// Decides and writes a create inside the caller's transaction (which commits it).
pub(crate) async fn create<S>(conn: &mut S, request: &NewUnlock) -> StoreResult<CreateResult>
where
    S: CreateStatements + ?Sized,
{
    let Some((loaded, decision)) = decide_with(conn, request, true).await? else {
        return Ok(CreateResult::EventNotFound);
    };
    let Some(plan) = plan_create(&decision) else {
        return Ok(CreateResult::Decided {
            decision,
            task_id: None,
        });
    };
    let task_id = uuid::Uuid::now_v7().to_string();
    let task = NewTask {
        id: &task_id,
        event_id: &loaded.event_id,
        now: loaded.now,
        request,
    };
    conn.insert_task(task, &plan).await?;
    Ok(CreateResult::Decided {
        decision,
        task_id: Some(task_id),
    })
}
