//! The normalized transcript every backend returns, stamped by the injected [`Clock`].

use std::sync::Arc;
use std::time::Duration;

use factory_core::Timestamp;
use factory_core::ports::{Clock, TranscriptEntry, TranscriptKind};

/// Lines of one stream kept as transcript entries.
pub(crate) const MAX_LINES: usize = 20_000;

/// Collects transcript entries as a run goes, so every backend records the same shape:
/// the prompt, what the agent printed (one entry per line), edits, and how it ended.
pub(crate) struct Transcript {
    clock: Arc<dyn Clock>,
    started: Timestamp,
    entries: Vec<TranscriptEntry>,
}

impl Transcript {
    /// Starts a transcript with the prompt.
    pub(crate) fn start(clock: Arc<dyn Clock>, prompt: &str) -> Transcript {
        let mut t = Transcript {
            started: clock.now(),
            clock,
            entries: Vec::new(),
        };
        t.push(TranscriptKind::Prompt, prompt);
        t
    }

    /// One entry.
    pub(crate) fn push(&mut self, kind: TranscriptKind, text: impl Into<String>) {
        self.entries.push(TranscriptEntry {
            at: self.clock.now(),
            kind,
            text: text.into(),
        });
    }

    /// One entry per line of `text`, up to [`MAX_LINES`]; then one entry saying how many more
    /// lines there were. Without the cap, 8 MiB of empty lines would be 8 million entries.
    pub(crate) fn lines(&mut self, kind: TranscriptKind, text: &str) {
        let mut lines = text.lines();
        for line in lines.by_ref().take(MAX_LINES) {
            self.push(kind, line);
        }
        let more = lines.count();
        if more > 0 {
            self.push(
                kind,
                format!("[… {more} more lines, not in the transcript]"),
            );
        }
    }

    /// Time since the start, by the clock (for runs that are not a process).
    pub(crate) fn elapsed(&self) -> Duration {
        (self.clock.now() - self.started)
            .to_std()
            .unwrap_or_default()
    }

    /// The closing `exit <code> in <ms> ms` entry, and the whole transcript.
    pub(crate) fn exit(mut self, code: i32, took: Duration) -> Vec<TranscriptEntry> {
        self.push(
            TranscriptKind::Exit,
            format!("exit {code} in {} ms", took.as_millis()),
        );
        self.entries
    }
}
