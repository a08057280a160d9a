//! Every field of every record comes back as written, and still does after a reopen.

use factory_core::agent::{AgentEvent, AgentId, AgentRole, AgentState};
use factory_core::epic::{EpicChanges, EpicEvent, EpicId, EpicState, NewEpic};
use factory_core::ports::{Store, StoreError};
use factory_core::spec::SpecId;
use factory_core::task::{TaskChanges, TaskEvent, TaskId, TaskState};
use factory_store::SqliteStore;
use sqlx::Row;

use crate::support::{StepClock, TempStore, epic, new_task};

#[tokio::test]
async fn epic_round_trips_and_survives_reopen() {
    let mut t = TempStore::new().await;
    let at = t.clock.peek();
    let created = t
        .store
        .create_epic(NewEpic {
            text: "\n# Add a /healthz endpoint\n\nIt returns 200 and the version.".into(),
        })
        .await
        .unwrap();
    assert_eq!(created.title, "Add a /healthz endpoint");
    assert_eq!(created.state, EpicState::Planning);
    assert_eq!(created.version, 1);
    assert_eq!(created.created_at, at);
    assert_eq!(created.updated_at, at);
    assert_eq!(t.store.epic(created.id).await.unwrap(), created);

    let updated = t
        .store
        .update_epic(
            created.id,
            1,
            Some(EpicEvent::Planned),
            EpicChanges {
                blocked_reason: Some(Some("waiting for a person".into())),
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.state, EpicState::InProgress);
    assert_eq!(updated.version, 2);
    assert_eq!(
        updated.blocked_reason.as_deref(),
        Some("waiting for a person")
    );
    assert!(updated.updated_at > created.updated_at);
    assert_eq!(updated.created_at, created.created_at);
    let second = epic(&t.store, "second").await;

    t.reopen().await;
    assert_eq!(t.store.epic(created.id).await.unwrap(), updated);
    assert_eq!(t.store.list_epics().await.unwrap(), vec![updated, second]);
}

#[tokio::test]
async fn blank_epic_text_is_refused() {
    let t = TempStore::new().await;
    let err = t
        .store
        .create_epic(NewEpic {
            text: " \n ".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(t.store.list_epics().await.unwrap().is_empty());
}

#[tokio::test]
async fn task_round_trips_every_field_and_survives_reopen() {
    let mut t = TempStore::new().await;
    let e = epic(&t.store, "plan me").await;
    let tasks = t
        .store
        .create_tasks(e.id, vec![new_task("a", &[]), new_task("b", &["a"])])
        .await
        .unwrap();
    let (a, b) = (&tasks[0], &tasks[1]);
    assert_eq!(a.spec_id.to_string(), "001-task-a");
    assert_eq!(b.depends_on, vec![a.id]);
    assert_eq!(b.acceptance, vec!["b works", "b is tested"]);
    assert_eq!(t.store.task(b.id).await.unwrap(), *b);

    let assigned = t
        .store
        .update_task(a.id, 1, Some(TaskEvent::Assign), TaskChanges::default())
        .await
        .unwrap();
    let changed = t
        .store
        .update_task(
            a.id,
            assigned.version,
            Some(TaskEvent::Start),
            TaskChanges {
                attempts: Some(3),
                qa_rounds: Some(2),
                branch: Some(Some("factory/001-task-a".into())),
                blocked_reason: Some(Some("blocked?".into())),
                waiting_reason: Some(Some("dirty checkout".into())),
                merge_commit: Some(Some("abc123".into())),
                pr_url: Some(Some("https://forge.invalid/pr/1".into())),
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.state, TaskState::InProgress);
    assert_eq!(changed.version, 3);
    assert_eq!(changed.attempts, 3);
    assert_eq!(changed.qa_rounds, 2);
    assert_eq!(changed.branch.as_deref(), Some("factory/001-task-a"));
    assert_eq!(changed.merge_commit.as_deref(), Some("abc123"));
    assert_eq!(
        changed.pr_url.as_deref(),
        Some("https://forge.invalid/pr/1")
    );
    assert_eq!(t.store.task(a.id).await.unwrap(), changed);

    // `Some(None)` clears, `None` leaves alone.
    let cleared = t
        .store
        .update_task(
            a.id,
            3,
            None,
            TaskChanges {
                blocked_reason: Some(None),
                ..TaskChanges::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cleared.blocked_reason, None);
    assert_eq!(cleared.waiting_reason.as_deref(), Some("dirty checkout"));
    assert_eq!(cleared.state, TaskState::InProgress);
    assert_eq!(cleared.version, 4);

    t.reopen().await;
    assert_eq!(t.store.task(a.id).await.unwrap(), cleared);
    let by_spec: SpecId = "002-task-b".parse().unwrap();
    assert_eq!(t.store.task_by_spec(&by_spec).await.unwrap(), *b);
    assert_eq!(
        t.store.list_tasks(Some(e.id)).await.unwrap(),
        vec![cleared.clone(), b.clone()]
    );
    assert_eq!(
        t.store.list_tasks(None).await.unwrap(),
        vec![cleared, b.clone()]
    );
}

#[tokio::test]
async fn agent_round_trips_and_task_reassignment_is_a_write() {
    let mut t = TempStore::new().await;
    let e = epic(&t.store, "agents").await;
    let tasks = t
        .store
        .create_tasks(e.id, vec![new_task("a", &[]), new_task("b", &[])])
        .await
        .unwrap();
    let worker = AgentId::new(AgentRole::Worker, &tasks[0].spec_id);
    let planner = AgentId::new(AgentRole::Planner, "epic-1");

    let at = t.clock.peek();
    let w = t
        .store
        .ensure_agent(&worker, AgentRole::Worker, Some(tasks[0].id))
        .await
        .unwrap();
    assert_eq!(w.state, AgentState::Idle);
    assert_eq!(w.version, 1);
    assert_eq!(w.task_id, Some(tasks[0].id));
    assert_eq!(w.updated_at, at);

    // Same task again: nothing to write.
    let same = t
        .store
        .ensure_agent(&worker, AgentRole::Worker, Some(tasks[0].id))
        .await
        .unwrap();
    assert_eq!(same, w);

    let busy = t
        .store
        .update_agent(&worker, 1, AgentEvent::Start)
        .await
        .unwrap();
    assert_eq!(busy.state, AgentState::Busy);
    assert_eq!(busy.version, 2);

    let moved = t
        .store
        .ensure_agent(&worker, AgentRole::Worker, Some(tasks[1].id))
        .await
        .unwrap();
    assert_eq!(moved.task_id, Some(tasks[1].id));
    assert_eq!(
        moved.state,
        AgentState::Busy,
        "ensure_agent keeps the state"
    );
    assert_eq!(moved.version, 3);
    let err = t
        .store
        .update_agent(&worker, 2, AgentEvent::Finish)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Stale { actual: 3, .. }),
        "{err:?}"
    );

    let p = t
        .store
        .ensure_agent(&planner, AgentRole::Planner, None)
        .await
        .unwrap();
    let err = t
        .store
        .ensure_agent(&planner, AgentRole::Reviewer, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    t.reopen().await;
    // Ordered by id: "planner/…" < "worker/…".
    assert_eq!(t.store.list_agents().await.unwrap(), vec![p, moved]);
}

#[tokio::test]
async fn missing_records_are_not_found() {
    let t = TempStore::new().await;
    let nf = |e: StoreError, want: &str| match e {
        StoreError::NotFound { kind, id } => assert_eq!((kind, id.as_str()), (want, "42")),
        other => panic!("expected NotFound {want}, got {other:?}"),
    };
    nf(t.store.epic(EpicId(42)).await.unwrap_err(), "epic");
    nf(
        t.store
            .update_epic(EpicId(42), 1, None, EpicChanges::default())
            .await
            .unwrap_err(),
        "epic",
    );
    nf(t.store.task(TaskId(42)).await.unwrap_err(), "task");
    nf(
        t.store
            .update_task(TaskId(42), 1, None, TaskChanges::default())
            .await
            .unwrap_err(),
        "task",
    );
    nf(
        t.store
            .create_tasks(EpicId(42), vec![new_task("a", &[])])
            .await
            .unwrap_err(),
        "epic",
    );
    nf(
        t.store
            .update_agent(&AgentId("42".into()), 1, AgentEvent::Start)
            .await
            .unwrap_err(),
        "agent",
    );
    let spec: SpecId = "042-nothing".parse().unwrap();
    assert!(matches!(
        t.store.task_by_spec(&spec).await.unwrap_err(),
        StoreError::NotFound { kind: "task", .. }
    ));
    // A reference to a missing task is refused by the schema, not stored dangling.
    let err = t
        .store
        .ensure_agent(
            &AgentId("worker/x".into()),
            AgentRole::Worker,
            Some(TaskId(42)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(t.store.list_agents().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_file_is_wal_and_migrated_once() {
    let mut t = TempStore::new().await;
    epic(&t.store, "x").await;
    t.reopen().await; // migrations must not re-run (they would fail on existing tables)
    let raw = t.raw().await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&raw)
            .await
            .unwrap();
    assert_eq!(applied, vec![1]);
    let row = sqlx::query("SELECT state, created_at FROM epics")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("state"), "planning");
    assert_eq!(
        row.get::<String, _>("created_at"),
        "2025-03-04T05:06:07.123456789Z"
    );
}

#[tokio::test]
async fn a_corrupt_state_is_reported_not_guessed() {
    let t = TempStore::new().await;
    let e = epic(&t.store, "x").await;
    let raw = t.raw().await;
    sqlx::query("UPDATE epics SET state = 'exploded'")
        .execute(&raw)
        .await
        .unwrap();
    let err = t.store.epic(e.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    let msg = format!("{err}");
    assert!(
        msg.contains("epics.state") && msg.contains("exploded"),
        "{msg}"
    );
}

#[tokio::test]
async fn in_memory_store_works_across_awaits() {
    let store = SqliteStore::in_memory(std::sync::Arc::new(StepClock::default()))
        .await
        .unwrap();
    let e = epic(&store, "memory").await;
    tokio::task::yield_now().await;
    assert_eq!(store.list_epics().await.unwrap(), vec![e]);
}
