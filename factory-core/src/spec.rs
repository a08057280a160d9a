//! Spec ids (`NNN-slug`) and the names of the artifacts in a task's spec dir.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `NNN-slug`: a zero-padded number (at least three digits) and a lowercase slug of the title.
///
/// Ordering is by number, then slug, which equals string order while numbers stay below 1000.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpecId {
    number: u32,
    slug: String,
}

/// A string that is not a valid spec id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a spec id: expected NNN-slug, e.g. 001-add-healthz-endpoint")]
pub struct InvalidSpecId(pub String);

/// Longest slug kept from a title, so paths and branch names stay readable.
const MAX_SLUG_LEN: usize = 40;

impl SpecId {
    /// The spec id for the `number`th task titled `title`.
    pub fn new(number: u32, title: &str) -> SpecId {
        SpecId {
            number,
            slug: slugify(title),
        }
    }

    /// The number part.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The slug part.
    pub fn slug(&self) -> &str {
        &self.slug
    }

    /// The git branch Factory uses for this spec.
    pub fn branch(&self) -> String {
        format!("factory/{self}")
    }
}

/// Lowercase ASCII letters and digits separated by single dashes; `task` if nothing is left.
pub fn slugify(title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            if slug.len() >= MAX_SLUG_LEN {
                break;
            }
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    if slug.is_empty() {
        slug.push_str("task");
    }
    slug
}

impl fmt::Display for SpecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}-{}", self.number, self.slug)
    }
}

impl FromStr for SpecId {
    type Err = InvalidSpecId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidSpecId(s.to_owned());
        let (digits, slug) = s.split_once('-').ok_or_else(bad)?;
        if digits.len() < 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let number: u32 = digits.parse().map_err(|_| bad())?;
        if format!("{number:03}") != digits {
            return Err(bad());
        }
        let valid_slug = !slug.is_empty()
            && slug.split('-').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !valid_slug {
            return Err(bad());
        }
        Ok(SpecId {
            number,
            slug: slug.to_owned(),
        })
    }
}

impl TryFrom<String> for SpecId {
    type Error = InvalidSpecId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<SpecId> for String {
    fn from(value: SpecId) -> Self {
        value.to_string()
    }
}

impl Ord for SpecId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.number
            .cmp(&other.number)
            .then_with(|| self.slug.cmp(&other.slug))
    }
}

impl PartialOrd for SpecId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// File names inside `.factory/specs/<spec-id>/`.
pub mod artifact {
    /// Human-readable spec: title, description, acceptance criteria, dependencies.
    pub const SPEC_MD: &str = "spec.md";
    /// Machine-readable requirements.
    pub const REQUIREMENTS_JSON: &str = "requirements.json";
    /// Where the work happens: repo, base, branch, worktree, verify command.
    pub const CONTEXT_JSON: &str = "context.json";
    /// The steps and their status.
    pub const IMPLEMENTATION_PLAN_JSON: &str = "implementation_plan.json";
    /// State, version, attempts, QA rounds, merge commit.
    pub const TASK_METADATA_JSON: &str = "task_metadata.json";
    /// Every QA round's verdict and verify result.
    pub const QA_REPORT_MD: &str = "qa_report.md";
    /// One timestamped line per step.
    pub const BUILD_PROGRESS_TXT: &str = "build-progress.txt";
    /// Present only while QA asks the worker for fixes.
    pub const QA_FIX_REQUEST_MD: &str = "QA_FIX_REQUEST.md";

    /// The artifacts every spec dir holds once its task has been through QA.
    pub const ALWAYS: &[&str] = &[
        SPEC_MD,
        REQUIREMENTS_JSON,
        CONTEXT_JSON,
        IMPLEMENTATION_PLAN_JSON,
        TASK_METADATA_JSON,
        QA_REPORT_MD,
        BUILD_PROGRESS_TXT,
    ];
}
