//! The run loop's decisions as a pure function: given the tasks as stored and what is running,
//! which tasks become ready, which pipelines and which merge to start, and what to do when
//! nothing can start. No I/O, no clock of its own: the caller passes `now`.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use crate::task::{Task, TaskId, TaskState};

/// What the run loop has in flight.
#[derive(Debug, Clone, Default)]
pub(crate) struct Running {
    /// Tasks whose worker → review → verify pipeline is running.
    pub pipelines: HashSet<TaskId>,
    /// The task going through the merge queue, if any (one at a time).
    pub merging: Option<TaskId>,
    /// Merges that wait on the user's checkout, and when to try each again.
    pub retry_merge_at: BTreeMap<TaskId, Instant>,
    /// How many times in a row each of those merges has waited.
    pub merge_waits: BTreeMap<TaskId, u32>,
}

/// Times in a row a merge may wait before, without `--wait`, the run ends and reports it: a git
/// command of the user's holding a lock for a moment must not end the run.
pub(crate) const MERGE_WAIT_GRACE: u32 = 3;

/// One thing to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Every dependency is merged: `Pending → Assigned`.
    Assign(TaskId),
    /// Start the task's pipeline.
    Pipeline(TaskId),
    /// Start the task's merge.
    Merge(TaskId),
}

/// What to do after starting `steps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Wait for a running job to finish.
    AwaitJob,
    /// Nothing runs; sleep until this instant, then retry a waiting merge.
    RetryAt(Instant),
    /// Nothing runs and nothing can start: the run is over.
    Finish,
}

/// The scheduler's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// Started in this order.
    pub steps: Vec<Step>,
    /// Afterwards.
    pub then: Then,
}

/// How the scheduler is configured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Pipelines at once.
    pub max_parallel: usize,
    /// Keep retrying merges that wait on the user's checkout when nothing else can move
    /// (`factory run --wait`); otherwise the run ends and reports them.
    pub wait_for_checkout: bool,
}

