//! The journal as an outbox: every write returns the events it committed, and they are exactly
//! what the journal holds at those seqs; each kind of change announces what it means; a refused
//! write announces nothing; seqs stay 1, 2, 3, … with no gap or repeat under concurrent writers on
//! several handles; and a reader can continue from any seq.

use std::sync::Arc;

use factory_core::epic::{EpicChanges, EpicEvent, EpicState};
use factory_core::event::{DomainEvent, StoredEvent, VerifyStage};
use factory_core::mail::{HUMAN, NewMail, ORCHESTRATOR};
use factory_core::ports::{Committed, Store, StoreError};
use factory_core::task::{Task, TaskChanges, TaskEvent, TaskState};
use factory_store::SqliteStore;
use proptest::prelude::*;
use tokio::sync::Barrier;

use crate::support::{StepClock, TempStore, epic, journaled, new_task, one_task, planned};

fn note(to: &str, subject: &str) -> NewMail {
    NewMail {
        from: ORCHESTRATOR.into(),
        to: to.into(),
        subject: subject.into(),
        body: "body".into(),
        task_id: None,
    }
}

fn verify_ran(task: &Task, round: u32) -> DomainEvent {
    DomainEvent::VerifyCompleted {
        task_id: task.id,
        spec_id: task.spec_id.clone(),
        round,
        stage: VerifyStage::Qa,
        passed: true,
        exit_code: Some(0),
        duration_ms: 12,
    }
}

/// Checks that `committed`'s events continue the journal right after `head` and are what the
/// journal holds; returns their kinds and moves `head` past them.
async fn next_in_journal<T>(
    store: &SqliteStore,
    head: &mut u64,
    committed: &Committed<T>,
) -> Vec<&'static str> {
    let seqs: Vec<u64> = committed.events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (*head + 1..=*head + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "seqs continue the journal");
    let kinds = journaled(store, committed).await;
    *head += seqs.len() as u64;
    assert_eq!(store.journal_head().await.unwrap(), *head);
    kinds
}

#[tokio::test]
async fn every_write_returns_exactly_what_the_journal_holds() {
    let t = TempStore::new().await;
    let s = &t.store;
    let mut head = 0;
    assert_eq!(s.journal_head().await.unwrap(), 0);

    let at = t.clock.peek();
    let created = s
        .create_epic(factory_core::epic::NewEpic::new("# Outbox\nbody").unwrap())
        .await
        .unwrap();
    assert_eq!(
        next_in_journal(s, &mut head, &created).await,
        ["epic.created"]
    );
    assert_eq!(
        created.events[0],
        StoredEvent {
            seq: 1,
            at,
            event: DomainEvent::EpicCreated {
                epic_id: created.value.id,
                title: "Outbox".into(),
            },
        }
    );
    let e = created.value;

    // A write without a state change is journaled as nothing.
    let touched = s
        .update_epic(
            e.id,
            e.version,
            None,
            EpicChanges {
                blocked_reason: Some(Some("why not".into())),
            },
        )
        .await
        .unwrap();
    assert!(next_in_journal(s, &mut head, &touched).await.is_empty());

    let plan = s
        .record_plan(
            e.id,
            touched.value.version,
            &crate::support::plan(vec![new_task("a", &[])]),
            1,
            crate::support::plan_decision(&e),
        )
        .await
        .unwrap();
    assert_eq!(
        next_in_journal(s, &mut head, &plan).await,
        ["task.created", "epic.state_changed"]
    );
    let task = plan.value.tasks[0].clone();

    let blocked = s
        .update_epic(
            e.id,
            plan.value.epic.version,
            Some(EpicEvent::Block),
            EpicChanges::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        next_in_journal(s, &mut head, &blocked).await,
        ["epic.state_changed"]
    );
    assert_eq!(
        blocked.events[0].event,
        DomainEvent::EpicStateChanged {
            epic_id: e.id,
            from: EpicState::InProgress,
            to: EpicState::Blocked,
        }
    );

    let mail = s.send_mail(note(HUMAN, "hello")).await.unwrap();
    assert_eq!(next_in_journal(s, &mut head, &mail).await, ["mail.sent"]);

    let assigned = s
        .update_task(
            task.id,
            task.version,
            Some(TaskEvent::Assign),
            TaskChanges::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        next_in_journal(s, &mut head, &assigned).await,
        ["task.state_changed", "task.ready"]
    );

    let at = t.clock.peek();
    let appended = s.append_event(&verify_ran(&task, 1)).await.unwrap();
    assert_eq!(
        appended,
        StoredEvent {
            seq: head + 1,
            at,
            event: verify_ran(&task, 1),
        }
    );
    assert_eq!(s.list_events(head, 10).await.unwrap(), vec![appended]);
    assert_eq!(s.journal_head().await.unwrap(), head + 1);
}

