//! Mail between people and agents: a person steers an agent by writing to it; agents and the
//! orchestrator report back to `human`.

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::task::TaskId;

/// The mailbox of the person running Factory.
pub const HUMAN: &str = "human";
/// The sender name the orchestrator uses for its own reports.
pub const ORCHESTRATOR: &str = "orchestrator";

/// Store-assigned identifier of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MailId(pub i64);

/// A message as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mail {
    /// Identifier.
    pub id: MailId,
    /// Sender address (`human`, `orchestrator`, or an agent id).
    pub from: String,
    /// Recipient address.
    pub to: String,
    /// One line.
    pub subject: String,
    /// The message.
    pub body: String,
    /// The task it concerns, if any.
    pub task_id: Option<TaskId>,
    /// When it was sent.
    pub created_at: Timestamp,
    /// When the recipient read it (for agents: when it was put into a prompt).
    pub read_at: Option<Timestamp>,
}

/// What a sender supplies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    /// Sender address.
    pub from: String,
    /// Recipient address.
    pub to: String,
    /// One line.
    pub subject: String,
    /// The message.
    pub body: String,
    /// The task it concerns, if any.
    pub task_id: Option<TaskId>,
}

/// Which messages to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailFilter {
    /// Only messages to this address.
    pub to: Option<String>,
    /// Only messages not yet read.
    pub unread_only: bool,
}
