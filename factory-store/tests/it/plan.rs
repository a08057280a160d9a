//! `record_plan`: spec numbering across epics and after `min_spec_number`, dependency resolution,
//! the epic's move to `InProgress`, the decision and the journal, all in one transaction that is
//! refused whole (a stale epic, a second plan, a failing insert) and then writes nothing.
//!
//! The plan rules themselves (blank, duplicate and unknown keys, self-dependencies, cycles, empty
//! plans) are `factory_core::plan::Plan::new`'s and are unit-tested there.

use std::sync::Arc;

use factory_core::decision::{DecisionFilter, NewDecision};
use factory_core::epic::{EpicChanges, EpicId, EpicState};
use factory_core::event::DomainEvent;
use factory_core::ports::{Store, StoreError};
use factory_core::task::TaskState;
use tokio::sync::Barrier;

use crate::support::{TempStore, epic, journaled, new_task, plan, plan_decision, planned};

/// The journal still ends at `head`, and the store holds `tasks` tasks and `decisions` decisions.
async fn assert_nothing_written(t: &TempStore, head: u64, tasks: usize, decisions: usize) {
    assert_eq!(t.store.journal_head().await.unwrap(), head);
    assert_eq!(t.store.list_tasks(None).await.unwrap().len(), tasks);
    assert_eq!(
        t.store
            .list_decisions(DecisionFilter::default())
            .await
            .unwrap()
            .len(),
        decisions
    );
}

