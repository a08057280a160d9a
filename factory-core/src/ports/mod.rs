//! The ports: traits that backends implement and orchestration calls. Each names the crate that
//! implements it in ARCHITECTURE.md. All are async and object-safe (`Arc<dyn Port>`).

mod agent;
mod clock;
mod sandbox;
mod store;
mod vcs;

pub use agent::{
    AgentBackend, AgentError, AgentRequest, AgentResponse, TranscriptEntry, TranscriptKind,
};
pub use clock::{Clock, SystemClock};
pub use sandbox::{CommandOutput, CommandSpec, Sandbox, SandboxError};
pub use store::{Store, StoreError, StoredEvent};
pub use vcs::{
    BranchUpdate, CommitId, GitIdentity, MergeOutcome, UpdateOutcome, Vcs, VcsError, WorktreeDamage,
};
