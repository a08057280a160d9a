//! The run loop's view of the tasks it schedules, kept from one turn to the next: read in full
//! on the first turn and then at most once a second, and in between only the tasks whose jobs
//! ended (the loop's own writes it records as it makes them). A turn then costs the same
//! however many tasks the run has; what other processes change (a task cancelled or retried, an
//! epic cancelled) is seen within a second, as before, and a stale view can start nothing
//! wrong: every write is a compare-and-set.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::task::{Task, TaskId, TaskState};

use super::{Factory, OrchestrateError};

/// Unfinished tasks of open epics (cancelled ones included: they hold their dependents), in
/// spec order, as the scheduler takes them.
pub(super) struct Scope {
    tasks: Vec<Task>,
    stale: HashSet<TaskId>,
    read_at: Option<Instant>,
    every: Duration,
}

impl Scope {
    /// A view read in full at least every `every`.
    pub(super) fn new(every: Duration) -> Scope {
        Scope {
            tasks: Vec::new(),
            stale: HashSet::new(),
            read_at: None,
            every,
        }
    }

    /// Brings the view up to date: in full when due, else the stale tasks. Returns the ids of
    /// cancelled tasks, whose jobs must stop.
    pub(super) async fn refresh(
        &mut self,
        factory: &Factory,
    ) -> Result<Vec<TaskId>, OrchestrateError> {
        if self.read_at.is_none_or(|at| at.elapsed() >= self.every) {
            let (tasks, cancelled) = factory.runnable_scope().await?;
            self.tasks = tasks;
            self.stale.clear();
            self.read_at = Some(Instant::now());
            return Ok(cancelled);
        }
        let mut cancelled = Vec::new();
        for id in std::mem::take(&mut self.stale) {
            let task = factory.store_ref().task(id).await?;
            if task.state == TaskState::Cancelled {
                cancelled.push(id);
            }
            self.put(task);
        }
        Ok(cancelled)
    }

    /// How long until the next full read is due.
    pub(super) fn until_due(&self) -> Duration {
        self.read_at
            .map_or(Duration::ZERO, |at| self.every.saturating_sub(at.elapsed()))
    }

    /// The tasks.
    pub(super) fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// One task, if in view.
    pub(super) fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// Records `task` as just written or read. A completed task leaves the view (the scheduler
    /// takes a dependency it does not see as completed); one not in view stays out (its epic is
    /// not open).
    pub(super) fn put(&mut self, task: Task) {
        if let Some(i) = self.tasks.iter().position(|t| t.id == task.id) {
            if task.state == TaskState::Completed {
                self.tasks.remove(i);
            } else {
                self.tasks[i] = task;
            }
        }
    }

    /// Marks a task as changed elsewhere (by its job): read it again on the next refresh.
    pub(super) fn stale(&mut self, id: TaskId) {
        self.stale.insert(id);
    }
}
