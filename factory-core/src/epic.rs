//! Epics: a feature request in plain text that the planner splits into tasks.

use serde::{Deserialize, Serialize};

use crate::transition::snake_case_enum;
use crate::{IllegalTransition, Timestamp};

/// Store-assigned identifier of an epic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EpicId(pub i64);

impl std::fmt::Display for EpicId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Lifecycle of an epic: `Planning → InProgress → Completed`, `InProgress ↔ Blocked`,
/// `Blocked → Completed`, and `Planning | InProgress | Blocked → Cancelled` when a person cancels
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpicState {
    /// Waiting for the planner to split it into tasks.
    Planning,
    /// Tasks exist and at least one can still make progress.
    InProgress,
    /// Nothing can make progress until a person steps in.
    Blocked,
    /// Every task is merged.
    Completed,
    /// Abandoned by a person.
    Cancelled,
}
snake_case_enum!(EpicState { Planning => "planning", InProgress => "in_progress", Blocked => "blocked", Completed => "completed", Cancelled => "cancelled" });

/// What can happen to an epic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpicEvent {
    /// The planner produced tasks.
    Planned,
    /// No task can progress.
    Block,
    /// A person unblocked it, or a blocked task was retried.
    Unblock,
    /// Every task was merged.
    Complete,
    /// A person gave up on it.
    Cancel,
}
snake_case_enum!(EpicEvent { Planned => "planned", Block => "block", Unblock => "unblock", Complete => "complete", Cancel => "cancel" });

impl EpicState {
    /// The one place that decides which epic transitions are legal.
    pub fn transition(self, event: EpicEvent) -> Result<EpicState, IllegalTransition> {
        use EpicEvent as E;
        use EpicState as S;
        match (self, event) {
            (S::Planning, E::Planned) => Ok(S::InProgress),
            (S::InProgress, E::Block) => Ok(S::Blocked),
            (S::Blocked, E::Unblock) => Ok(S::InProgress),
            (S::InProgress | S::Blocked, E::Complete) => Ok(S::Completed),
            (S::Planning | S::InProgress | S::Blocked, E::Cancel) => Ok(S::Cancelled),
            (from, event) => Err(IllegalTransition::new("epic", from, event)),
        }
    }

    /// Whether no further transition can leave this state.
    pub fn is_terminal(self) -> bool {
        matches!(self, EpicState::Completed | EpicState::Cancelled)
    }
}

/// An epic as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Epic {
    /// Identifier.
    pub id: EpicId,
    /// First line of the text, shortened; for tables.
    pub title: String,
    /// The full request as the person wrote it.
    pub text: String,
    /// Current lifecycle state.
    pub state: EpicState,
    /// Bumped on every write; writers compare-and-set on it.
    pub version: u64,
    /// Why planning failed or the epic is blocked, for `factory status`.
    pub blocked_reason: Option<String>,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// The largest epic text Factory accepts, in bytes: an epic is untrusted input that ends up in
/// every prompt, so it is bounded.
pub const MAX_EPIC_BYTES: usize = 256 * 1024;

/// Why an epic's text cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEpic {
    /// Only white space.
    #[error("the epic text is empty")]
    Blank,
    /// Larger than [`MAX_EPIC_BYTES`].
    #[error("the epic text is {len} bytes; at most {max} are accepted", max = MAX_EPIC_BYTES)]
    TooLong {
        /// Its size in bytes.
        len: usize,
    },
}

/// What a caller supplies to create an epic: text that is neither blank nor too large, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEpic {
    text: String,
}

impl NewEpic {
    /// Checks and trims the request text.
    pub fn new(text: &str) -> Result<NewEpic, InvalidEpic> {
        let text = text.trim();
        if text.is_empty() {
            return Err(InvalidEpic::Blank);
        }
        if text.len() > MAX_EPIC_BYTES {
            return Err(InvalidEpic::TooLong { len: text.len() });
        }
        Ok(NewEpic {
            text: text.to_owned(),
        })
    }

    /// The request text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Title derived from the text: first non-empty line, at most 72 characters.
    pub fn title(&self) -> String {
        let line = self
            .text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        let line = line.trim_start_matches('#').trim();
        let mut title: String = line.chars().take(72).collect();
        if line.chars().count() > 72 {
            title.push('…');
        }
        title
    }
}

/// Field changes written together with (or without) a state event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpicChanges {
    /// `Some(None)` clears the reason.
    pub blocked_reason: Option<Option<String>>,
}

impl Epic {
    /// The epic after `event` (if any) and `changes`, with the version bumped; the store writes
    /// exactly this, compare-and-set on the current version and state.
    pub fn apply(
        &self,
        event: Option<EpicEvent>,
        changes: EpicChanges,
        now: Timestamp,
    ) -> Result<Epic, IllegalTransition> {
        let mut next = self.clone();
        if let Some(event) = event {
            next.state = self.state.transition(event)?;
        }
        if let Some(reason) = changes.blocked_reason {
            next.blocked_reason = reason;
        }
        next.version = self.version + 1;
        next.updated_at = now;
        Ok(next)
    }
}