/// The task's write and the events it announced, checked against the journal.
struct Walk<'a> {
    store: &'a SqliteStore,
    task: Task,
    head: u64,
}

impl Walk<'_> {
    async fn step(
        &mut self,
        event: Option<TaskEvent>,
        changes: TaskChanges,
    ) -> (Vec<&'static str>, Vec<DomainEvent>) {
        let committed = self
            .store
            .update_task(self.task.id, self.task.version, event, changes)
            .await
            .unwrap();
        let kinds = next_in_journal(self.store, &mut self.head, &committed).await;
        self.task = committed.value;
        let events = committed.events.into_iter().map(|e| e.event).collect();
        (kinds, events)
    }

    fn changed(&self, from: TaskState, to: TaskState, reason: Option<&str>) -> DomainEvent {
        DomainEvent::TaskStateChanged {
            task_id: self.task.id,
            spec_id: self.task.spec_id.clone(),
            from,
            to,
            reason: reason.map(str::to_owned),
        }
    }
}

#[tokio::test]
async fn task_writes_announce_what_they_mean() {
    use TaskState as S;
    let t = TempStore::new().await;
    let task = one_task(&t.store, "walk").await;
    let head = t.store.journal_head().await.unwrap();
    let mut w = Walk {
        store: &t.store,
        task,
        head,
    };
    let (id, spec_id) = (w.task.id, w.task.spec_id.clone());
    let none = TaskChanges::default;

    let (kinds, events) = w.step(Some(TaskEvent::Assign), none()).await;
    assert_eq!(kinds, ["task.state_changed", "task.ready"]);
    assert_eq!(
        events,
        [
            w.changed(S::Pending, S::Assigned, None),
            DomainEvent::TaskReady {
                task_id: id,
                spec_id: spec_id.clone()
            }
        ]
    );

    // Field-only writes change no state and announce nothing.
    let (kinds, _) = w
        .step(
            None,
            TaskChanges {
                attempts: Some(1),
                branch: Some(Some("factory/001-task-a".into())),
                ..none()
            },
        )
        .await;
    assert!(kinds.is_empty());

    for (event, from, to) in [
        (TaskEvent::Start, S::Assigned, S::InProgress),
        (TaskEvent::SubmitForReview, S::InProgress, S::Review),
        (TaskEvent::RequestChanges, S::Review, S::InProgress),
        (TaskEvent::SubmitForReview, S::InProgress, S::Review),
    ] {
        let (kinds, events) = w.step(Some(event), none()).await;
        assert_eq!(kinds, ["task.state_changed"], "{event}");
        assert_eq!(events, [w.changed(from, to, None)]);
    }

    let (kinds, events) = w.step(Some(TaskEvent::Approve), none()).await;
    assert_eq!(kinds, ["task.state_changed", "merge.requested"]);
    assert_eq!(
        events[1],
        DomainEvent::MergeRequested {
            task_id: id,
            spec_id: spec_id.clone()
        }
    );

    // A newly set waiting reason is announced; the same one again is not; another one is.
    let waiting = |reason: &str| TaskChanges {
        waiting_reason: Some(Some(reason.into())),
        ..TaskChanges::default()
    };
    let (kinds, events) = w.step(None, waiting("the checkout is dirty")).await;
    assert_eq!(kinds, ["merge.waiting"]);
    assert_eq!(
        events,
        [DomainEvent::MergeWaiting {
            task_id: id,
            spec_id: spec_id.clone(),
            reason: "the checkout is dirty".into()
        }]
    );
    assert!(
        w.step(None, waiting("the checkout is dirty"))
            .await
            .0
            .is_empty()
    );
    assert_eq!(
        w.step(None, waiting("main moved")).await.0,
        ["merge.waiting"]
    );
    let (kinds, _) = w
        .step(
            None,
            TaskChanges {
                waiting_reason: Some(None),
                ..none()
            },
        )
        .await;
    assert!(kinds.is_empty(), "clearing the reason is not announced");

    // Back from the queue (a re-verify failed): no merge event, then queued again and waiting in
    // the same write.
    let (kinds, _) = w.step(Some(TaskEvent::RequestChanges), none()).await;
    assert_eq!(kinds, ["task.state_changed"]);
    w.step(Some(TaskEvent::SubmitForReview), none()).await;
    let (kinds, _) = w
        .step(Some(TaskEvent::Approve), waiting("another merge first"))
        .await;
    assert_eq!(
        kinds,
        ["task.state_changed", "merge.requested", "merge.waiting"]
    );

    let (kinds, events) = w
        .step(
            Some(TaskEvent::Merged),
            TaskChanges {
                merge_commit: Some(Some("c0ffee".into())),
                waiting_reason: Some(None),
                ..none()
            },
        )
        .await;
    assert_eq!(kinds, ["task.state_changed", "merge.completed"]);
    assert_eq!(
        events,
        [
            w.changed(S::Merging, S::Completed, None),
            DomainEvent::MergeCompleted {
                task_id: id,
                spec_id,
                commit: "c0ffee".into()
            }
        ]
    );
}

