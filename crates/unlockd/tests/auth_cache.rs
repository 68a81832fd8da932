//! The key cache (`store::auth_cache`): lookups are answered from memory while the
//! database's auth generation stands still, and forgotten when it moves, whichever process
//! moved it; a change made through the same store is seen at once. Runs on both backends.

mod common;

use common::{fresh_store, TestDb};
use std::sync::Arc;
use unlockd::clock::SystemClock;
use unlockd::domain::keys::{self, KeyPrefix};
use unlockd::store::sqlite::Durability;
use unlockd::store::{DynStore, Principal};

async fn account_with_key(store: &DynStore) -> (String, keys::GeneratedKey) {
    let account = store.create_account("Cache").await.unwrap();
    let key = keys::generate(KeyPrefix::Sk);
    store
        .add_api_key(&account.id, &key, KeyPrefix::Sk)
        .await
        .unwrap();
    (account.id, key)
}

async fn principal(store: &DynStore, key: &keys::GeneratedKey) -> Option<Principal> {
    store.authenticate(&key.digest).await.unwrap()
}

/// A second store on the same database: what another process (the CLI, another server)
/// would use.
async fn other_process(db: &TestDb) -> DynStore {
    unlockd::store::connect(&db.url, Durability::Normal, Arc::new(SystemClock))
        .await
        .unwrap()
}

#[tokio::test]
async fn lookups_are_cached_until_the_auth_generation_moves() {
    let (store, db) = fresh_store(Arc::new(SystemClock)).await;
    let (account, key) = account_with_key(&store).await;
    store.refresh_auth_cache().await.unwrap();
    let found = principal(&store, &key).await.expect("a valid key");
    assert_eq!(found.account_id, account);

    // Revoke behind the cache's back: without the triggers the generation stays put, so
    // the cached principal is still answered. This is what shows the cache is in use.
    let triggers = if db.is_postgres() {
        vec!["DROP TRIGGER api_keys_change_auth ON api_keys"]
    } else {
        vec![
            "DROP TRIGGER api_keys_change_auth",
            "DROP TRIGGER api_keys_delete_auth",
        ]
    };
    for sql in triggers {
        db.raw_execute(sql).await.unwrap();
    }
    db.raw_execute("UPDATE api_keys SET revoked_at = 1")
        .await
        .unwrap();
    store.refresh_auth_cache().await.unwrap();
    assert_eq!(principal(&store, &key).await, Some(found));

    // Once the generation moves, the next refresh forgets, and the database says revoked.
    db.raw_execute("UPDATE auth_generation SET generation = generation + 1")
        .await
        .unwrap();
    store.refresh_auth_cache().await.unwrap();
    assert_eq!(principal(&store, &key).await, None);
}

#[tokio::test]
async fn another_process_revoking_or_disabling_is_seen_at_the_next_refresh() {
    let (store, db) = fresh_store(Arc::new(SystemClock)).await;
    let (account, key) = account_with_key(&store).await;
    let (_, second) = account_with_key(&store).await;
    store.refresh_auth_cache().await.unwrap();
    for k in [&key, &second] {
        assert!(principal(&store, k).await.is_some());
    }
    let other = other_process(&db).await;

    assert!(other
        .set_account_disabled("ops", &account, true)
        .await
        .unwrap());
    store.refresh_auth_cache().await.unwrap();
    let disabled = principal(&store, &key).await.expect("the key still exists");
    assert!(disabled.account_disabled);

    assert!(other
        .set_account_disabled("ops", &account, false)
        .await
        .unwrap());
    store.refresh_auth_cache().await.unwrap();
    assert!(!principal(&store, &key).await.unwrap().account_disabled);

    assert!(other.revoke_api_key(&second.key_id).await.unwrap());
    store.refresh_auth_cache().await.unwrap();
    assert_eq!(principal(&store, &second).await, None);
    assert!(
        principal(&store, &key).await.is_some(),
        "other keys unaffected"
    );
}

#[tokio::test]
async fn a_change_through_the_same_store_is_seen_at_once() {
    let (store, _db) = fresh_store(Arc::new(SystemClock)).await;
    let (account, key) = account_with_key(&store).await;
    let (_, second) = account_with_key(&store).await;
    store.refresh_auth_cache().await.unwrap();
    for k in [&key, &second] {
        assert!(principal(&store, k).await.is_some());
    }
    // No refresh in between: the store forgets its own changes as it makes them.
    assert!(store
        .set_account_disabled("ops", &account, true)
        .await
        .unwrap());
    assert!(principal(&store, &key).await.unwrap().account_disabled);
    assert!(store
        .admin_revoke_api_key("ops", &second.key_id)
        .await
        .unwrap());
    assert_eq!(principal(&store, &second).await, None);
}
