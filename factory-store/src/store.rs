//! [`Store`] for [`SqliteStore`]. Writes that read before they write run in `BEGIN IMMEDIATE`
//! transactions: SQLite then hands out its single write lock up front, so two compare-and-sets on
//! the same record serialize and the second one sees the first one's version.

use std::fmt::Display;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Datelike;
use factory_core::Timestamp;
use factory_core::agent::{Agent, AgentEvent, AgentId, AgentRole, AgentState};
use factory_core::decision::{Decision, DecisionFilter, DecisionId, NewDecision};
use factory_core::epic::{Epic, EpicChanges, EpicEvent, EpicId, EpicState, NewEpic};
use factory_core::event::{DomainEvent, StoredEvent, journal};
use factory_core::lease::{LeaseHolder, RunLease};
use factory_core::mail::{Mail, MailFilter, MailId, NewMail};
use factory_core::plan::Plan;
use factory_core::ports::{Committed, PlannedEpic, Store, StoreError};
use factory_core::spec::SpecId;
use factory_core::task::{Task, TaskChanges, TaskEvent, TaskId, TaskState};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Sqlite, Transaction};

use crate::SqliteStore;
use crate::codec::{self, RowReader, backend, int, to_json, ts};

macro_rules! epic_columns {
    () => {
        "id, title, text, state, version, blocked_reason, created_at, updated_at"
    };
}

macro_rules! task_columns {
    () => {
        "id, epic_id, key, spec_id, title, description, acceptance, state, version, attempts, \
         qa_rounds, rounds_base, branch, pr_url, blocked_reason, waiting_reason, merge_commit, \
         verified_commit, conflict_rounds, conflict_files, round_start, created_at, updated_at"
    };
}

macro_rules! agent_columns {
    () => {
        "id, role, state, version, task_id, updated_at"
    };
}

macro_rules! mail_columns {
    () => {
        "id, sender, recipient, subject, body, task_id, created_at, read_at"
    };
}

macro_rules! decision_columns {
    () => {
        "id, epic_id, task_id, actor, decision, reasoning, context, created_at"
    };
}

/// The version every new epic, task and agent starts at.
const FIRST_VERSION: u64 = 1;

fn not_found(kind: &'static str, id: impl Display) -> StoreError {
    StoreError::NotFound {
        kind,
        id: id.to_string(),
    }
}

fn stale(kind: &'static str, id: impl Display, expected: u64, actual: u64) -> StoreError {
    StoreError::Stale {
        kind,
        id: id.to_string(),
        expected,
        actual,
    }
}

/// A compare-and-set's first check: the caller's version must be the stored one.
fn expect_version(
    kind: &'static str,
    id: impl Display,
    expected: u64,
    actual: u64,
) -> Result<(), StoreError> {
    if expected == actual {
        Ok(())
    } else {
        Err(stale(kind, id, expected, actual))
    }
}

/// A compare-and-set's check after its write: the `UPDATE … WHERE id = ? AND version = ? AND
/// state = ?` must have matched exactly one row, else someone wrote first and the transaction is
/// dropped (rolled back) by the caller's `?`.
fn check_cas(
    written: &sqlx::sqlite::SqliteQueryResult,
    kind: &'static str,
    id: impl Display,
    expected: u64,
    actual: u64,
) -> Result<(), StoreError> {
    if written.rows_affected() != 1 {
        return Err(stale(kind, id, expected, actual));
    }
    Ok(())
}

/// Appends `events` to the journal inside the caller's write transaction. Sequence numbers are
/// the next integers after the journal's highest: the transaction holds SQLite's write lock, so
/// no other writer can take the same numbers, and a rolled-back write leaves no gap.
async fn append_journal(
    tx: &mut SqliteConnection,
    at: Timestamp,
    events: Vec<DomainEvent>,
) -> Result<Vec<StoredEvent>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut stored = Vec::with_capacity(events.len());
    for event in events {
        // The next number and the row in one statement.
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO events (seq, at, kind, payload) \
             SELECT COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM events RETURNING seq",
        )
        .bind(ts(at))
        .bind(event.kind())
        .bind(to_json(&event)?)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let seq = u64::try_from(seq)
            .map_err(|_| StoreError::Backend(format!("events.seq: {seq} is negative").into()))?;
        stored.push(StoredEvent { seq, at, event });
    }
    Ok(stored)
}

