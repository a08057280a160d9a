//! Conversions between stored rows and domain records, and between sqlx errors and
//! [`StoreError`]. A value that does not decode is reported as corrupt, never guessed at.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::SecondsFormat;
use factory_core::Timestamp;
use factory_core::agent::{Agent, AgentId};
use factory_core::decision::{Decision, DecisionId};
use factory_core::epic::{Epic, EpicId};
use factory_core::event::DomainEvent;
use factory_core::event::StoredEvent;
use factory_core::lease::{LeaseHolder, RunLease};
use factory_core::mail::{Mail, MailId};
use factory_core::ports::StoreError;
use factory_core::task::{Task, TaskId};
use sqlx::Row;
use sqlx::error::ErrorKind;
use sqlx::sqlite::SqliteRow;

/// A stored value that the domain cannot read back.
#[derive(Debug, thiserror::Error)]
#[error(
    "corrupt value in {table}.{column}: {detail} (the database was changed outside Factory, or by a newer version of it)"
)]
pub(crate) struct CorruptValue {
    table: &'static str,
    column: &'static str,
    detail: String,
}

fn corrupt(table: &'static str, column: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Backend(Box::new(CorruptValue {
        table,
        column,
        detail: detail.to_string(),
    }))
}

/// Maps a database error. Constraint violations mean the caller passed something the schema
/// refuses (e.g. a task id that does not exist), so they become [`StoreError::Invalid`].
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    if let Some(db) = e.as_database_error() {
        match db.kind() {
            ErrorKind::ForeignKeyViolation => {
                return StoreError::Invalid(format!(
                    "it refers to a record that does not exist ({})",
                    db.message()
                ));
            }
            ErrorKind::UniqueViolation => {
                return StoreError::Invalid(format!("it already exists ({})", db.message()));
            }
            _ => {}
        }
    }
    StoreError::Backend(Box::new(e))
}

/// The stored form of a timestamp: fixed-width RFC 3339 UTC, so text order is time order.
pub(crate) fn ts(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// A version or counter as SQLite's signed integer.
pub(crate) fn int<T: TryInto<i64> + Copy + std::fmt::Display>(
    what: &str,
    value: T,
) -> Result<i64, StoreError> {
    value
        .try_into()
        .map_err(|_| StoreError::Invalid(format!("{what} {value} is too large to store")))
}

/// Typed access to one row of one table, so every decode error names its column.
pub(crate) struct RowReader<'r> {
    table: &'static str,
    row: &'r SqliteRow,
}

impl<'r> RowReader<'r> {
    pub(crate) fn new(table: &'static str, row: &'r SqliteRow) -> Self {
        RowReader { table, row }
    }

    fn get<T>(&self, column: &'static str) -> Result<T, StoreError>
    where
        T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        self.row
            .try_get::<T, _>(column)
            .map_err(|e| corrupt(self.table, column, e))
    }

    pub(crate) fn i64(&self, column: &'static str) -> Result<i64, StoreError> {
        self.get(column)
    }

    pub(crate) fn opt_i64(&self, column: &'static str) -> Result<Option<i64>, StoreError> {
        self.get(column)
    }

    pub(crate) fn text(&self, column: &'static str) -> Result<String, StoreError> {
        self.get(column)
    }

    pub(crate) fn opt_text(&self, column: &'static str) -> Result<Option<String>, StoreError> {
        self.get(column)
    }

    fn unsigned<T: TryFrom<i64>>(&self, column: &'static str) -> Result<T, StoreError> {
        let v = self.i64(column)?;
        T::try_from(v).map_err(|_| corrupt(self.table, column, format!("{v} is out of range")))
    }

    fn time(&self, column: &'static str) -> Result<Timestamp, StoreError> {
        parse_time(self.table, column, &self.text(column)?)
    }

    fn opt_time(&self, column: &'static str) -> Result<Option<Timestamp>, StoreError> {
        self.opt_text(column)?
            .map(|s| parse_time(self.table, column, &s))
            .transpose()
    }

    fn parsed<T>(&self, column: &'static str) -> Result<T, StoreError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.text(column)?
            .parse()
            .map_err(|e| corrupt(self.table, column, e))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, column: &'static str) -> Result<T, StoreError> {
        serde_json::from_str(&self.text(column)?).map_err(|e| corrupt(self.table, column, e))
    }
}

fn parse_time(table: &'static str, column: &'static str, s: &str) -> Result<Timestamp, StoreError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| corrupt(table, column, format!("`{s}`: {e}")))
}

/// JSON text of a value the domain owns (acceptance lists, decision context, events).
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("not storable as JSON: {e}")))
}