/// Decides what to start. `tasks` are the run's scope (tasks of open epics); completed ones
/// may be left out, since a dependency that is not among `tasks` counts as completed.
pub(crate) fn schedule(
    tasks: &[Task],
    running: &Running,
    limits: Limits,
    now: Instant,
) -> Schedule {
    let unfinished: HashSet<TaskId> = tasks
        .iter()
        .filter(|t| t.state != TaskState::Completed)
        .map(|t| t.id)
        .collect();
    // Approved tasks the merge queue can take now (not those waiting on the user's checkout).
    // New work starts only while there are fewer than `max_parallel` of them: when merging is
    // what holds the run up, starting more only piles up worktrees whose branches each need a
    // longer rebase (main moves with every merge in between) and a re-verify, and finishes
    // nothing sooner.
    let merge_backlog = tasks
        .iter()
        .filter(|t| t.state == TaskState::Merging && !running.retry_merge_at.contains_key(&t.id))
        .count();
    let may_start_new = merge_backlog < limits.max_parallel.max(1);
    let mut steps = Vec::new();
    let mut pipelines = running.pipelines.len();
    for task in tasks {
        let ready = task.state == TaskState::Pending
            && task.depends_on.iter().all(|d| !unfinished.contains(d));
        if ready {
            steps.push(Step::Assign(task.id));
        }
        let new = ready || task.state == TaskState::Assigned;
        let needs_pipeline = new || matches!(task.state, TaskState::InProgress | TaskState::Review);
        if needs_pipeline
            && (may_start_new || !new)
            && !running.pipelines.contains(&task.id)
            && pipelines < limits.max_parallel.max(1)
        {
            pipelines += 1;
            steps.push(Step::Pipeline(task.id));
        }
    }
    let mut merging = running.merging.is_some();
    if !merging {
        // A pipeline that just approved its task may still be finishing; merge it after.
        let next = tasks.iter().find(|t| {
            t.state == TaskState::Merging
                && !running.pipelines.contains(&t.id)
                && running
                    .retry_merge_at
                    .get(&t.id)
                    .is_none_or(|at| *at <= now)
        });
        if let Some(task) = next {
            merging = true;
            steps.push(Step::Merge(task.id));
        }
    }
    let busy = pipelines > 0 || merging;
    let then = if busy {
        Then::AwaitJob
    } else {
        // Without `--wait`, only merges still within their grace are tried again.
        let waiting = tasks.iter().filter(|t| {
            t.state == TaskState::Merging
                && (limits.wait_for_checkout
                    || running.merge_waits.get(&t.id).copied().unwrap_or(0) < MERGE_WAIT_GRACE)
        });
        match waiting
            .filter_map(|t| running.retry_merge_at.get(&t.id))
            .min()
        {
            Some(at) => Then::RetryAt(*at),
            None => Then::Finish,
        }
    };
    Schedule { steps, then }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::epic::EpicId;
    use crate::spec::SpecId;

    fn task(id: i64, state: TaskState, deps: &[i64]) -> Task {
        let now = chrono::DateTime::UNIX_EPOCH;
        Task {
            id: TaskId(id),
            epic_id: EpicId(1),
            key: format!("k{id}"),
            spec_id: SpecId::new(u32::try_from(id).unwrap(), "t"),
            title: "t".into(),
            description: String::new(),
            acceptance: vec![],
            depends_on: deps.iter().copied().map(TaskId).collect(),
            state,
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

    const LIMITS: Limits = Limits {
        max_parallel: 2,
        wait_for_checkout: false,
    };

    #[test]
    fn ready_tasks_are_assigned_and_started_up_to_the_limit() {
        use TaskState::*;
        let tasks = [
            task(1, Pending, &[]),
            task(2, Pending, &[]),
            task(3, Pending, &[]),
            task(4, Pending, &[1]),
        ];
        let s = schedule(&tasks, &Running::default(), LIMITS, Instant::now());
        assert_eq!(
            s.steps,
            vec![
                Step::Assign(TaskId(1)),
                Step::Pipeline(TaskId(1)),
                Step::Assign(TaskId(2)),
                Step::Pipeline(TaskId(2)),
                Step::Assign(TaskId(3)),
            ]
        );
        assert_eq!(s.then, Then::AwaitJob);
    }

    #[test]
    fn a_dependent_task_waits_until_every_dependency_is_completed() {
        use TaskState::*;
        let tasks = [
            task(1, Completed, &[]),
            task(2, Merging, &[]),
            task(3, Pending, &[1, 2]),
        ];
        let running = Running {
            merging: Some(TaskId(2)),
            ..Running::default()
        };
        let s = schedule(&tasks, &running, LIMITS, Instant::now());
        assert!(s.steps.is_empty(), "{:?}", s.steps);
        assert_eq!(s.then, Then::AwaitJob);
        let tasks = [
            task(1, Completed, &[]),
            task(2, Completed, &[]),
            task(3, Pending, &[1, 2]),
        ];
        let s = schedule(&tasks, &Running::default(), LIMITS, Instant::now());
        assert_eq!(
            s.steps,
            vec![Step::Assign(TaskId(3)), Step::Pipeline(TaskId(3))]
        );
    }

    #[test]
    fn a_dependency_left_out_of_the_scope_counts_as_completed() {
        use TaskState::*;
        let tasks = [task(2, Cancelled, &[]), task(3, Pending, &[1, 2])];
        let s = schedule(&tasks, &Running::default(), LIMITS, Instant::now());
        assert!(s.steps.is_empty(), "a cancelled dependency holds it");
        let tasks = [task(3, Pending, &[1])];
        let s = schedule(&tasks, &Running::default(), LIMITS, Instant::now());
        assert_eq!(
            s.steps,
            vec![Step::Assign(TaskId(3)), Step::Pipeline(TaskId(3))]
        );
    }

    #[test]
    fn one_merge_at_a_time_and_never_while_its_pipeline_runs() {
        use TaskState::*;
        let tasks = [task(1, Merging, &[]), task(2, Merging, &[])];
        let running = Running {
            pipelines: [TaskId(1)].into(),
            ..Running::default()
        };
        let s = schedule(&tasks, &running, LIMITS, Instant::now());
        assert_eq!(s.steps, vec![Step::Merge(TaskId(2))]);
        let running = Running {
            merging: Some(TaskId(2)),
            ..Running::default()
        };
        let s = schedule(&tasks, &running, LIMITS, Instant::now());
        assert!(s.steps.is_empty());
    }

    #[test]
    fn blocked_and_failed_tasks_start_nothing_and_the_run_finishes() {
        use TaskState::*;
        let tasks = [
            task(1, Blocked, &[]),
            task(2, Failed, &[]),
            task(3, Pending, &[1]),
        ];
        let s = schedule(&tasks, &Running::default(), LIMITS, Instant::now());
        assert!(s.steps.is_empty());
        assert_eq!(s.then, Then::Finish);
    }

    #[test]
    fn waiting_merges_end_the_run_unless_told_to_wait() {
        use TaskState::*;
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let tasks = [task(1, Merging, &[]), task(2, Completed, &[])];
        // Within its grace (a lock held for a moment), a waiting merge is tried again.
        let fresh = Running {
            retry_merge_at: [(TaskId(1), later)].into(),
            merge_waits: [(TaskId(1), MERGE_WAIT_GRACE - 1)].into(),
            ..Running::default()
        };
        let s = schedule(&tasks, &fresh, LIMITS, now);
        assert!(s.steps.is_empty());
        assert_eq!(s.then, Then::RetryAt(later));
        // Past it, the run ends and reports it.
        let running = Running {
            retry_merge_at: [(TaskId(1), later)].into(),
            merge_waits: [(TaskId(1), MERGE_WAIT_GRACE)].into(),
            ..Running::default()
        };
        let s = schedule(&tasks, &running, LIMITS, now);
        assert!(s.steps.is_empty());
        assert_eq!(s.then, Then::Finish);
        let wait = Limits {
            wait_for_checkout: true,
            ..LIMITS
        };
        assert_eq!(
            schedule(&tasks, &running, wait, now).then,
            Then::RetryAt(later)
        );
        // Once the retry time has come, the merge starts again.
        let s = schedule(&tasks, &running, wait, later);
        assert_eq!(s.steps, vec![Step::Merge(TaskId(1))]);
    }

    #[test]
    fn new_tasks_wait_while_the_merge_queue_is_full_but_started_ones_go_on() {
        use TaskState::*;
        let tasks = [
            task(1, Merging, &[]),
            task(2, Merging, &[]),
            task(3, Review, &[]),
            task(4, Assigned, &[]),
            task(5, Pending, &[]),
        ];
        let s = schedule(&tasks, &Running::default(), LIMITS, Instant::now());
        assert_eq!(
            s.steps,
            vec![
                Step::Pipeline(TaskId(3)),
                Step::Assign(TaskId(5)),
                Step::Merge(TaskId(1)),
            ]
        );
        // A merge waiting on the user's checkout does not hold new work up.
        let running = Running {
            retry_merge_at: [(TaskId(2), Instant::now() + Duration::from_secs(5))].into(),
            ..Running::default()
        };
        let s = schedule(&tasks, &running, LIMITS, Instant::now());
        assert_eq!(
            s.steps,
            vec![
                Step::Pipeline(TaskId(3)),
                Step::Pipeline(TaskId(4)),
                Step::Assign(TaskId(5)),
                Step::Merge(TaskId(1)),
            ]
        );
    }

    #[test]
    fn interrupted_tasks_resume_in_the_state_they_were_left() {
        use TaskState::*;
        let tasks = [
            task(1, InProgress, &[]),
            task(2, Review, &[]),
            task(3, Assigned, &[]),
        ];
        let s = schedule(&tasks, &Running::default(), LIMITS, Instant::now());
        assert_eq!(
            s.steps,
            vec![Step::Pipeline(TaskId(1)), Step::Pipeline(TaskId(2))]
        );
    }
}
