//! The schema, as embedded migrations applied on open with sqlx's migrator (so the standard
//! `_sqlx_migrations` table records what ran and refuses edited migrations).

use std::borrow::Cow;

use factory_core::ports::StoreError;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::SqlitePool;

/// Every migration, in order. Append only: an applied migration's text must never change.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "run lease",
        include_str!("../migrations/0002_run_lease.sql"),
    ),
    (
        3,
        "task rounds",
        include_str!("../migrations/0003_task_rounds.sql"),
    ),
    (
        4,
        "conflict rounds",
        include_str!("../migrations/0004_conflict_rounds.sql"),
    ),
];

/// Applies the migrations the database has not seen yet.
pub(crate) async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
        .run(pool)
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))
}
