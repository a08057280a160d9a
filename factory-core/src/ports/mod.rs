//! The ports: traits that backends implement and orchestration calls. Each names the crate that
//! implements it in ARCHITECTURE.md. All are async and object-safe (`Arc<dyn Port>`).

mod agent;
mod clock;
mod sandbox;
mod store;
mod vcs;

pub use crate::event::StoredEvent;
pub use agent::{
    AgentBackend, AgentError, AgentRequest, AgentResponse, TranscriptEntry, TranscriptKind,
    exit_description,
};
pub use clock::{Clock, SystemClock};
pub use sandbox::{CommandOutput, CommandSpec, Sandbox, SandboxError};
pub use store::{Committed, PlannedEpic, Store, StoreError};
pub use vcs::{
    BranchDeletion, BranchTip, BranchUpdate, CheckoutStatus, CommitId, ConflictFile, ConflictRound,
    GitIdentity, MergeOutcome, OversizedFile, UpdateOutcome, Vcs, VcsError, WorktreeDamage,
    WorktreeInfo, paths_overlap,
};