#[tokio::test]
async fn blocking_failing_and_cancelling_announce_only_the_change_with_its_reason() {
    use TaskState as S;
    let t = TempStore::new().await;
    let e = epic(&t.store, "unhappy").await;
    let tasks = planned(&t.store, &e, vec![new_task("a", &[]), new_task("b", &[])]).await;
    let head = t.store.journal_head().await.unwrap();
    let mut w = Walk {
        store: &t.store,
        task: tasks[0].clone(),
        head,
    };
    w.step(Some(TaskEvent::Assign), TaskChanges::default())
        .await;
    let (kinds, events) = w
        .step(
            Some(TaskEvent::Block),
            TaskChanges::blocked("tests never pass"),
        )
        .await;
    assert_eq!(kinds, ["task.state_changed"]);
    assert_eq!(
        events,
        [w.changed(S::Assigned, S::Blocked, Some("tests never pass"))]
    );
    let (_, events) = w.step(Some(TaskEvent::Fail), TaskChanges::default()).await;
    assert_eq!(
        events,
        [w.changed(S::Blocked, S::Failed, Some("tests never pass"))]
    );

    // Merged without a merge commit (nothing to merge): no merge.completed. Cancelling a pending
    // task does not make it ready.
    let mut w = Walk {
        store: &t.store,
        task: tasks[1].clone(),
        head: w.head,
    };
    let (kinds, events) = w
        .step(Some(TaskEvent::Cancel), TaskChanges::default())
        .await;
    assert_eq!(kinds, ["task.state_changed"]);
    assert_eq!(events, [w.changed(S::Pending, S::Cancelled, None)]);

    let other = one_task(&t.store, "no commit").await;
    let mut w = Walk {
        store: &t.store,
        task: other,
        head: t.store.journal_head().await.unwrap(),
    };
    for event in [
        TaskEvent::Assign,
        TaskEvent::Start,
        TaskEvent::SubmitForReview,
        TaskEvent::Approve,
    ] {
        w.step(Some(event), TaskChanges::default()).await;
    }
    let (kinds, _) = w
        .step(Some(TaskEvent::Merged), TaskChanges::default())
        .await;
    assert_eq!(kinds, ["task.state_changed"]);
}

