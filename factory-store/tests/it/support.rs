//! A controllable clock, temp-file stores and plan builders.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::TimeZone;
use factory_core::Timestamp;
use factory_core::epic::{Epic, NewEpic};
use factory_core::ports::{Clock, Store};
use factory_core::task::NewTask;
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

pub async fn epic(store: &SqliteStore, text: &str) -> Epic {
    store
        .create_epic(NewEpic { text: text.into() })
        .await
        .unwrap()
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
