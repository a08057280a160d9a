use factory_core::agent::{AgentEvent, AgentState};
use factory_core::epic::{EpicEvent, EpicState};
use factory_core::task::{TaskEvent, TaskState};
use proptest::prelude::*;

/// The edges of DESIGN §3's diagrams (plus Merging and the documented back-edges), written out
/// independently of the `transition` functions so the two must agree.
fn task_edges() -> Vec<(TaskState, TaskEvent, TaskState)> {
    use TaskEvent as E;
    use TaskState as S;
    let mut edges = vec![
        (S::Pending, E::Assign, S::Assigned),
        (S::Assigned, E::Start, S::InProgress),
        (S::InProgress, E::SubmitForReview, S::Review),
        (S::Review, E::RequestChanges, S::InProgress),
        (S::Merging, E::RequestChanges, S::InProgress),
        (S::Review, E::Approve, S::Merging),
        (S::Merging, E::Merged, S::Completed),
        (S::Blocked, E::Unblock, S::Assigned),
        (S::Blocked, E::Fail, S::Failed),
    ];
    for s in [S::Assigned, S::InProgress, S::Review, S::Merging] {
        edges.push((s, E::Block, S::Blocked));
    }
    for s in [
        S::Pending,
        S::Assigned,
        S::InProgress,
        S::Review,
        S::Merging,
        S::Blocked,
    ] {
        edges.push((s, E::Cancel, S::Cancelled));
    }
    edges
}

fn epic_edges() -> Vec<(EpicState, EpicEvent, EpicState)> {
    use EpicEvent as E;
    use EpicState as S;
    vec![
        (S::Planning, E::Planned, S::InProgress),
        (S::InProgress, E::Block, S::Blocked),
        (S::Blocked, E::Unblock, S::InProgress),
        (S::InProgress, E::Complete, S::Completed),
        (S::Blocked, E::Complete, S::Completed),
        (S::Planning, E::Cancel, S::Cancelled),
        (S::InProgress, E::Cancel, S::Cancelled),
        (S::Blocked, E::Cancel, S::Cancelled),
    ]
}

#[test]
fn task_transition_accepts_exactly_the_diagram() {
    let edges = task_edges();
    for &from in TaskState::ALL {
        for &event in TaskEvent::ALL {
            let expected = edges
                .iter()
                .find(|(f, e, _)| *f == from && *e == event)
                .map(|(_, _, to)| *to);
            assert_eq!(from.transition(event).ok(), expected, "{from} + {event}");
        }
    }
}

#[test]
fn epic_transition_accepts_exactly_the_diagram() {
    let edges = epic_edges();
    for &from in EpicState::ALL {
        for &event in EpicEvent::ALL {
            let expected = edges
                .iter()
                .find(|(f, e, _)| *f == from && *e == event)
                .map(|(_, _, to)| *to);
            assert_eq!(from.transition(event).ok(), expected, "{from} + {event}");
        }
    }
}

#[test]
fn terminal_states_have_no_exit() {
    for &s in TaskState::ALL.iter().filter(|s| s.is_terminal()) {
        for &e in TaskEvent::ALL {
            assert!(s.transition(e).is_err(), "{s} + {e} should be refused");
        }
    }
    for &s in EpicState::ALL.iter().filter(|s| s.is_terminal()) {
        for &e in EpicEvent::ALL {
            assert!(s.transition(e).is_err(), "{s} + {e} should be refused");
        }
    }
}

#[test]
fn states_round_trip_through_their_names() {
    for &s in TaskState::ALL {
        assert_eq!(s.as_str().parse::<TaskState>(), Ok(s));
    }
    for &s in EpicState::ALL {
        assert_eq!(s.as_str().parse::<EpicState>(), Ok(s));
    }
    for &s in AgentState::ALL {
        assert_eq!(s.as_str().parse::<AgentState>(), Ok(s));
    }
    assert!("bogus".parse::<TaskState>().is_err());
}

