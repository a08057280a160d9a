//! Property tests: whatever events arrive, the stored task state is exactly the state machine's
//! fold over the accepted ones, each accepted change is journaled and each refused one is not,
//! and a write on any version but the current one is refused.

use std::sync::Arc;

use factory_core::event::DomainEvent;
use factory_core::ports::{Store, StoreError};
use factory_core::task::{Task, TaskChanges, TaskEvent, TaskState};
use factory_store::SqliteStore;
use proptest::prelude::*;

use crate::support::StepClock;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn one_task() -> (SqliteStore, Task) {
    let store = SqliteStore::in_memory(Arc::new(StepClock::default()))
        .await
        .unwrap();
    let task = crate::support::one_task(&store, "prop").await;
    (store, task)
}

fn task_event() -> impl Strategy<Value = TaskEvent> {
    proptest::sample::select(TaskEvent::ALL)
}

/// Any events, legal or not; 40 steps reach every state often enough.
fn events() -> impl Strategy<Value = Vec<TaskEvent>> {
    proptest::collection::vec(task_event(), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn stored_state_is_the_fold_of_accepted_events(events in events()) {
        runtime().block_on(async {
            let (store, task) = one_task().await;
            let mut model = TaskState::Pending;
            let mut version = task.version;
            let mut head = store.journal_head().await.unwrap();
            for (i, event) in events.iter().enumerate() {
                let result = store
                    .update_task(
                        task.id,
                        version,
                        Some(*event),
                        TaskChanges { attempts: Some(u32::try_from(i).unwrap()), ..TaskChanges::default() },
                    )
                    .await;
                match (model.transition(*event), result) {
                    (Ok(next), Ok(written)) => {
                        prop_assert_eq!(written.value.state, next);
                        prop_assert_eq!(written.value.version, version + 1);
                        // Every accepted event is a state change here (no transition is a
                        // self-loop), announced first and numbered right after the last entry.
                        let first = written.events.first().map(|e| &e.event);
                        let announced = matches!(
                            first,
                            Some(DomainEvent::TaskStateChanged { from, to, .. })
                                if *from == model && *to == next
                        );
                        prop_assert!(announced, "{model} -> {next}: {first:?}");
                        let seqs: Vec<u64> = written.events.iter().map(|e| e.seq).collect();
                        let expected: Vec<u64> =
                            (head + 1..=head + seqs.len() as u64).collect();
                        prop_assert_eq!(seqs, expected);
                        head += written.events.len() as u64;
                        model = next;
                        version += 1;
                    }
                    (Err(_), Err(StoreError::IllegalTransition(_))) => {}
                    (expected, got) => {
                        prop_assert!(false, "{model} + {event}: model {expected:?}, store {got:?}");
                    }
                }
                prop_assert_eq!(store.journal_head().await.unwrap(), head);
                let stored = store.task(task.id).await.unwrap();
                prop_assert_eq!(stored.state, model);
                prop_assert_eq!(stored.version, version);
                prop_assert!(TaskState::ALL.contains(&stored.state));
            }
            Ok(())
        })?;
    }

    #[test]
    fn any_version_but_the_current_one_is_refused(
        events in events(),
        wrong in any::<u64>(),
        event in task_event(),
    ) {
        runtime().block_on(async {
            let (store, task) = one_task().await;
            let mut current = task;
            for event in events {
                if let Ok(next) = store
                    .update_task(current.id, current.version, Some(event), TaskChanges::default())
                    .await
                {
                    current = next.value;
                }
            }
            let head = store.journal_head().await.unwrap();
            let wrong = if wrong == current.version { wrong.wrapping_add(1) } else { wrong };
            let result = store
                .update_task(current.id, wrong, Some(event), TaskChanges::blocked("stale"))
                .await;
            match result {
                Err(StoreError::Stale { expected, actual, .. }) => {
                    prop_assert_eq!(expected, wrong);
                    prop_assert_eq!(actual, current.version);
                }
                other => prop_assert!(false, "version {wrong} (current {}): {other:?}", current.version),
            }
            prop_assert_eq!(store.task(current.id).await.unwrap(), current);
            prop_assert_eq!(store.journal_head().await.unwrap(), head);
            Ok(())
        })?;
    }
}
