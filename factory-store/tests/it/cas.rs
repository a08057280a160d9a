//! Compare-and-set: stale versions and illegal transitions write nothing (no record change, no
//! journal entry); racing writers on one version produce exactly one winner.

use std::sync::Arc;

use factory_core::agent::{AgentEvent, AgentId, AgentRole, AgentState};
use factory_core::epic::{EpicChanges, EpicEvent, EpicState};
use factory_core::ports::{Store, StoreError};
use factory_core::task::{TaskChanges, TaskEvent, TaskState};
use tokio::sync::Barrier;

use crate::support::{TempStore, epic, new_task, one_task, planned};

#[tokio::test]
async fn stale_versions_are_refused_and_change_nothing() {
    let t = TempStore::new().await;
    let e = epic(&t.store, "stale").await;
    let task = planned(&t.store, &e, vec![new_task("a", &[])])
        .await
        .remove(0);
    let e = t.store.epic(e.id).await.unwrap();
    assert_eq!(e.version, 2);
    let head = t.store.journal_head().await.unwrap();

    let err = t
        .store
        .update_epic(
            e.id,
            1,
            Some(EpicEvent::Block),
            EpicChanges {
                blocked_reason: Some(Some("no".into())),
            },
        )
        .await
        .unwrap_err();
    match err {
        StoreError::Stale {
            kind,
            expected,
            actual,
            ..
        } => assert_eq!((kind, expected, actual), ("epic", 1, 2)),
        other => panic!("expected Stale, got {other:?}"),
    }
    assert_eq!(t.store.epic(e.id).await.unwrap(), e);

    for wrong in [0, 2, u64::MAX] {
        let err = t
            .store
            .update_task(
                task.id,
                wrong,
                Some(TaskEvent::Assign),
                TaskChanges::blocked("x"),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Stale {
                    kind: "task",
                    actual: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert_eq!(t.store.task(task.id).await.unwrap(), task);

    let id = AgentId::new(AgentRole::Worker, &task.spec_id);
    let agent = t
        .store
        .ensure_agent(&id, AgentRole::Worker, Some(task.id))
        .await
        .unwrap();
    let err = t
        .store
        .update_agent(&id, 7, AgentEvent::Start)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Stale {
                kind: "agent",
                expected: 7,
                actual: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(t.store.list_agents().await.unwrap(), vec![agent]);
    assert_eq!(
        t.store.journal_head().await.unwrap(),
        head,
        "a refused write journals nothing"
    );
}

#[tokio::test]
async fn illegal_transitions_are_refused_and_change_nothing() {
    let t = TempStore::new().await;
    let e = epic(&t.store, "illegal").await;
    let head = t.store.journal_head().await.unwrap();
    let err = t
        .store
        .update_epic(
            e.id,
            1,
            Some(EpicEvent::Complete),
            EpicChanges {
                blocked_reason: Some(Some("should not be written".into())),
            },
        )
        .await
        .unwrap_err();
    match err {
        StoreError::IllegalTransition(it) => assert_eq!(it.machine, "epic"),
        other => panic!("expected IllegalTransition, got {other:?}"),
    }
    assert_eq!(t.store.epic(e.id).await.unwrap(), e);
    assert_eq!(t.store.journal_head().await.unwrap(), head);

    let task = planned(&t.store, &e, vec![new_task("a", &[])])
        .await
        .remove(0);
    let head = t.store.journal_head().await.unwrap();
    for event in [TaskEvent::Start, TaskEvent::Merged, TaskEvent::Unblock] {
        let err = t
            .store
            .update_task(
                task.id,
                1,
                Some(event),
                TaskChanges {
                    attempts: Some(9),
                    ..TaskChanges::blocked("nope")
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::IllegalTransition(_)), "{err:?}");
    }
    let stored = t.store.task(task.id).await.unwrap();
    assert_eq!(stored, task);
    assert_eq!(stored.state, TaskState::Pending);
    assert_eq!(t.store.journal_head().await.unwrap(), head);

    let id = AgentId("reviewer/001-task-a".into());
    let agent = t
        .store
        .ensure_agent(&id, AgentRole::Reviewer, None)
        .await
        .unwrap();
    let err = t
        .store
        .update_agent(&id, 1, AgentEvent::Finish)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IllegalTransition(_)), "{err:?}");
    assert_eq!(t.store.list_agents().await.unwrap(), vec![agent]);
    assert_eq!(
        t.store
            .update_agent(&id, 1, AgentEvent::Fail)
            .await
            .unwrap()
            .state,
        AgentState::Failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_on_one_version_have_exactly_one_winner() {
    const RACERS: usize = 12;
    let t = TempStore::new().await;
    let task = one_task(&t.store, "race").await;

    for round in 0..3u32 {
        let before = t.store.task(task.id).await.unwrap();
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut handles = Vec::new();
        for racer in 0..RACERS {
            let store = t.store.clone();
            let barrier = barrier.clone();
            let version = before.version;
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                // Every racer changes a field, so a lost update would be visible.
                store
                    .update_task(
                        task.id,
                        version,
                        None,
                        TaskChanges {
                            attempts: Some(u32::try_from(racer).unwrap() + 100 * round),
                            ..TaskChanges::default()
                        },
                    )
                    .await
            }));
        }
        let mut winners = Vec::new();
        for h in handles {
            match h.await.unwrap() {
                Ok(task) => winners.push(task.value),
                Err(StoreError::Stale {
                    expected, actual, ..
                }) => {
                    assert_eq!((expected, actual), (before.version, before.version + 1));
                }
                Err(other) => panic!("unexpected error: {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let stored = t.store.task(task.id).await.unwrap();
        assert_eq!(stored, winners[0]);
        assert_eq!(stored.version, before.version + 1);
    }

    // The same holds for state events: one Assign wins, the rest are stale.
    let before = t.store.task(task.id).await.unwrap();
    let barrier = Arc::new(Barrier::new(RACERS));
    let handles: Vec<_> = (0..RACERS)
        .map(|_| {
            let store = t.store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .update_task(
                        task.id,
                        before.version,
                        Some(TaskEvent::Assign),
                        TaskChanges::default(),
                    )
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(t) => {
                ok += 1;
                assert_eq!(t.value.state, TaskState::Assigned);
            }
            Err(StoreError::Stale { .. }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(ok, 1);
    let stored = t.store.task(task.id).await.unwrap();
    assert_eq!(stored.state, TaskState::Assigned);
    assert_eq!(stored.version, before.version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_epic_writers_have_exactly_one_winner() {
    const RACERS: usize = 8;
    let t = TempStore::new().await;
    let e = epic(&t.store, "race").await;
    let barrier = Arc::new(Barrier::new(RACERS));
    let handles: Vec<_> = (0..RACERS)
        .map(|_| {
            let store = t.store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .update_epic(e.id, 1, Some(EpicEvent::Planned), EpicChanges::default())
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Stale { actual: 2, .. }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(ok, 1);
    let stored = t.store.epic(e.id).await.unwrap();
    assert_eq!((stored.state, stored.version), (EpicState::InProgress, 2));
}
