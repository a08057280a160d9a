//! A controllable clock, temp-file stores, plan builders and journal checks.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::TimeZone;
use factory_core::Timestamp;
use factory_core::decision::NewDecision;
use factory_core::epic::{Epic, NewEpic};
use factory_core::lease::LeaseHolder;
use factory_core::mail::ORCHESTRATOR;
use factory_core::plan::Plan;
use factory_core::ports::{Clock, Committed, Store};
use factory_core::task::{NewTask, Task};
use factory_store::SqliteStore;
use tempfile::TempDir;

/// Advances one second (plus the base's nanoseconds, so sub-second precision is exercised) on
/// every reading, so every write gets a distinct, predictable time.
#[derive(Debug, Default)]
pub struct StepClock {
    ticks: AtomicI64,
}

impl StepClock {
    pub fn base() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2025, 3, 4, 5, 6, 7)
            .unwrap()
            .checked_add_signed(chrono::Duration::nanoseconds(123_456_789))
            .unwrap()
    }

    /// The time the next `now()` returns.
    pub fn peek(&self) -> Timestamp {
        Self::base() + chrono::Duration::seconds(self.ticks.load(Ordering::SeqCst))
    }

    /// Moves time forward by `seconds` without a reading, e.g. past a lease's expiry.
    pub fn advance(&self, seconds: i64) {
        self.ticks.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for StepClock {
    fn now(&self) -> Timestamp {
        Self::base() + chrono::Duration::seconds(self.ticks.fetch_add(1, Ordering::SeqCst))
    }
}

/// A store on a fresh file in a temp dir; keep the dir alive for as long as the store.
pub struct TempStore {
    pub dir: TempDir,
    pub clock: Arc<StepClock>,
    pub store: SqliteStore,
}

impl TempStore {
    pub async fn new() -> TempStore {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(StepClock::default());
        let store = SqliteStore::open(&dir.path().join("factory.db"), clock.clone())
            .await
            .unwrap();
        TempStore { dir, clock, store }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("factory.db")
    }

    /// Closes the store and opens the same file again, as a restarted process would.
    pub async fn reopen(&mut self) {
        self.store.close().await;
        self.store = SqliteStore::open(&self.path(), self.clock.clone())
            .await
            .unwrap();
    }

    /// A raw connection to the same file, for looking under the store.
    pub async fn raw(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new().filename(self.path()),
        )
        .await
        .unwrap()
    }
}

/// A new epic in `Planning`.
pub async fn epic(store: &SqliteStore, text: &str) -> Epic {
    store
        .create_epic(NewEpic::new(text).unwrap())
        .await
        .unwrap()
        .value
}

pub fn new_task(key: &str, deps: &[&str]) -> NewTask {
    NewTask {
        key: key.into(),
        title: format!("Task {key}"),
        description: format!("Build {key}."),
        acceptance: vec![format!("{key} works"), format!("{key} is tested")],
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
    }
}

/// A plan the core accepts.
pub fn plan(tasks: Vec<NewTask>) -> Plan {
    Plan::new(tasks).unwrap()
}

/// The orchestrator's decision to plan `epic`.
pub fn plan_decision(epic: &Epic) -> NewDecision {
    NewDecision {
        epic_id: epic.id,
        task_id: None,
        actor: ORCHESTRATOR.into(),
        decision: format!("planned epic {}", epic.id),
        reasoning: "the planner split it".into(),
        context: serde_json::json!({"epic": epic.id.0}),
    }
}

/// Records `tasks` as the plan of `epic` (read at its current version) and returns the tasks.
pub async fn planned(store: &SqliteStore, epic: &Epic, tasks: Vec<NewTask>) -> Vec<Task> {
    store
        .record_plan(epic.id, epic.version, &plan(tasks), 1, plan_decision(epic))
        .await
        .unwrap()
        .value
        .tasks
}

/// A planned epic's single task.
pub async fn one_task(store: &SqliteStore, text: &str) -> Task {
    let e = epic(store, text).await;
    planned(store, &e, vec![new_task("a", &[])]).await.remove(0)
}

pub fn holder(pid: u32) -> LeaseHolder {
    LeaseHolder {
        pid,
        host: format!("host-{pid}"),
        label: "factory run".into(),
    }
}

/// The journal's event kinds of `committed`, after checking they are exactly what the journal
/// holds at their seqs.
pub async fn journaled<T>(store: &SqliteStore, committed: &Committed<T>) -> Vec<&'static str> {
    if let Some(first) = committed.events.first() {
        let stored = store
            .list_events(
                first.seq - 1,
                u32::try_from(committed.events.len()).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            stored, committed.events,
            "returned events differ from the journal"
        );
    }
    committed.events.iter().map(|e| e.event.kind()).collect()
}
