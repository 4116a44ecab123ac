//! Response owners in both stores (SQLite, and a real PostgreSQL server
//! started by the test): the first writer owns an id, unknown ids have no
//! owner, deletion forgets, and the retention bound sweeps old rows.

use palisade_ledger::{Ledger, ResponseOwner, WriteOptions};
use palisade_testkit::PostgresServer;

fn owner(id: &str, tenant: &str, created_ms: i64) -> ResponseOwner {
    ResponseOwner {
        response_id: id.into(),
        tenant: tenant.into(),
        key_name: format!("{tenant}-key"),
        backend: "main".into(),
        created_ms,
        route: "agents".into(),
        model: format!("{tenant}-model"),
        context: palisade_ledger::CONTEXT_UNTRUSTED,
    }
}

async fn check(ledger: &Ledger) {
    ledger
        .response_owner_put(&owner("resp_a", "alice", 1_000), 0)
        .await
        .unwrap();
    // Another tenant's answer naming the same id does not take it over.
    ledger
        .response_owner_put(&owner("resp_a", "mallory", 2_000), 0)
        .await
        .unwrap();
    assert_eq!(
        ledger.response_owner_get("resp_a").await.unwrap(),
        Some(owner("resp_a", "alice", 1_000))
    );
    assert_eq!(
        ledger.response_owner_get("resp_unknown").await.unwrap(),
        None
    );
    ledger.response_owner_delete("resp_a").await.unwrap();
    assert_eq!(ledger.response_owner_get("resp_a").await.unwrap(), None);
    // Retention: a write sweeps owners created before the bound.
    ledger
        .response_owner_put(&owner("resp_old", "bob", 10), 0)
        .await
        .unwrap();
    ledger
        .response_owner_put(&owner("resp_new", "bob", 5_000), 100)
        .await
        .unwrap();
    assert_eq!(ledger.response_owner_get("resp_old").await.unwrap(), None);
    assert!(ledger
        .response_owner_get("resp_new")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn sqlite_owners() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open(
        &format!("sqlite://{}", path.display()),
        WriteOptions::default(),
    )
    .await
    .unwrap();
    check(&ledger).await;
}

#[tokio::test]
async fn postgres_owners() {
    let pg = PostgresServer::start();
    let ledger = Ledger::open(&pg.url(), WriteOptions::default())
        .await
        .unwrap();
    check(&ledger).await;
}