#[tokio::test]
async fn refused_writes_append_no_event() {
    let t = TempStore::new().await;
    let e = epic(&t.store, "refusals").await;
    let task = planned(&t.store, &e, vec![new_task("a", &[])])
        .await
        .remove(0);
    let journal = t.store.list_events(0, 100).await.unwrap();
    let head = t.store.journal_head().await.unwrap();

    let stale = t
        .store
        .update_task(
            task.id,
            task.version + 1,
            Some(TaskEvent::Assign),
            TaskChanges::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::Stale { .. }), "{stale:?}");
    let illegal = t
        .store
        .update_task(
            task.id,
            task.version,
            Some(TaskEvent::Approve),
            TaskChanges {
                waiting_reason: Some(Some("would be announced".into())),
                ..TaskChanges::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(illegal, StoreError::IllegalTransition(_)),
        "{illegal:?}"
    );
    let e = t.store.epic(e.id).await.unwrap();
    let stale = t
        .store
        .update_epic(
            e.id,
            e.version - 1,
            Some(EpicEvent::Block),
            EpicChanges::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::Stale { .. }), "{stale:?}");
    let illegal = t
        .store
        .update_epic(
            e.id,
            e.version,
            Some(EpicEvent::Planned),
            EpicChanges::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(illegal, StoreError::IllegalTransition(_)),
        "{illegal:?}"
    );

    assert_eq!(t.store.journal_head().await.unwrap(), head);
    assert_eq!(t.store.list_events(0, 100).await.unwrap(), journal);
    assert_eq!(t.store.task(task.id).await.unwrap(), task);
    assert_eq!(t.store.epic(e.id).await.unwrap(), e);
}

/// Makes the journal refuse entries of `kind`, as a full disk or a crash mid-write would.
async fn refuse_journal_entries(t: &TempStore, kind: &str) {
    let raw = t.raw().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TRIGGER refuse_{name} BEFORE INSERT ON events WHEN NEW.kind = '{kind}' \
         BEGIN SELECT RAISE(ABORT, 'journal refused {kind}'); END",
        name = kind.replace('.', "_")
    )))
    .execute(&raw)
    .await
    .unwrap();
    raw.close().await;
}

fn journal_refused(err: StoreError) {
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(err.to_string().contains("journal refused"), "{err}");
}