#[tokio::test]
async fn spec_numbers_continue_across_epics() {
    let mut t = TempStore::new().await;
    let first = epic(&t.store, "first").await;
    let second = epic(&t.store, "second").await;
    let a = planned(
        &t.store,
        &first,
        vec![new_task("x", &[]), new_task("y", &[]), new_task("z", &[])],
    )
    .await;
    let specs: Vec<String> = a.iter().map(|t| t.spec_id.to_string()).collect();
    assert_eq!(specs, ["001-task-x", "002-task-y", "003-task-z"]);
    assert!(
        a.iter()
            .all(|t| t.state == TaskState::Pending && t.version == 1)
    );
    assert!(a.iter().all(|t| t.epic_id == first.id));
    assert!(
        a.iter()
            .all(|t| (t.attempts, t.qa_rounds, t.rounds_base) == (0, 0, 0))
    );

    // Numbering is store-wide and survives a restart; keys only need to be unique per epic.
    t.reopen().await;
    let b = planned(
        &t.store,
        &second,
        vec![new_task("x", &[]), new_task("w", &["x"])],
    )
    .await;
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
async fn numbering_continues_after_min_spec_number_when_it_is_higher() {
    let t = TempStore::new().await;
    // Spec dirs 001..006 may exist on disk from an earlier database: the caller says so.
    let e1 = epic(&t.store, "after old specs").await;
    let tasks = t
        .store
        .record_plan(
            e1.id,
            e1.version,
            &plan(vec![new_task("a", &[]), new_task("b", &[])]),
            7,
            plan_decision(&e1),
        )
        .await
        .unwrap()
        .value
        .tasks;
    let specs: Vec<String> = tasks.iter().map(|t| t.spec_id.to_string()).collect();
    assert_eq!(specs, ["007-task-a", "008-task-b"]);

    // The store's highest wins when it is higher than the caller's minimum…
    let e2 = epic(&t.store, "store is ahead").await;
    let tasks = t
        .store
        .record_plan(
            e2.id,
            e2.version,
            &plan(vec![new_task("c", &[])]),
            3,
            plan_decision(&e2),
        )
        .await
        .unwrap()
        .value
        .tasks;
    assert_eq!(tasks[0].spec_id.to_string(), "009-task-c");

    // …and the minimum wins when it is higher than the store's highest; 0 and 1 mean "no floor".
    let e3 = epic(&t.store, "caller is ahead").await;
    let tasks = t
        .store
        .record_plan(
            e3.id,
            e3.version,
            &plan(vec![new_task("d", &[])]),
            120,
            plan_decision(&e3),
        )
        .await
        .unwrap()
        .value
        .tasks;
    assert_eq!(tasks[0].spec_id.to_string(), "120-task-d");
    for min in [0, 1] {
        let e = epic(&t.store, "no floor").await;
        let tasks = t
            .store
            .record_plan(
                e.id,
                e.version,
                &plan(vec![new_task("e", &[])]),
                min,
                plan_decision(&e),
            )
            .await
            .unwrap()
            .value
            .tasks;
        assert_eq!(tasks[0].spec_id.number(), 121 + min);
    }
}

#[tokio::test]
async fn depends_on_keys_become_task_ids_in_plan_order() {
    let t = TempStore::new().await;
    let e = epic(&t.store, "deps").await;
    // Listed before its dependencies, with a repeat: order kept, repeat dropped.
    let tasks = planned(
        &t.store,
        &e,
        vec![
            new_task("d", &["c", "b", "c"]),
            new_task("b", &["a"]),
            new_task("c", &["a"]),
            new_task("a", &[]),
        ],
    )
    .await;
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
async fn a_plan_commits_tasks_epic_decision_and_events_together() {
    let t = TempStore::new().await;
    let e = epic(&t.store, "plan me").await;
    // A failed planning attempt left a reason; recording the plan clears it.
    let e = t
        .store
        .update_epic(
            e.id,
            e.version,
            None,
            EpicChanges {
                blocked_reason: Some(Some("planner timed out".into())),
            },
        )
        .await
        .unwrap()
        .value;
    let head = t.store.journal_head().await.unwrap();
    let at = t.clock.peek();
    let decision = NewDecision {
        context: serde_json::json!({"tasks": 2, "model": "scripted"}),
        ..plan_decision(&e)
    };
    let committed = t
        .store
        .record_plan(
            e.id,
            e.version,
            &plan(vec![new_task("a", &[]), new_task("b", &["a"])]),
            1,
            decision.clone(),
        )
        .await
        .unwrap();

    let epic = &committed.value.epic;
    assert_eq!(epic.state, EpicState::InProgress);
    assert_eq!(epic.version, e.version + 1);
    assert_eq!(epic.blocked_reason, None);
    assert_eq!(epic.updated_at, at);
    assert_eq!(t.store.epic(e.id).await.unwrap(), *epic);
    let tasks = &committed.value.tasks;
    assert_eq!(t.store.list_tasks(Some(e.id)).await.unwrap(), *tasks);
    assert!(tasks.iter().all(|t| t.created_at == at));

    assert_eq!(
        journaled(&t.store, &committed).await,
        ["task.created", "task.created", "epic.state_changed"]
    );
    assert_eq!(committed.events[0].seq, head + 1);
    assert!(committed.events.iter().all(|s| s.at == at));
    assert_eq!(
        committed.events[1].event,
        DomainEvent::TaskCreated {
            epic_id: e.id,
            task_id: tasks[1].id,
            spec_id: tasks[1].spec_id.clone(),
            title: "Task b".into(),
            depends_on: vec![tasks[0].id],
        }
    );
    assert_eq!(
        committed.events[2].event,
        DomainEvent::EpicStateChanged {
            epic_id: e.id,
            from: EpicState::Planning,
            to: EpicState::InProgress,
        }
    );

    let decisions = t
        .store
        .list_decisions(DecisionFilter {
            epic_id: Some(e.id),
            task_id: None,
        })
        .await
        .unwrap();
    assert_eq!(decisions.len(), 1);
    let d = &decisions[0];
    assert_eq!(
        (
            &d.actor,
            &d.decision,
            &d.reasoning,
            &d.context,
            d.task_id,
            d.created_at
        ),
        (
            &decision.actor,
            &decision.decision,
            &decision.reasoning,
            &decision.context,
            None,
            at
        )
    );
}

#[tokio::test]
async fn a_second_plan_for_the_same_epic_is_refused_and_writes_nothing() {
    let mut t = TempStore::new().await;
    let e = epic(&t.store, "plan once").await;
    let first = planned(&t.store, &e, vec![new_task("a", &[])]).await;
    let head = t.store.journal_head().await.unwrap();

    // A retry that read the epic before the first plan landed: stale.
    let err = t
        .store
        .record_plan(
            e.id,
            e.version,
            &plan(vec![new_task("fresh", &[]), new_task("a", &[])]),
            1,
            plan_decision(&e),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Stale {
                kind: "epic",
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_nothing_written(&t, head, 1, 1).await;

    // One that read it afterwards: the epic is no longer `Planning`.
    t.reopen().await;
    let now = t.store.epic(e.id).await.unwrap();
    let err = t
        .store
        .record_plan(
            e.id,
            now.version,
            &plan(vec![new_task("fresh", &[])]),
            1,
            plan_decision(&now),
        )
        .await
        .unwrap_err();
    match err {
        StoreError::IllegalTransition(it) => assert_eq!(it.machine, "epic"),
        other => panic!("expected IllegalTransition, got {other:?}"),
    }
    assert_nothing_written(&t, head, 1, 1).await;
    assert_eq!(t.store.epic(e.id).await.unwrap(), now);
    assert_eq!(t.store.list_tasks(None).await.unwrap(), first);
}

#[tokio::test]
async fn a_plan_on_a_stale_epic_writes_no_task_decision_or_event() {
    let t = TempStore::new().await;
    let e = epic(&t.store, "stale plan").await;
    let moved = t
        .store
        .update_epic(e.id, e.version, None, EpicChanges::default())
        .await
        .unwrap()
        .value;
    let head = t.store.journal_head().await.unwrap();
    let err = t
        .store
        .record_plan(
            e.id,
            e.version,
            &plan(vec![new_task("a", &[]), new_task("b", &["a"])]),
            1,
            plan_decision(&e),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Stale { .. }), "{err:?}");
    assert_nothing_written(&t, head, 0, 0).await;
    assert_eq!(t.store.epic(e.id).await.unwrap(), moved);

    // A good plan afterwards starts at 001: nothing was half-written before.
    let ok = planned(&t.store, &moved, vec![new_task("a", &[])]).await;
    assert_eq!(ok[0].spec_id.number(), 1);
}

#[tokio::test]
async fn a_plan_whose_last_insert_fails_is_rolled_back_whole() {
    let t = TempStore::new().await;
    let e = epic(&t.store, "rollback").await;
    let head = t.store.journal_head().await.unwrap();
    // The decision is inserted after the epic and the tasks; a dangling epic id makes it fail.
    let err = t
        .store
        .record_plan(
            e.id,
            e.version,
            &plan(vec![new_task("a", &[]), new_task("b", &["a"])]),
            1,
            NewDecision {
                epic_id: EpicId(999),
                ..plan_decision(&e)
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_nothing_written(&t, head, 0, 0).await;
    assert_eq!(t.store.epic(e.id).await.unwrap(), e);

    let ok = planned(&t.store, &e, vec![new_task("a", &[])]).await;
    assert_eq!(ok[0].spec_id.number(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_plans_for_one_epic_record_exactly_one() {
    const RACERS: usize = 8;
    let t = TempStore::new().await;
    let e = epic(&t.store, "race to plan").await;
    let barrier = Arc::new(Barrier::new(RACERS));
    let handles: Vec<_> = (0..RACERS)
        .map(|racer| {
            let store = t.store.clone();
            let barrier = barrier.clone();
            let e = e.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let key = format!("r{racer}");
                store
                    .record_plan(
                        e.id,
                        e.version,
                        &plan(vec![new_task(&key, &[]), new_task("shared", &[&key])]),
                        1,
                        plan_decision(&e),
                    )
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for h in handles {
        match h.await.unwrap() {
            Ok(committed) => winners.push(committed),
            Err(StoreError::Stale { actual: 2, .. }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let won = &winners[0];
    assert_eq!(t.store.list_tasks(None).await.unwrap(), won.value.tasks);
    let numbers: Vec<u32> = won.value.tasks.iter().map(|t| t.spec_id.number()).collect();
    assert_eq!(numbers, [1, 2]);
    assert_eq!(t.store.list_events(0, 100).await.unwrap().len(), 1 + 3);
    assert_eq!(
        t.store
            .list_decisions(DecisionFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}
