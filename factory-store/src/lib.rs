//! Factory's [`Store`](factory_core::ports::Store) on embedded SQLite (sqlx).
//!
//! One database file per repository (`.factory/factory.db`), in WAL mode so readers never wait for
//! the writer. Every state change is a compare-and-set inside a `BEGIN IMMEDIATE` transaction, so
//! concurrent writers (tasks in one process, or several processes on one machine) serialize on the
//! database lock and the loser sees [`StoreError::Stale`](factory_core::ports::StoreError::Stale)
//! instead of overwriting. Time only comes from the injected [`Clock`].
//!
//! This crate does not decide which transitions are legal: that is `factory-core`'s state
//! machines, called through each record's `apply`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use factory_core::ports::{Clock, StoreError};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

mod codec;
mod schema;
mod store;

use codec::backend;

/// How long a writer waits for another writer's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections per file-backed pool: a reader can go on beside a writer; writes serialize
/// anyway. Each connection has a thread of its own, with its own page cache and its own share of
/// the allocator's memory: with 4, a 500-task run's peak RSS was 2.5 MiB higher for no less CPU
/// (BENCHMARKS.md).
const MAX_CONNECTIONS: u32 = 2;

/// The SQLite-backed store. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and brings its schema up to date.
    ///
    /// The file is put in WAL mode with `synchronous=NORMAL` and foreign keys on; a writer waits
    /// up to 10 s for another writer before failing.
    pub async fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(backend)?;
        let store = Self::with_pool(pool, clock).await?;
        tracing::debug!(path = %path.display(), "store opened");
        Ok(store)
    }

    /// A private database in memory, gone when the store is dropped; for tests and dry runs.
    ///
    /// It uses a single connection (an in-memory database lives only as long as its connection),
    /// so concurrent callers queue for it.
    pub async fn in_memory(clock: Arc<dyn Clock>) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .shared_cache(false)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(backend)?;
        Self::with_pool(pool, clock).await
    }

    async fn with_pool(pool: SqlitePool, clock: Arc<dyn Clock>) -> Result<SqliteStore, StoreError> {
        schema::migrate(&pool).await?;
        Ok(SqliteStore { pool, clock })
    }

    /// Waits for in-flight operations and closes every connection, checkpointing the WAL into
    /// the main file. Clones of this store fail afterwards.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
