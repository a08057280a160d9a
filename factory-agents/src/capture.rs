//! Bounded output capture: a command's stdout and stderr are kept in memory up to a cap each;
//! the rest streams to the command's log file (itself capped) or is dropped, and the kept text
//! ends with a marker saying which. A reviewer printing 200 MB costs Factory a few MiB.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncWriteExt, BufWriter};

/// Which pipe a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One stream's kept bytes and how many more there were.
pub(crate) struct Capture {
    stream: Stream,
    kept: Vec<u8>,
    cap: usize,
    beyond: u64,
}

impl Capture {
    pub(crate) fn new(stream: Stream, cap: u64) -> Capture {
        Capture {
            stream,
            kept: Vec::new(),
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            beyond: 0,
        }
    }

    /// Keeps what fits under the cap; the rest goes to `log`.
    pub(crate) async fn push(&mut self, chunk: &[u8], log: &mut OverflowLog) {
        let room = self.cap.saturating_sub(self.kept.len());
        let (keep, rest) = chunk.split_at(room.min(chunk.len()));
        self.kept.extend_from_slice(keep);
        if !rest.is_empty() {
            if self.beyond == 0 {
                log.header(self.stream, self.cap).await;
            }
            self.beyond += rest.len() as u64;
            log.write(self.stream, rest).await;
        }
    }

    /// The kept text (lossy UTF-8), with a marker line when there was more.
    pub(crate) fn finish(self, log: &OverflowLog) -> String {
        let mut text = String::from_utf8(self.kept)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        if self.beyond > 0 {
            let where_ = match log.kept_in() {
                Some(path) => format!("see {}", path.display()),
                None => "not kept".to_owned(),
            };
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "[… {} bytes more of {}, {where_}]\n",
                self.beyond,
                self.stream.name()
            ));
        }
        text
    }
}

/// Where output past the caps goes: the command's log file, opened (for appending) on the first
/// overflow, cut off past its own cap with a marker.
pub(crate) struct OverflowLog {
    path: Option<PathBuf>,
    file: Option<BufWriter<tokio::fs::File>>,
    failed: bool,
    cap: u64,
    written: u64,
    dropped: u64,
    last: Option<Stream>,
}

impl OverflowLog {
    pub(crate) fn new(path: Option<&Path>, cap: u64) -> OverflowLog {
        OverflowLog {
            path: path.map(Path::to_owned),
            file: None,
            failed: false,
            cap,
            written: 0,
            dropped: 0,
            last: None,
        }
    }

    /// The file holding the overflow, if one could be written.
    fn kept_in(&self) -> Option<&Path> {
        self.path.as_deref().filter(|_| !self.failed)
    }

    async fn header(&mut self, stream: Stream, cap: usize) {
        let line = format!(
            "\n--- {} past the first {cap} bytes (kept in memory) ---\n",
            stream.name()
        );
        self.raw(line.as_bytes()).await;
        self.last = Some(stream);
    }

    async fn write(&mut self, stream: Stream, bytes: &[u8]) {
        if self.last != Some(stream) {
            let line = format!("\n--- {} (continued) ---\n", stream.name());
            self.raw(line.as_bytes()).await;
            self.last = Some(stream);
        }
        let room = usize::try_from(self.cap.saturating_sub(self.written)).unwrap_or(usize::MAX);
        let (now, dropped) = bytes.split_at(room.min(bytes.len()));
        self.written += now.len() as u64;
        self.dropped += dropped.len() as u64;
        self.raw(now).await;
    }

    /// Writes without counting against the cap (headers and markers).
    async fn raw(&mut self, bytes: &[u8]) {
        if self.failed || bytes.is_empty() {
            return;
        }
        let Some(path) = &self.path else { return };
        if self.file.is_none() {
            if let Some(dir) = path.parent() {
                let _ = tokio::fs::create_dir_all(dir).await;
            }
            match tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
            {
                Ok(f) => self.file = Some(BufWriter::with_capacity(64 * 1024, f)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot write the output log; output past the capture limit is dropped");
                    self.failed = true;
                    return;
                }
            }
        }
        if let Some(file) = &mut self.file
            && let Err(error) = file.write_all(bytes).await
        {
            tracing::warn!(path = %path.display(), %error, "cannot write the output log; output past the capture limit is dropped");
            self.failed = true;
        }
    }

    /// Appends the truncation marker (if output was cut off) and flushes.
    pub(crate) async fn finish(&mut self) {
        if self.dropped > 0 {
            let line = format!(
                "\n[… log cut off at {} bytes: {} bytes more were not written]\n",
                self.cap, self.dropped
            );
            self.raw(line.as_bytes()).await;
        }
        if let Some(file) = &mut self.file
            && let Err(error) = file.flush().await
        {
            tracing::warn!(%error, "cannot flush the output log");
            self.failed = true;
        }
    }
}