fn task_event() -> impl Strategy<Value = TaskEvent> {
    prop::sample::select(TaskEvent::ALL.to_vec())
}
fn epic_event() -> impl Strategy<Value = EpicEvent> {
    prop::sample::select(EpicEvent::ALL.to_vec())
}
fn agent_event() -> impl Strategy<Value = AgentEvent> {
    prop::sample::select(AgentEvent::ALL.to_vec())
}
fn agent_state() -> impl Strategy<Value = AgentState> {
    prop::sample::select(AgentState::ALL.to_vec())
}

proptest! {
    #[test]
    fn random_task_events_stay_on_the_diagram(events in prop::collection::vec(task_event(), 0..60)) {
        let edges = task_edges();
        let mut state = TaskState::Pending;
        for e in events {
            match state.transition(e) {
                Ok(next) => {
                    prop_assert!(edges.contains(&(state, e, next)), "{state} + {e} -> {next} is off the diagram");
                    state = next;
                }
                Err(err) => {
                    prop_assert!(!edges.iter().any(|(f, ev, _)| *f == state && *ev == e));
                    prop_assert_eq!(err.machine, "task");
                }
            }
        }
    }

    #[test]
    fn random_epic_events_stay_on_the_diagram(events in prop::collection::vec(epic_event(), 0..40)) {
        let edges = epic_edges();
        let mut state = EpicState::Planning;
        for e in events {
            if let Ok(next) = state.transition(e) {
                prop_assert!(edges.contains(&(state, e, next)));
                state = next;
            }
        }
    }

    #[test]
    fn random_agent_events_stay_on_the_diagram(events in prop::collection::vec(agent_event(), 0..40)) {
        use AgentState as S;
        let mut state = S::Idle;
        for e in events {
            if let Ok(next) = state.transition(e) {
                let legal = matches!(
                    (state, next),
                    (S::Idle, S::Busy) | (S::Busy, S::Idle) | (S::Busy, S::Waiting)
                        | (S::Waiting, S::Busy) | (S::Waiting, S::Idle) | (_, S::Failed) | (S::Failed, S::Idle)
                );
                prop_assert!(legal, "{state} -> {next} via {e}");
                state = next;
            }
        }
    }

    #[test]
    fn agent_path_to_reaches_any_target_legally(from in agent_state(), to in agent_state()) {
        let mut state = from;
        for e in from.path_to(to) {
            state = state.transition(*e).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        prop_assert_eq!(state, to);
    }

    #[test]
    fn stale_task_apply_is_caught_by_version(events in prop::collection::vec(task_event(), 1..20)) {
        // `apply` always bumps the version by one, so a writer holding an older copy can be told
        // apart by version alone (the store's compare-and-set relies on this).
        let now = chrono::Utc::now();
        let mut task = sample_task(now);
        for e in events {
            if let Ok(next) = task.apply(Some(e), Default::default(), now) {
                prop_assert_eq!(next.version, task.version + 1);
                task = next;
            } else {
                prop_assert!(task.state.transition(e).is_err());
            }
        }
    }
}

fn sample_task(now: chrono::DateTime<chrono::Utc>) -> factory_core::task::Task {
    use factory_core::epic::EpicId;
    use factory_core::spec::SpecId;
    use factory_core::task::{Task, TaskId};
    Task {
        id: TaskId(1),
        epic_id: EpicId(1),
        key: "k".into(),
        spec_id: SpecId::new(1, "k"),
        title: "k".into(),
        description: String::new(),
        acceptance: vec![],
        depends_on: vec![],
        state: TaskState::Pending,
        version: 1,
        attempts: 0,
        qa_rounds: 0,
        rounds_base: 0,
        branch: None,
        pr_url: None,
        blocked_reason: None,
        waiting_reason: None,
        merge_commit: None,
        verified_commit: None,
        conflict_rounds: 0,
        conflict_files: Vec::new(),
        round_start: None,
        created_at: now,
        updated_at: now,
    }
}
