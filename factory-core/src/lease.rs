//! The run lease: at most one `factory run` drives a repository at a time. The holder renews it
//! by heartbeat; a holder that dies stops renewing and its lease expires. Each acquisition gets a
//! higher fencing token, so a holder that lost its lease finds out on its next renewal.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Who holds (or asks for) the run lease, for the message a second run prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHolder {
    /// Process id of the holder.
    pub pid: u32,
    /// Host name of the holder's machine.
    pub host: String,
    /// What is running, e.g. `factory run`.
    pub label: String,
}

impl std::fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {} on {})", self.label, self.pid, self.host)
    }
}

/// The lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLease {
    /// Fencing token: grows with every acquisition, never reused.
    pub token: u64,
    /// Who holds it.
    pub holder: LeaseHolder,
    /// When it was acquired.
    pub acquired_at: Timestamp,
    /// The last heartbeat.
    pub heartbeat_at: Timestamp,
    /// When it lapses unless renewed.
    pub expires_at: Timestamp,
}

impl RunLease {
    /// Whether it still holds at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at > now
    }
}
