//! Limits on what a task may merge: a change that adds or grows a file past
//! `[merge] max_file_bytes` blocks its task, naming the file. Checked after each worker round is
//! committed (before review and verify spend time on it) and again on the exact commit the merge
//! queue is about to merge.

use crate::ports::OversizedFile;
use crate::task::Task;

use super::{Factory, OrchestrateError};

/// How many oversized files a reason names before it says how many more there are.
const NAMED: usize = 5;

impl Factory {
    /// Blocks `task` when the change `tip` makes since it forked from main adds or grows a file
    /// past `[merge] max_file_bytes`; returns whether it did. Nothing of the change is merged.
    pub(super) async fn block_if_oversized(
        &self,
        task: &Task,
        tip: &str,
    ) -> Result<bool, OrchestrateError> {
        let config = self.config();
        let max = config.merge.max_file_bytes;
        let files = self
            .inner
            .ports
            .vcs
            .oversized_files(&config.git.main_branch, tip, max)
            .await?;
        if files.is_empty() {
            return Ok(false);
        }
        tracing::info!(spec = %task.spec_id, ?files, max, "the change has files over the size limit");
        self.block(task, oversized_reason(&files, max)).await?;
        Ok(true)
    }
}

/// "`data/big.bin` is 200.0 MiB, over [merge] max_file_bytes (10.0 MiB): remove it from the
/// change or raise the limit".
pub(super) fn oversized_reason(files: &[OversizedFile], max_bytes: u64) -> String {
    let mut named: Vec<String> = files
        .iter()
        .take(NAMED)
        .map(|f| format!("`{}` is {}", f.path, human_bytes(f.bytes)))
        .collect();
    if files.len() > NAMED {
        named.push(format!("{} more file(s) are too", files.len() - NAMED));
    }
    let list = match named.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    };
    let it = if files.len() == 1 { "it" } else { "them" };
    format!(
        "{list}, over [merge] max_file_bytes ({}): remove {it} from the change or raise the limit",
        human_bytes(max_bytes)
    )
}

/// A size for people: "512 bytes", "9.8 KiB", "200.0 MiB", "1.5 GiB".
pub(super) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, bytes: u64) -> OversizedFile {
        OversizedFile {
            path: path.into(),
            bytes,
        }
    }

    #[test]
    fn sizes_read_for_people() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1023), "1023 bytes");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(10_000), "9.8 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024), "10.0 MiB");
        assert_eq!(human_bytes(200 * 1024 * 1024), "200.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(5000 << 30), "5000.0 GiB");
    }

    #[test]
    fn the_reason_names_the_files_their_sizes_and_the_limit() {
        let max = 10 * 1024 * 1024;
        assert_eq!(
            oversized_reason(&[file("data/big.bin", 200 * 1024 * 1024)], max),
            "`data/big.bin` is 200.0 MiB, over [merge] max_file_bytes (10.0 MiB): remove it from the change or raise the limit"
        );
        assert_eq!(
            oversized_reason(&[file("a", 11 << 20), file("b", 12 << 20)], max),
            "`a` is 11.0 MiB and `b` is 12.0 MiB, over [merge] max_file_bytes (10.0 MiB): remove them from the change or raise the limit"
        );
        let many: Vec<OversizedFile> = (0..7).map(|i| file(&format!("f{i}"), 11 << 20)).collect();
        let reason = oversized_reason(&many, max);
        assert!(
            reason.starts_with("`f0` is 11.0 MiB, `f1` is 11.0 MiB, `f2` is 11.0 MiB, `f3` is 11.0 MiB, `f4` is 11.0 MiB and 2 more file(s) are too, over"),
            "{reason}"
        );
    }
}
