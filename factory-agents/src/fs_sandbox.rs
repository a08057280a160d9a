//! The filesystem sandbox: a Landlock ruleset that leaves the whole filesystem readable and
//! executable but writable only beneath a short list of paths. The supervisor applies it to
//! itself before starting the command, so the command and everything it starts inherit it and no
//! process can lift it.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, AccessFs, LandlockStatus, RestrictionStatus, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetError, RulesetStatus, path_beneath_rules,
};
use serde::{Deserialize, Serialize};

/// The Landlock ABI whose write rights are handled. Pinned, so a newer kernel does not start
/// refusing accesses (e.g. connecting to Unix sockets, ABI 9) that commands relied on.
const LANDLOCK_ABI: ABI = ABI::V7;

/// Device files every command may write: sinks, terminals and POSIX shared memory.
const DEVICE_PATHS: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/pts",
    "/dev/ptmx",
    "/dev/shm",
];

/// What one command may write, as the supervisor receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FsPolicy {
    /// Paths writable beneath (files or directories); missing ones are skipped.
    pub writable: Vec<PathBuf>,
}

impl FsPolicy {
    /// A policy for `writable` plus the device files.
    pub(crate) fn new(writable: impl IntoIterator<Item = PathBuf>) -> FsPolicy {
        let mut paths: Vec<PathBuf> = writable.into_iter().collect();
        paths.extend(DEVICE_PATHS.iter().map(PathBuf::from));
        FsPolicy { writable: paths }
    }

    /// Restricts the calling thread (and every process it starts from now on) to this policy.
    /// Where the kernel lacks Landlock this succeeds with [`LandlockSupport::Unsupported`].
    pub(crate) fn restrict_self(&self) -> Result<LandlockSupport, RulesetError> {
        let write = AccessFs::from_write(LANDLOCK_ABI);
        let status = Ruleset::default()
            .handle_access(write)?
            .create()?
            .add_rules(path_beneath_rules(&self.writable, write))?
            .restrict_self()?;
        Ok(LandlockSupport::from_status(&status))
    }
}

/// Whether Landlock is enforced for a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LandlockSupport {
    /// Enforced, with the kernel's Landlock ABI version; `partial` when the kernel lacks some of
    /// the write rights Factory handles (e.g. truncation before ABI 3).
    Enforced {
        /// The kernel's Landlock ABI version.
        abi: i32,
        /// Some handled rights are not enforced by this kernel.
        partial: bool,
    },
    /// Not enforced, and why.
    Unsupported {
        /// What is missing, for the user.
        reason: String,
    },
}

impl LandlockSupport {
    fn from_status(status: &RestrictionStatus) -> LandlockSupport {
        let abi = match status.landlock {
            LandlockStatus::Available {
                effective_abi,
                kernel_abi,
            } => kernel_abi.unwrap_or(effective_abi as i32),
            LandlockStatus::NotEnabled => {
                return LandlockSupport::Unsupported {
                    reason: "this kernel has Landlock but it is not enabled (add landlock to the lsm= boot parameter)".into(),
                };
            }
            LandlockStatus::NotImplemented => {
                return LandlockSupport::Unsupported {
                    reason: "this kernel has no Landlock (needs Linux 5.13 or later built with CONFIG_SECURITY_LANDLOCK)".into(),
                };
            }
        };
        match status.ruleset {
            RulesetStatus::FullyEnforced => LandlockSupport::Enforced {
                abi,
                partial: false,
            },
            RulesetStatus::PartiallyEnforced => LandlockSupport::Enforced { abi, partial: true },
            RulesetStatus::NotEnforced => LandlockSupport::Unsupported {
                reason: format!("Landlock (ABI {abi}) did not enforce the ruleset"),
            },
        }
    }

    /// Whether writes outside the allowed paths are refused.
    pub fn is_enforced(&self) -> bool {
        matches!(self, LandlockSupport::Enforced { .. })
    }
}

/// What the sandbox does on this machine with this configuration: for `factory doctor`, for the
/// one warning when it is not enforced, and for refusing to run when it is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    /// `[sandbox] enabled`.
    pub enabled: bool,
    /// `[sandbox] required`.
    pub required: bool,
    /// What the kernel enforces (measured by the supervisor applying the ruleset to itself).
    pub landlock: LandlockSupport,
    /// Configured writable paths that exist: writable by every command, besides its own
    /// directories (task worktree, spec dir, temp dir) and device files.
    pub writable: Vec<PathBuf>,
    /// Configured writable paths that do not exist, and so are not writable.
    pub missing: Vec<PathBuf>,
}

impl SandboxReport {
    /// Whether commands run sandboxed.
    pub fn is_enforced(&self) -> bool {
        self.enabled && self.landlock.is_enforced()
    }
}

impl std::fmt::Display for SandboxReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match (&self.landlock, self.enabled) {
            (_, false) => {
                "off ([sandbox] enabled = false): commands may write wherever you may".to_owned()
            }
            (LandlockSupport::Enforced { abi, partial }, true) => format!(
                "Landlock ABI {abi}, {}: commands may write only their task's worktree and spec dir, their own temp dir, device files and the paths below",
                if *partial {
                    "partly enforced"
                } else {
                    "enforced"
                }
            ),
            (LandlockSupport::Unsupported { reason }, true) => format!(
                "not enforced: {reason}; commands {}",
                if self.required {
                    "are refused ([sandbox] required = true)"
                } else {
                    "run unsandboxed"
                }
            ),
        };
        writeln!(f, "sandbox: {state}")?;
        for p in &self.writable {
            writeln!(f, "  writable: {}", p.display())?;
        }
        for p in &self.missing {
            writeln!(f, "  missing (skipped): {}", p.display())?;
        }
        Ok(())
    }
}

/// Splits configured paths into those that exist and those that do not.
pub(crate) fn split_existing(paths: Vec<PathBuf>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    paths.into_iter().partition(|p| Path::exists(p))
}
