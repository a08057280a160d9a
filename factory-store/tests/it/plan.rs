//! `create_tasks`: spec numbering across epics, dependency resolution, and all-or-nothing
//! refusal of bad plans.

use factory_core::epic::EpicId;
use factory_core::ports::{Store, StoreError};
use factory_core::task::TaskState;

use crate::support::{TempStore, epic, new_task};

fn invalid_naming(result: Result<impl std::fmt::Debug, StoreError>, key: &str) -> String {
    match result {
        Err(StoreError::Invalid(msg)) => {
            assert!(
                msg.contains(&format!("`{key}`")),
                "{msg} should name `{key}`"
            );
            msg
        }
        other => panic!("expected Invalid naming {key}, got {other:?}"),
    }
}

#[tokio::test]
async fn spec_numbers_continue_across_epics() {
    let mut t = TempStore::new().await;
    let first = epic(&t.store, "first").await;
    let second = epic(&t.store, "second").await;
    let a = t
        .store
        .create_tasks(
            first.id,
            vec![new_task("x", &[]), new_task("y", &[]), new_task("z", &[])],
        )
        .await
        .unwrap();
    let specs: Vec<String> = a.iter().map(|t| t.spec_id.to_string()).collect();
    assert_eq!(specs, ["001-task-x", "002-task-y", "003-task-z"]);
    assert!(
        a.iter()
            .all(|t| t.state == TaskState::Pending && t.version == 1)
    );
    assert!(a.iter().all(|t| t.epic_id == first.id));

    // Numbering is store-wide and survives a restart; keys only need to be unique per epic.
    t.reopen().await;
    let b = t
        .store
        .create_tasks(second.id, vec![new_task("x", &[]), new_task("w", &["x"])])
        .await
        .unwrap();
    let specs: Vec<u32> = b.iter().map(|t| t.spec_id.number()).collect();
    assert_eq!(specs, [4, 5]);

    let all = t.store.list_tasks(None).await.unwrap();
    let numbers: Vec<u32> = all.iter().map(|t| t.spec_id.number()).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
    assert_eq!(t.store.list_tasks(Some(second.id)).await.unwrap(), b);
    assert_eq!(t.store.list_tasks(Some(first.id)).await.unwrap(), a);
    assert!(
        t.store
            .list_tasks(Some(EpicId(99)))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn depends_on_keys_become_task_ids_in_plan_order() {
    let t = TempStore::new().await;
    let e = epic(&t.store, "deps").await;
    // Listed before its dependencies, with a repeat: order kept, repeat dropped.
    let tasks = t
        .store
        .create_tasks(
            e.id,
            vec![
                new_task("d", &["c", "b", "c"]),
                new_task("b", &["a"]),
                new_task("c", &["a"]),
                new_task("a", &[]),
            ],
        )
        .await
        .unwrap();
    let id = |k: &str| tasks.iter().find(|t| t.key == k).unwrap().id;
    assert_eq!(tasks[0].depends_on, vec![id("c"), id("b")]);
    assert_eq!(tasks[1].depends_on, vec![id("a")]);
    assert!(tasks[3].depends_on.is_empty());
    assert_eq!(t.store.list_tasks(Some(e.id)).await.unwrap(), tasks);
    assert_eq!(
        t.store.task(id("d")).await.unwrap().depends_on,
        vec![id("c"), id("b")]
    );
}

#[tokio::test]
async fn bad_plans_are_refused_and_nothing_is_written() {
    let t = TempStore::new().await;
    let e = epic(&t.store, "bad plans").await;

    invalid_naming(
        t.store
            .create_tasks(e.id, vec![new_task("a", &[]), new_task("b", &["nope"])])
            .await,
        "nope",
    );
    let msg = invalid_naming(
        t.store
            .create_tasks(
                e.id,
                vec![
                    new_task("a", &[]),
                    new_task("b", &["a", "d"]),
                    new_task("c", &["b"]),
                    new_task("d", &["c"]),
                ],
            )
            .await,
        "b",
    );
    assert!(msg.contains("cycle"), "{msg}");
    invalid_naming(
        t.store
            .create_tasks(e.id, vec![new_task("a", &[]), new_task("a", &[])])
            .await,
        "a",
    );
    let msg = invalid_naming(
        t.store
            .create_tasks(e.id, vec![new_task("a", &["a"])])
            .await,
        "a",
    );
    assert!(msg.contains("itself"), "{msg}");

    assert!(t.store.list_tasks(None).await.unwrap().is_empty());

    // A good plan afterwards starts at 001: nothing was half-written before.
    let ok = t
        .store
        .create_tasks(e.id, vec![new_task("a", &[])])
        .await
        .unwrap();
    assert_eq!(ok[0].spec_id.number(), 1);

    // A key reused in a second plan for the same epic is refused too, atomically.
    invalid_naming(
        t.store
            .create_tasks(e.id, vec![new_task("fresh", &[]), new_task("a", &[])])
            .await,
        "a",
    );
    assert_eq!(t.store.list_tasks(None).await.unwrap(), ok);
}

#[tokio::test]
async fn an_empty_plan_creates_nothing() {
    let t = TempStore::new().await;
    let e = epic(&t.store, "empty").await;
    assert!(t.store.create_tasks(e.id, vec![]).await.unwrap().is_empty());
    assert!(t.store.list_tasks(None).await.unwrap().is_empty());
}