/// The outbox's point: when a change's journal entry cannot be written, the change is not
/// written either (and no earlier entry of the same write survives).
#[tokio::test]
async fn a_write_whose_journal_entry_fails_is_rolled_back_whole() {
    let t = TempStore::new().await;
    let e = epic(&t.store, "outbox").await;
    let task = planned(&t.store, &e, vec![new_task("a", &[])])
        .await
        .remove(0);
    let other = epic(&t.store, "not planned yet").await;
    let journal = t.store.list_events(0, 100).await.unwrap();
    let decisions = t
        .store
        .list_decisions(factory_core::decision::DecisionFilter::default())
        .await
        .unwrap();

    // task.ready is the second entry of an Assign: task.state_changed goes in first.
    refuse_journal_entries(&t, "task.ready").await;
    journal_refused(
        t.store
            .update_task(
                task.id,
                task.version,
                Some(TaskEvent::Assign),
                TaskChanges::default(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(t.store.task(task.id).await.unwrap(), task);

    // epic.state_changed is the last entry of a plan, after the tasks and the decision.
    refuse_journal_entries(&t, "epic.state_changed").await;
    journal_refused(
        t.store
            .record_plan(
                other.id,
                other.version,
                &crate::support::plan(vec![new_task("b", &[])]),
                1,
                crate::support::plan_decision(&other),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(t.store.epic(other.id).await.unwrap(), other);
    assert!(t.store.list_tasks(Some(other.id)).await.unwrap().is_empty());
    assert_eq!(
        t.store
            .list_decisions(factory_core::decision::DecisionFilter::default())
            .await
            .unwrap(),
        decisions
    );

    refuse_journal_entries(&t, "epic.created").await;
    journal_refused(
        t.store
            .create_epic(factory_core::epic::NewEpic::new("never").unwrap())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        t.store.list_epics().await.unwrap(),
        vec![t.store.epic(e.id).await.unwrap(), other]
    );

    refuse_journal_entries(&t, "mail.sent").await;
    journal_refused(t.store.send_mail(note(HUMAN, "never")).await.unwrap_err());
    assert!(
        t.store
            .list_mail(factory_core::mail::MailFilter::default())
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(t.store.list_events(0, 100).await.unwrap(), journal);
    // Entries the journal still takes go on right after the last committed one.
    let next = t.store.append_event(&verify_ran(&task, 1)).await.unwrap();
    assert_eq!(next.seq, journal.len() as u64 + 1);
}

/// One writer's successful writes' events, and how many of its writes were refused as stale.
#[derive(Default)]
struct Tally {
    events: Vec<StoredEvent>,
    stale: usize,
}

impl Tally {
    fn record<T>(&mut self, result: Result<Committed<T>, StoreError>) -> Option<T> {
        match result {
            Ok(committed) => {
                // One write, one transaction: its events are a contiguous block of the journal,
                // never interleaved with another writer's.
                let seqs: Vec<u64> = committed.events.iter().map(|e| e.seq).collect();
                if let Some(&first) = seqs.first() {
                    let block: Vec<u64> = (first..first + seqs.len() as u64).collect();
                    assert_eq!(seqs, block);
                }
                self.events.extend(committed.events);
                Some(committed.value)
            }
            Err(StoreError::Stale { .. }) => {
                self.stale += 1;
                None
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
}

/// Walks its own task to `Merging`, with a stale retry of every step, a contended write on a task
/// shared by all writers, a message and a free-standing event in between.
async fn writer(store: SqliteStore, own: Task, shared: Task, barrier: Arc<Barrier>) -> Tally {
    let mut tally = Tally::default();
    barrier.wait().await;
    let mut task = own;
    for (round, event) in [
        TaskEvent::Assign,
        TaskEvent::Start,
        TaskEvent::SubmitForReview,
        TaskEvent::Approve,
    ]
    .into_iter()
    .enumerate()
    {
        let read = task.version;
        task = tally
            .record(
                store
                    .update_task(task.id, read, Some(event), TaskChanges::default())
                    .await,
            )
            .expect("only this writer writes its own task");
        // The same step again, on the version it read before: stale.
        assert!(
            tally
                .record(
                    store
                        .update_task(task.id, read, Some(event), TaskChanges::default())
                        .await
                )
                .is_none()
        );

        // Everybody writes the shared task on whatever version they last saw.
        let seen = store.task(shared.id).await.unwrap();
        let waiting = TaskChanges {
            waiting_reason: Some(Some(format!("writer {} round {round}", task.key))),
            ..TaskChanges::default()
        };
        tally.record(
            store
                .update_task(shared.id, seen.version, None, waiting)
                .await,
        );
        tally.record(store.send_mail(note(HUMAN, &task.key)).await);
        let appended = store
            .append_event(&verify_ran(&task, u32::try_from(round).unwrap()))
            .await
            .unwrap();
        tally.events.push(appended);
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_several_handles_leave_gap_free_seqs() {
    const WRITERS: usize = 16;
    const HANDLES: usize = 4;
    let t = TempStore::new().await;
    let e = epic(&t.store, "many writers").await;
    let mut plan: Vec<_> = (0..WRITERS)
        .map(|i| new_task(&format!("w{i}"), &[]))
        .collect();
    plan.push(new_task("shared", &[]));
    let mut tasks = planned(&t.store, &e, plan).await;
    let shared = tasks.pop().unwrap();
    let setup = t.store.list_events(0, 1000).await.unwrap();
    assert_eq!(setup.len(), 1 + WRITERS + 1 + 1);

    // Separate pools on one file, as separate processes would have.
    let mut handles = vec![t.store.clone()];
    for _ in 1..HANDLES {
        handles.push(SqliteStore::open(&t.path(), t.clock.clone()).await.unwrap());
    }
    let barrier = Arc::new(Barrier::new(WRITERS));
    let running: Vec<_> = tasks
        .into_iter()
        .enumerate()
        .map(|(i, own)| {
            tokio::spawn(writer(
                handles[i % HANDLES].clone(),
                own,
                shared.clone(),
                barrier.clone(),
            ))
        })
        .collect();
    let mut committed: Vec<StoredEvent> = setup;
    let mut stale = 0;
    for r in running {
        let tally = r.await.unwrap();
        committed.extend(tally.events);
        stale += tally.stale;
    }
    // Every own-task step was retried stale once; some shared writes lost too.
    assert!(stale >= WRITERS * 4, "{stale}");

    let journal = t.store.list_events(0, 10_000).await.unwrap();
    let n = journal.len() as u64;
    let seqs: Vec<u64> = journal.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "gap-free, no repeats");
    assert_eq!(t.store.journal_head().await.unwrap(), n);
    // The journal is exactly the union of what successful writes returned: nothing lost,
    // nothing extra, nothing numbered twice.
    committed.sort_by_key(|e| e.seq);
    assert_eq!(committed, journal);
    // Each entry's time is read under the write lock, so time never goes back along the journal.
    let late: Vec<_> = journal
        .windows(2)
        .filter(|w| w[1].at < w[0].at)
        .map(|w| (w[0].seq, w[0].event.kind(), w[1].seq, w[1].event.kind()))
        .collect();
    assert!(
        late.is_empty(),
        "entries older than their predecessor: {late:?}"
    );

    // Commit order is seq order: each task's events appear in the order of its writes.
    for task in t.store.list_tasks(Some(e.id)).await.unwrap() {
        let states: Vec<TaskState> = journal
            .iter()
            .filter_map(|s| match &s.event {
                DomainEvent::TaskStateChanged { task_id, to, .. } if *task_id == task.id => {
                    Some(*to)
                }
                _ => None,
            })
            .collect();
        if task.id == shared.id {
            assert!(states.is_empty());
            assert_eq!(task.state, TaskState::Pending);
        } else {
            use TaskState as S;
            assert_eq!(states, [S::Assigned, S::InProgress, S::Review, S::Merging]);
            assert_eq!(task.state, TaskState::Merging);
        }
    }
    // Every successful shared write set a new reason, so each one was announced once.
    let shared_now = t.store.task(shared.id).await.unwrap();
    let waits = journal
        .iter()
        .filter(|s| matches!(&s.event, DomainEvent::MergeWaiting { task_id, .. } if *task_id == shared.id))
        .count();
    assert_eq!(waits as u64, shared_now.version - shared.version);
    assert!(waits >= 1);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// From any seq, with any limit and in pages of any size, a reader gets exactly the rest of
    /// the journal in order.
    #[test]
    fn a_reader_continues_from_any_seq(
        mails in 0..20usize,
        after in 0..25u64,
        limit in 0..25u32,
        page in 1..8u32,
    ) {
        runtime().block_on(async {
            let store = SqliteStore::in_memory(Arc::new(StepClock::default())).await.unwrap();
            // A journal of mixed entries: an epic, a plan, messages.
            let task = one_task(&store, "reader").await;
            for i in 0..mails {
                store.send_mail(note(HUMAN, &format!("m{i}"))).await.unwrap();
                if i % 3 == 0 {
                    store.append_event(&verify_ran(&task, u32::try_from(i).unwrap())).await.unwrap();
                }
            }
            let all = store.list_events(0, u32::MAX).await.unwrap();
            let head = store.journal_head().await.unwrap();
            prop_assert_eq!(all.len() as u64, head);
            let suffix: Vec<StoredEvent> = all.iter().filter(|e| e.seq > after).cloned().collect();
            prop_assert_eq!(suffix.len() as u64, head.saturating_sub(after));

            let got = store.list_events(after, limit).await.unwrap();
            let want: Vec<StoredEvent> = suffix.iter().take(limit as usize).cloned().collect();
            prop_assert_eq!(got, want);

            let mut paged = Vec::new();
            let mut from = after;
            loop {
                let batch = store.list_events(from, page).await.unwrap();
                prop_assert!(batch.len() <= page as usize);
                let Some(last) = batch.last() else { break };
                from = last.seq;
                paged.extend(batch);
            }
            prop_assert_eq!(paged, suffix);
            Ok(())
        })?;
    }
}