/// Appends the journal entries and commits.
async fn commit_with<T>(
    mut tx: Transaction<'static, Sqlite>,
    at: Timestamp,
    value: T,
    events: Vec<DomainEvent>,
) -> Result<Committed<T>, StoreError> {
    let events = append_journal(&mut tx, at, events).await?;
    tx.commit().await.map_err(backend)?;
    Ok(Committed { value, events })
}

impl SqliteStore {
    /// A transaction that holds SQLite's write lock from its first statement. Writers read the
    /// clock only once they hold it, so stored times (and journal times) follow commit order.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }
}

async fn load_epic(conn: &mut SqliteConnection, id: EpicId) -> Result<Epic, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        epic_columns!(),
        " FROM epics WHERE id = ?"
    ))
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?
    .ok_or_else(|| not_found("epic", id))?;
    codec::epic(&row)
}

/// The task in `row`, with its dependencies.
async fn task_with_deps(conn: &mut SqliteConnection, row: SqliteRow) -> Result<Task, StoreError> {
    let id = RowReader::new("tasks", &row).i64("id")?;
    let deps = sqlx::query(
        "SELECT task_id, depends_on FROM task_deps WHERE task_id = ? ORDER BY position",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    codec::task(&row, &codec::deps(&deps)?)
}

async fn load_task(conn: &mut SqliteConnection, id: TaskId) -> Result<Task, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        task_columns!(),
        " FROM tasks WHERE id = ?"
    ))
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?
    .ok_or_else(|| not_found("task", id))?;
    task_with_deps(conn, row).await
}