pub(crate) fn epic(row: &SqliteRow) -> Result<Epic, StoreError> {
    let r = RowReader::new("epics", row);
    Ok(Epic {
        id: EpicId(r.i64("id")?),
        title: r.text("title")?,
        text: r.text("text")?,
        state: r.parsed("state")?,
        version: r.unsigned("version")?,
        blocked_reason: r.opt_text("blocked_reason")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// A task row; `deps` maps task ids to their dependencies in plan order.
pub(crate) fn task(row: &SqliteRow, deps: &HashMap<i64, Vec<TaskId>>) -> Result<Task, StoreError> {
    let r = RowReader::new("tasks", row);
    let id = r.i64("id")?;
    Ok(Task {
        id: TaskId(id),
        epic_id: EpicId(r.i64("epic_id")?),
        key: r.text("key")?,
        spec_id: r.parsed("spec_id")?,
        title: r.text("title")?,
        description: r.text("description")?,
        acceptance: r.json("acceptance")?,
        depends_on: deps.get(&id).cloned().unwrap_or_default(),
        state: r.parsed("state")?,
        version: r.unsigned("version")?,
        attempts: r.unsigned("attempts")?,
        qa_rounds: r.unsigned("qa_rounds")?,
        rounds_base: r.unsigned("rounds_base")?,
        branch: r.opt_text("branch")?,
        pr_url: r.opt_text("pr_url")?,
        blocked_reason: r.opt_text("blocked_reason")?,
        waiting_reason: r.opt_text("waiting_reason")?,
        merge_commit: r.opt_text("merge_commit")?,
        verified_commit: r.opt_text("verified_commit")?,
        conflict_rounds: r.unsigned("conflict_rounds")?,
        conflict_files: r.json("conflict_files")?,
        round_start: r.opt_text("round_start")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// Groups `task_deps` rows (ordered by task and position) by task.
pub(crate) fn deps(rows: &[SqliteRow]) -> Result<HashMap<i64, Vec<TaskId>>, StoreError> {
    let mut map: HashMap<i64, Vec<TaskId>> = HashMap::new();
    for row in rows {
        let r = RowReader::new("task_deps", row);
        map.entry(r.i64("task_id")?)
            .or_default()
            .push(TaskId(r.i64("depends_on")?));
    }
    Ok(map)
}

pub(crate) fn agent(row: &SqliteRow) -> Result<Agent, StoreError> {
    let r = RowReader::new("agents", row);
    Ok(Agent {
        id: AgentId(r.text("id")?),
        role: r.parsed("role")?,
        state: r.parsed("state")?,
        version: r.unsigned("version")?,
        task_id: r.opt_i64("task_id")?.map(TaskId),
        updated_at: r.time("updated_at")?,
    })
}

pub(crate) fn mail(row: &SqliteRow) -> Result<Mail, StoreError> {
    let r = RowReader::new("mail", row);
    Ok(Mail {
        id: MailId(r.i64("id")?),
        from: r.text("sender")?,
        to: r.text("recipient")?,
        subject: r.text("subject")?,
        body: r.text("body")?,
        task_id: r.opt_i64("task_id")?.map(TaskId),
        created_at: r.time("created_at")?,
        read_at: r.opt_time("read_at")?,
    })
}

pub(crate) fn decision(row: &SqliteRow) -> Result<Decision, StoreError> {
    let r = RowReader::new("decisions", row);
    Ok(Decision {
        id: DecisionId(r.i64("id")?),
        epic_id: EpicId(r.i64("epic_id")?),
        task_id: r.opt_i64("task_id")?.map(TaskId),
        actor: r.text("actor")?,
        decision: r.text("decision")?,
        reasoning: r.text("reasoning")?,
        context: r.json("context")?,
        created_at: r.time("created_at")?,
    })
}

pub(crate) fn event(row: &SqliteRow) -> Result<StoredEvent, StoreError> {
    let r = RowReader::new("events", row);
    let event: DomainEvent = r.json("payload")?;
    let kind = r.text("kind")?;
    if kind != event.kind() {
        return Err(corrupt(
            "events",
            "kind",
            format!("`{kind}` does not match the payload's `{}`", event.kind()),
        ));
    }
    Ok(StoredEvent {
        seq: r.unsigned("seq")?,
        at: r.time("at")?,
        event,
    })
}

pub(crate) fn lease(row: &SqliteRow) -> Result<RunLease, StoreError> {
    let r = RowReader::new("run_lease", row);
    let pid = r.i64("pid")?;
    Ok(RunLease {
        token: r.unsigned("token")?,
        holder: LeaseHolder {
            pid: u32::try_from(pid).map_err(|_| corrupt("run_lease", "pid", pid))?,
            host: r.text("host")?,
            label: r.text("label")?,
        },
        acquired_at: r.time("acquired_at")?,
        heartbeat_at: r.time("heartbeat_at")?,
        expires_at: r.time("expires_at")?,
    })
}
