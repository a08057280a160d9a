//! Mail, the decision log and the event journal.

use factory_core::agent::{AgentId, AgentRole};
use factory_core::decision::{DecisionFilter, NewDecision};
use factory_core::epic::{EpicId, EpicState};
use factory_core::event::{DomainEvent, Verdict};
use factory_core::mail::{HUMAN, MailFilter, MailId, NewMail, ORCHESTRATOR};
use factory_core::ports::{Store, StoreError};
use factory_core::task::{TaskId, TaskState};
use serde_json::json;

use crate::support::{TempStore, epic, journaled, new_task, one_task, planned};

fn mail(to: &str, subject: &str, task: Option<TaskId>) -> NewMail {
    NewMail {
        from: ORCHESTRATOR.into(),
        to: to.into(),
        subject: subject.into(),
        body: format!("body of {subject}\nsecond line"),
        task_id: task,
    }
}

#[tokio::test]
async fn mail_is_filtered_oldest_first_and_read_once() {
    let mut t = TempStore::new().await;
    let task = one_task(&t.store, "mail").await;
    let worker = AgentId::new(AgentRole::Worker, &task.spec_id).to_string();

    let mut sent = Vec::new();
    for (to, subject, task_id) in [
        (HUMAN, "one", None),
        (worker.as_str(), "two", Some(task.id)),
        (HUMAN, "three", Some(task.id)),
    ] {
        let committed = t.store.send_mail(mail(to, subject, task_id)).await.unwrap();
        // Each message announces itself, in the same transaction.
        assert_eq!(journaled(&t.store, &committed).await, ["mail.sent"]);
        let m = &committed.value;
        assert_eq!(
            committed.events[0].event,
            DomainEvent::MailSent {
                mail_id: m.id,
                from: ORCHESTRATOR.into(),
                to: to.into(),
                subject: subject.into(),
            }
        );
        assert_eq!(committed.events[0].at, m.created_at);
        sent.push(committed.value);
    }
    let [m1, m2, m3] = <[_; 3]>::try_from(sent).unwrap();
    assert!(m1.created_at < m2.created_at && m2.created_at < m3.created_at);
    assert_eq!(m1.read_at, None);

    let all = t.store.list_mail(MailFilter::default()).await.unwrap();
    assert_eq!(all, vec![m1.clone(), m2.clone(), m3.clone()]);
    let to_human = MailFilter {
        to: Some(HUMAN.into()),
        unread_only: false,
    };
    assert_eq!(
        t.store.list_mail(to_human.clone()).await.unwrap(),
        vec![m1.clone(), m3.clone()]
    );

    let read_at = t.clock.peek();
    t.store.mark_mail_read(m1.id).await.unwrap();
    // Idempotent: the first read time stays.
    t.store.mark_mail_read(m1.id).await.unwrap();

    let unread_human = MailFilter {
        to: Some(HUMAN.into()),
        unread_only: true,
    };
    assert_eq!(
        t.store.list_mail(unread_human).await.unwrap(),
        vec![m3.clone()]
    );
    let unread = MailFilter {
        to: None,
        unread_only: true,
    };
    assert_eq!(t.store.list_mail(unread).await.unwrap(), vec![m2, m3]);

    t.reopen().await;
    let first = t.store.list_mail(to_human).await.unwrap().remove(0);
    assert_eq!(first.read_at, Some(read_at));
    assert_eq!(first.body, "body of one\nsecond line");

    let err = t.store.mark_mail_read(MailId(999)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "mail", .. }),
        "{err:?}"
    );
    let head = t.store.journal_head().await.unwrap();
    let err = t
        .store
        .send_mail(mail(HUMAN, "dangling", Some(TaskId(999))))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(t.store.journal_head().await.unwrap(), head);
    assert_eq!(
        t.store
            .list_mail(MailFilter::default())
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn decisions_are_filtered_by_epic_and_task() {
    let mut t = TempStore::new().await;
    let e1 = epic(&t.store, "one").await;
    let e2 = epic(&t.store, "two").await;
    let tasks = planned(&t.store, &e1, vec![new_task("a", &[]), new_task("b", &[])]).await;
    // The plan's own decision comes first.
    let d0 = t
        .store
        .list_decisions(DecisionFilter::default())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(d0.epic_id, e1.id);
    let decide = |epic_id: EpicId, task_id: Option<TaskId>, what: &str| NewDecision {
        epic_id,
        task_id,
        actor: ORCHESTRATOR.into(),
        decision: what.into(),
        reasoning: format!("because {what}"),
        context: json!({"round": 2, "verdict": "approve", "files": ["a.rs", "b.rs"], "nested": {"ok": true, "n": null}}),
    };
    let d1 = t
        .store
        .record_decision(decide(e1.id, None, "plan"))
        .await
        .unwrap();
    let d2 = t
        .store
        .record_decision(decide(e1.id, Some(tasks[0].id), "approve a"))
        .await
        .unwrap();
    let d3 = t
        .store
        .record_decision(decide(e2.id, None, "plan two"))
        .await
        .unwrap();
    let d4 = t
        .store
        .record_decision(decide(e1.id, Some(tasks[1].id), "retry b"))
        .await
        .unwrap();

    t.reopen().await;
    let list = |f: DecisionFilter| {
        let store = t.store.clone();
        async move { store.list_decisions(f).await.unwrap() }
    };
    assert_eq!(
        list(DecisionFilter::default()).await,
        vec![d0.clone(), d1.clone(), d2.clone(), d3.clone(), d4.clone()]
    );
    assert_eq!(
        list(DecisionFilter {
            epic_id: Some(e1.id),
            task_id: None
        })
        .await,
        vec![d0, d1, d2.clone(), d4.clone()]
    );
    assert_eq!(
        list(DecisionFilter {
            epic_id: Some(e2.id),
            task_id: None
        })
        .await,
        vec![d3]
    );
    assert_eq!(
        list(DecisionFilter {
            epic_id: None,
            task_id: Some(tasks[1].id)
        })
        .await,
        vec![d4]
    );
    assert_eq!(
        list(DecisionFilter {
            epic_id: Some(e2.id),
            task_id: Some(tasks[0].id)
        })
        .await,
        vec![]
    );
    assert_eq!(d2.context["nested"]["ok"], json!(true));

    let err = t
        .store
        .record_decision(decide(EpicId(999), None, "orphan"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn events_get_consecutive_seqs_and_round_trip() {
    let mut t = TempStore::new().await;
    let e = epic(&t.store, "events").await;
    let task = planned(&t.store, &e, vec![new_task("a", &[])])
        .await
        .remove(0);
    // epic.created, task.created, epic.state_changed
    let journal_before = t.store.list_events(0, 100).await.unwrap();
    assert_eq!(journal_before.len(), 3);
    assert_eq!(t.store.journal_head().await.unwrap(), 3);
    let events = vec![
        DomainEvent::EpicCreated {
            epic_id: e.id,
            title: e.title.clone(),
        },
        DomainEvent::EpicStateChanged {
            epic_id: e.id,
            from: EpicState::Planning,
            to: EpicState::InProgress,
        },
        DomainEvent::TaskCreated {
            epic_id: e.id,
            task_id: task.id,
            spec_id: task.spec_id.clone(),
            title: task.title.clone(),
            depends_on: vec![TaskId(7), TaskId(8)],
        },
        DomainEvent::TaskStateChanged {
            task_id: task.id,
            spec_id: task.spec_id.clone(),
            from: TaskState::Review,
            to: TaskState::InProgress,
            reason: Some("tests fail".into()),
        },
        DomainEvent::QaReported {
            task_id: task.id,
            spec_id: task.spec_id.clone(),
            round: 2,
            verdict: Verdict::ChangesRequested,
            summary: "missing test — ünïcode".into(),
        },
        DomainEvent::MailSent {
            mail_id: MailId(3),
            from: HUMAN.into(),
            to: "worker/001-task-a".into(),
            subject: "hi".into(),
        },
    ];
    let mut times = Vec::new();
    let mut seqs = Vec::new();
    for ev in &events {
        times.push(t.clock.peek());
        let stored = t.store.append_event(ev).await.unwrap();
        assert_eq!((&stored.event, stored.at), (ev, *times.last().unwrap()));
        seqs.push(stored.seq);
    }
    let first = seqs[0];
    assert_eq!(first, 4, "appends continue the journal without a gap");
    assert_eq!(seqs, (first..first + 6).collect::<Vec<_>>());

    t.reopen().await;
    assert_eq!(t.store.journal_head().await.unwrap(), seqs[5]);
    let all = t.store.list_events(0, 100).await.unwrap();
    assert_eq!(all[..3], journal_before[..]);
    let stored = &all[3..];
    assert_eq!(stored.len(), 6);
    for (i, s) in stored.iter().enumerate() {
        assert_eq!(s.seq, seqs[i]);
        assert_eq!(s.event, events[i]);
        assert_eq!(s.at, times[i]);
    }

    let page = t.store.list_events(seqs[1], 2).await.unwrap();
    let page_seqs: Vec<u64> = page.iter().map(|s| s.seq).collect();
    assert_eq!(page_seqs, [seqs[2], seqs[3]]);
    assert!(t.store.list_events(seqs[5], 10).await.unwrap().is_empty());
    assert!(t.store.list_events(u64::MAX, 10).await.unwrap().is_empty());
    assert!(t.store.list_events(0, 0).await.unwrap().is_empty());

    let next = t.store.append_event(&events[0]).await.unwrap();
    assert_eq!(next.seq, seqs[5] + 1, "seqs continue after a reopen");
    assert_eq!(t.store.journal_head().await.unwrap(), next.seq);
}