async fn load_agent(
    conn: &mut SqliteConnection,
    id: &AgentId,
) -> Result<Option<Agent>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        agent_columns!(),
        " FROM agents WHERE id = ?"
    ))
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?
    .map(|row| codec::agent(&row))
    .transpose()
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_epic(&self, new: NewEpic) -> Result<Committed<Epic>, StoreError> {
        let title = new.title();
        let state = EpicState::Planning;
        let mut tx = self.begin_write().await?;
        let now = self.clock.now();
        let id = sqlx::query(
            "INSERT INTO epics (title, text, state, version, blocked_reason, created_at, updated_at) \
             VALUES (?, ?, ?, ?, NULL, ?, ?)",
        )
        .bind(&title)
        .bind(new.text())
        .bind(state.as_str())
        .bind(int("version", FIRST_VERSION)?)
        .bind(ts(now))
        .bind(ts(now))
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .last_insert_rowid();
        let epic = Epic {
            id: EpicId(id),
            title,
            text: new.text().to_owned(),
            state,
            version: FIRST_VERSION,
            blocked_reason: None,
            created_at: now,
            updated_at: now,
        };
        let events = journal::epic_created(&epic);
        commit_with(tx, now, epic, events).await
    }

    async fn epic(&self, id: EpicId) -> Result<Epic, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        load_epic(&mut conn, id).await
    }

    async fn list_epics(&self) -> Result<Vec<Epic>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            epic_columns!(),
            " FROM epics ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(codec::epic)
        .collect()
    }

    async fn update_epic(
        &self,
        id: EpicId,
        expected_version: u64,
        event: Option<EpicEvent>,
        changes: EpicChanges,
    ) -> Result<Committed<Epic>, StoreError> {
        let mut tx = self.begin_write().await?;
        let current = load_epic(&mut tx, id).await?;
        expect_version("epic", id, expected_version, current.version)?;
        let now = self.clock.now();
        let next = current.apply(event, changes, now)?;
        let written = sqlx::query(
            "UPDATE epics SET state = ?, version = ?, blocked_reason = ?, updated_at = ? \
             WHERE id = ? AND version = ? AND state = ?",
        )
        .bind(next.state.as_str())
        .bind(int("version", next.version)?)
        .bind(next.blocked_reason.as_deref())
        .bind(ts(next.updated_at))
        .bind(id.0)
        .bind(int("version", current.version)?)
        .bind(current.state.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        check_cas(&written, "epic", id, expected_version, current.version)?;
        let events = journal::epic_changed(&current, &next);
        commit_with(tx, now, next, events).await
    }

    async fn record_plan(
        &self,
        epic_id: EpicId,
        expected_version: u64,
        plan: &Plan,
        min_spec_number: u32,
        decision: NewDecision,
    ) -> Result<Committed<PlannedEpic>, StoreError> {
        let mut tx = self.begin_write().await?;
        let current = load_epic(&mut tx, epic_id).await?;
        expect_version("epic", epic_id, expected_version, current.version)?;
        let now = self.clock.now();
        let epic = current.apply(
            Some(EpicEvent::Planned),
            EpicChanges {
                blocked_reason: Some(None),
            },
            now,
        )?;
        let written = sqlx::query(
            "UPDATE epics SET state = ?, version = ?, blocked_reason = NULL, updated_at = ? \
             WHERE id = ? AND version = ? AND state = ?",
        )
        .bind(epic.state.as_str())
        .bind(int("version", epic.version)?)
        .bind(ts(now))
        .bind(epic_id.0)
        .bind(int("version", current.version)?)
        .bind(current.state.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        check_cas(&written, "epic", epic_id, expected_version, current.version)?;

        let highest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(spec_number), 0) FROM tasks")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let highest = u32::try_from(highest).map_err(|_| {
            StoreError::Backend(format!("tasks.spec_number: {highest} is out of range").into())
        })?;
        let first = highest.max(min_spec_number.saturating_sub(1));

        let mut created: Vec<Task> = Vec::with_capacity(plan.tasks().len());
        for (offset, new) in plan.tasks().iter().enumerate() {
            let number = u32::try_from(offset)
                .ok()
                .and_then(|o| first.checked_add(o)?.checked_add(1))
                .ok_or_else(|| StoreError::Invalid("too many tasks for spec numbering".into()))?;
            let spec_id = SpecId::new(number, &new.title);
            let state = TaskState::Pending;
            let id = sqlx::query(
                "INSERT INTO tasks (epic_id, key, spec_number, spec_id, title, description, \
                 acceptance, state, version, attempts, qa_rounds, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?)",
            )
            .bind(epic_id.0)
            .bind(&new.key)
            .bind(i64::from(number))
            .bind(spec_id.to_string())
            .bind(&new.title)
            .bind(&new.description)
            .bind(to_json(&new.acceptance)?)
            .bind(state.as_str())
            .bind(int("version", FIRST_VERSION)?)
            .bind(ts(now))
            .bind(ts(now))
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .last_insert_rowid();
            created.push(Task {
                id: TaskId(id),
                epic_id,
                key: new.key.clone(),
                spec_id,
                title: new.title.clone(),
                description: new.description.clone(),
                acceptance: new.acceptance.clone(),
                depends_on: Vec::new(),
                state,
                version: FIRST_VERSION,
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
            });
        }
        for i in 0..created.len() {
            let ids: Vec<TaskId> = plan
                .dependencies(i)
                .iter()
                .map(|&j| created[j].id)
                .collect();
            for (position, dep) in ids.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO task_deps (task_id, depends_on, position) VALUES (?, ?, ?)",
                )
                .bind(created[i].id.0)
                .bind(dep.0)
                .bind(int("position", position)?)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            created[i].depends_on = ids;
        }
        insert_decision(&mut tx, &decision, now).await?;

        let mut events: Vec<DomainEvent> = created.iter().flat_map(journal::task_created).collect();
        events.extend(journal::epic_changed(&current, &epic));
        commit_with(
            tx,
            now,
            PlannedEpic {
                epic,
                tasks: created,
            },
            events,
        )
        .await
    }

    async fn task(&self, id: TaskId) -> Result<Task, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        load_task(&mut conn, id).await
    }

    async fn task_by_spec(&self, spec: &SpecId) -> Result<Task, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        let row = sqlx::query(concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE spec_id = ?"
        ))
        .bind(spec.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?
        .ok_or_else(|| not_found("task", spec))?;
        task_with_deps(&mut conn, row).await
    }

    async fn list_tasks(&self, epic: Option<EpicId>) -> Result<Vec<Task>, StoreError> {
        let epic = epic.map(|e| e.0);
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE (? IS NULL OR epic_id = ?) ORDER BY spec_number"
        ))
        .bind(epic)
        .bind(epic)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        // Dependencies are written with their task and never change, so reading them second
        // cannot miss any for the tasks just read.
        let deps = sqlx::query(
            "SELECT d.task_id, d.depends_on FROM task_deps d JOIN tasks t ON t.id = d.task_id \
             WHERE (? IS NULL OR t.epic_id = ?) ORDER BY d.task_id, d.position",
        )
        .bind(epic)
        .bind(epic)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        let deps = codec::deps(&deps)?;
        rows.iter().map(|row| codec::task(row, &deps)).collect()
    }

    async fn list_unfinished_tasks(&self) -> Result<Vec<Task>, StoreError> {
        // One read transaction: both queries see the same tasks, even if one completes meanwhile.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE state <> 'completed' ORDER BY spec_number"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let deps = sqlx::query(
            "SELECT d.task_id, d.depends_on FROM task_deps d JOIN tasks t ON t.id = d.task_id \
             WHERE t.state <> 'completed' ORDER BY d.task_id, d.position",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        let deps = codec::deps(&deps)?;
        rows.iter().map(|row| codec::task(row, &deps)).collect()
    }

    async fn update_task(
        &self,
        id: TaskId,
        expected_version: u64,
        event: Option<TaskEvent>,
        changes: TaskChanges,
    ) -> Result<Committed<Task>, StoreError> {
        let mut tx = self.begin_write().await?;
        let current = load_task(&mut tx, id).await?;
        expect_version("task", id, expected_version, current.version)?;
        let now = self.clock.now();
        let next = current.apply(event, changes, now)?;
        let written = sqlx::query(
            "UPDATE tasks SET state = ?, version = ?, attempts = ?, qa_rounds = ?, \
             rounds_base = ?, branch = ?, pr_url = ?, blocked_reason = ?, waiting_reason = ?, \
             merge_commit = ?, verified_commit = ?, conflict_rounds = ?, conflict_files = ?, \
             round_start = ?, updated_at = ? \
             WHERE id = ? AND version = ? AND state = ?",
        )
        .bind(next.state.as_str())
        .bind(int("version", next.version)?)
        .bind(i64::from(next.attempts))
        .bind(i64::from(next.qa_rounds))
        .bind(i64::from(next.rounds_base))
        .bind(next.branch.as_deref())
        .bind(next.pr_url.as_deref())
        .bind(next.blocked_reason.as_deref())
        .bind(next.waiting_reason.as_deref())
        .bind(next.merge_commit.as_deref())
        .bind(next.verified_commit.as_deref())
        .bind(i64::from(next.conflict_rounds))
        .bind(to_json(&next.conflict_files)?)
        .bind(next.round_start.as_deref())
        .bind(ts(next.updated_at))
        .bind(id.0)
        .bind(int("version", current.version)?)
        .bind(current.state.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        check_cas(&written, "task", id, expected_version, current.version)?;
        let events = journal::task_changed(&current, &next);
        commit_with(tx, now, next, events).await
    }

    /// Setting a different task counts as a write (version bumped, `updated_at` set), so a
    /// compare-and-set based on the old assignment is refused; asking for what is already stored
    /// writes nothing. An existing agent with another role is refused: the role is part of the id.
    async fn ensure_agent(
        &self,
        id: &AgentId,
        role: AgentRole,
        task: Option<TaskId>,
    ) -> Result<Agent, StoreError> {
        // Usually the agent is there already, as wanted: a read settles that without the write
        // lock. (Its version still guards the caller's next write.)
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        if let Some(current) = load_agent(&mut conn, id).await?
            && current.role == role
            && current.task_id == task
        {
            return Ok(current);
        }
        drop(conn);
        let mut tx = self.begin_write().await?;
        let agent = match load_agent(&mut tx, id).await? {
            Some(current) if current.role != role => {
                return Err(StoreError::Invalid(format!(
                    "agent {id} exists with role {}, not {role}",
                    current.role
                )));
            }
            Some(current) if current.task_id == task => return Ok(current),
            Some(current) => {
                let next = Agent {
                    task_id: task,
                    version: current.version + 1,
                    updated_at: self.clock.now(),
                    ..current.clone()
                };
                sqlx::query(
                    "UPDATE agents SET task_id = ?, version = ?, updated_at = ? \
                     WHERE id = ? AND version = ?",
                )
                .bind(task.map(|t| t.0))
                .bind(int("version", next.version)?)
                .bind(ts(next.updated_at))
                .bind(id.as_str())
                .bind(int("version", current.version)?)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                next
            }
            None => {
                let agent = Agent {
                    id: id.clone(),
                    role,
                    state: AgentState::Idle,
                    version: FIRST_VERSION,
                    task_id: task,
                    updated_at: self.clock.now(),
                };
                sqlx::query(
                    "INSERT INTO agents (id, role, state, version, task_id, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(id.as_str())
                .bind(role.as_str())
                .bind(agent.state.as_str())
                .bind(int("version", agent.version)?)
                .bind(task.map(|t| t.0))
                .bind(ts(agent.updated_at))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                agent
            }
        };
        tx.commit().await.map_err(backend)?;
        Ok(agent)
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            agent_columns!(),
            " FROM agents ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(codec::agent)
        .collect()
    }

    async fn update_agent(
        &self,
        id: &AgentId,
        expected_version: u64,
        event: AgentEvent,
    ) -> Result<Agent, StoreError> {
        let mut tx = self.begin_write().await?;
        let current = load_agent(&mut tx, id)
            .await?
            .ok_or_else(|| not_found("agent", id))?;
        expect_version("agent", id, expected_version, current.version)?;
        let next = current.apply(event, self.clock.now())?;
        let written = sqlx::query(
            "UPDATE agents SET state = ?, version = ?, updated_at = ? \
             WHERE id = ? AND version = ? AND state = ?",
        )
        .bind(next.state.as_str())
        .bind(int("version", next.version)?)
        .bind(ts(next.updated_at))
        .bind(id.as_str())
        .bind(int("version", current.version)?)
        .bind(current.state.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        check_cas(&written, "agent", id, expected_version, current.version)?;
        tx.commit().await.map_err(backend)?;
        Ok(next)
    }

    async fn send_mail(&self, new: NewMail) -> Result<Committed<Mail>, StoreError> {
        let mut tx = self.begin_write().await?;
        let now = self.clock.now();
        let id = sqlx::query(
            "INSERT INTO mail (sender, recipient, subject, body, task_id, created_at, read_at) \
             VALUES (?, ?, ?, ?, ?, ?, NULL)",
        )
        .bind(&new.from)
        .bind(&new.to)
        .bind(&new.subject)
        .bind(&new.body)
        .bind(new.task_id.map(|t| t.0))
        .bind(ts(now))
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .last_insert_rowid();
        let mail = Mail {
            id: MailId(id),
            from: new.from,
            to: new.to,
            subject: new.subject,
            body: new.body,
            task_id: new.task_id,
            created_at: now,
            read_at: None,
        };
        let events = journal::mail_sent(&mail);
        commit_with(tx, now, mail, events).await
    }

    async fn list_mail(&self, filter: MailFilter) -> Result<Vec<Mail>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            mail_columns!(),
            " FROM mail WHERE (? IS NULL OR recipient = ?) AND (? = 0 OR read_at IS NULL) \
             ORDER BY id"
        ))
        .bind(filter.to.as_deref())
        .bind(filter.to.as_deref())
        .bind(filter.unread_only)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(codec::mail)
        .collect()
    }

    /// The first read time is kept; marking again changes nothing.
    async fn mark_mail_read(&self, id: MailId) -> Result<(), StoreError> {
        let matched = sqlx::query("UPDATE mail SET read_at = COALESCE(read_at, ?) WHERE id = ?")
            .bind(ts(self.clock.now()))
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(backend)?
            .rows_affected();
        if matched == 0 {
            return Err(not_found("mail", id.0));
        }
        Ok(())
    }

    async fn record_decision(&self, new: NewDecision) -> Result<Decision, StoreError> {
        let now = self.clock.now();
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        let id = insert_decision(&mut conn, &new, now).await?;
        Ok(Decision {
            id,
            epic_id: new.epic_id,
            task_id: new.task_id,
            actor: new.actor,
            decision: new.decision,
            reasoning: new.reasoning,
            context: new.context,
            created_at: now,
        })
    }

    async fn list_decisions(&self, filter: DecisionFilter) -> Result<Vec<Decision>, StoreError> {
        let epic = filter.epic_id.map(|e| e.0);
        let task = filter.task_id.map(|t| t.0);
        sqlx::query(concat!(
            "SELECT ",
            decision_columns!(),
            " FROM decisions WHERE (? IS NULL OR epic_id = ?) AND (? IS NULL OR task_id = ?) \
             ORDER BY id"
        ))
        .bind(epic)
        .bind(epic)
        .bind(task)
        .bind(task)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(codec::decision)
        .collect()
    }

    async fn append_event(&self, event: &DomainEvent) -> Result<StoredEvent, StoreError> {
        let tx = self.begin_write().await?;
        let now = self.clock.now();
        let committed = commit_with(tx, now, (), vec![event.clone()]).await?;
        committed.events.into_iter().next().ok_or_else(|| {
            StoreError::Backend("the journal returned no entry for an appended event".into())
        })
    }

    async fn list_events(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        // Past i64::MAX there is nothing: SQLite cannot hold such a seq.
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        sqlx::query("SELECT seq, at, kind, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(codec::event)
            .collect()
    }

    async fn journal_head(&self) -> Result<u64, StoreError> {
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        u64::try_from(last)
            .map_err(|_| StoreError::Backend(format!("events.seq: {last} is negative").into()))
    }

    async fn acquire_run_lease(
        &self,
        holder: LeaseHolder,
        ttl: Duration,
    ) -> Result<RunLease, StoreError> {
        let mut tx = self.begin_write().await?;
        let now = self.clock.now();
        let current = load_lease(&mut tx).await?;
        if let Some(lease) = &current
            && lease.is_live(now)
        {
            return Err(StoreError::LeaseHeld(Box::new(lease.clone())));
        }
        let lease = RunLease {
            token: current.map_or(1, |l| l.token + 1),
            holder,
            acquired_at: now,
            heartbeat_at: now,
            expires_at: expiry(now, ttl)?,
        };
        sqlx::query(
            "INSERT INTO run_lease (id, token, pid, host, label, acquired_at, heartbeat_at, \
             expires_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET \
             token = excluded.token, pid = excluded.pid, host = excluded.host, \
             label = excluded.label, acquired_at = excluded.acquired_at, \
             heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
        )
        .bind(int("token", lease.token)?)
        .bind(i64::from(lease.holder.pid))
        .bind(&lease.holder.host)
        .bind(&lease.holder.label)
        .bind(ts(lease.acquired_at))
        .bind(ts(lease.heartbeat_at))
        .bind(ts(lease.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(lease)
    }

    async fn renew_run_lease(&self, token: u64, ttl: Duration) -> Result<RunLease, StoreError> {
        let mut tx = self.begin_write().await?;
        let now = self.clock.now();
        let Some(mut lease) = load_lease(&mut tx).await? else {
            return Err(StoreError::LeaseLost { token });
        };
        if lease.token != token || !lease.is_live(now) {
            return Err(StoreError::LeaseLost { token });
        }
        lease.heartbeat_at = now;
        lease.expires_at = expiry(now, ttl)?;
        sqlx::query(
            "UPDATE run_lease SET heartbeat_at = ?, expires_at = ? WHERE id = 1 AND token = ?",
        )
        .bind(ts(lease.heartbeat_at))
        .bind(ts(lease.expires_at))
        .bind(int("token", token)?)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(lease)
    }

    async fn release_run_lease(&self, token: u64) -> Result<(), StoreError> {
        let now = self.clock.now();
        sqlx::query(
            "UPDATE run_lease SET expires_at = ? WHERE id = 1 AND token = ? AND expires_at > ?",
        )
        .bind(ts(now))
        .bind(int("token", token)?)
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn run_lease(&self) -> Result<Option<RunLease>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        load_lease(&mut conn).await
    }
}

/// The last year whose timestamps [`ts`] writes in fixed width (a later one gets a `+` and a
/// fifth digit: it would not read back, nor compare in time order).
const LAST_STORABLE_YEAR: i32 = 9999;

fn expiry(now: Timestamp, ttl: Duration) -> Result<Timestamp, StoreError> {
    chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .filter(|t| t.year() <= LAST_STORABLE_YEAR)
        .ok_or_else(|| StoreError::Invalid(format!("lease duration {ttl:?} is too long")))
}

async fn load_lease(conn: &mut SqliteConnection) -> Result<Option<RunLease>, StoreError> {
    sqlx::query(
        "SELECT token, pid, host, label, acquired_at, heartbeat_at, expires_at \
         FROM run_lease WHERE id = 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?
    .map(|row| codec::lease(&row))
    .transpose()
}

async fn insert_decision(
    conn: &mut SqliteConnection,
    new: &NewDecision,
    now: Timestamp,
) -> Result<DecisionId, StoreError> {
    let id = sqlx::query(
        "INSERT INTO decisions (epic_id, task_id, actor, decision, reasoning, context, \
         created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(new.epic_id.0)
    .bind(new.task_id.map(|t| t.0))
    .bind(&new.actor)
    .bind(&new.decision)
    .bind(&new.reasoning)
    .bind(to_json(&new.context)?)
    .bind(ts(now))
    .execute(&mut *conn)
    .await
    .map_err(backend)?
    .last_insert_rowid();
    Ok(DecisionId(id))
}
