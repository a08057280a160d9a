//! Output capture is bounded: 200 MB of output costs Factory a few MiB, the kept text says how
//! much more there was and where it went, and the log file is capped too.

use std::time::Duration;

use factory_agents::{ProcessOptions, ProcessSandbox};
use factory_core::config::LimitsConfig;
use factory_core::ports::{CommandSpec, Sandbox};

use crate::fixture::{process_sandbox, supervisor};

/// A field of /proc/self/status in bytes (they are given in kB).
pub fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

pub const MIB: u64 = 1024 * 1024;
const TOTAL: u64 = 200_000_000;

#[tokio::test]
async fn two_hundred_megabytes_of_output_keep_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/verify.log");
    // Reset the peak RSS to the current RSS, so VmHWM below is this test's peak.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_bytes("VmRSS:");
    let out = process_sandbox()
        .run(CommandSpec {
            command: format!("head -c {TOTAL} /dev/zero | tr '\\0' a; echo done >&2"),
            cwd: dir.path().to_owned(),
            timeout: Duration::from_secs(300),
            output_log: Some(log.clone()),
            ..CommandSpec::default()
        })
        .await
        .unwrap();
    let peak = status_bytes("VmHWM:");
    let growth = peak.saturating_sub(before);
    eprintln!(
        "200 MB of output: RSS {} MiB before, peak {} MiB (+{} MiB)",
        before / MIB,
        peak / MIB,
        growth / MIB
    );
    assert!(out.success(), "{:?} {}", out.exit_code, out.stderr);
    assert!(growth < 100 * MIB, "RSS grew by {} MiB", growth / MIB);

    let kept = LimitsConfig::default().captured_output_bytes;
    let marker = format!(
        "[… {} bytes more of stdout, see {}]\n",
        TOTAL - kept,
        log.display()
    );
    assert!(
        out.stdout.ends_with(&marker),
        "{}",
        &out.stdout[out.stdout.len() - 200..]
    );
    assert_eq!(out.stdout.len() as u64, kept + 1 + marker.len() as u64);
    assert!(out.stdout[..kept as usize].bytes().all(|b| b == b'a'));
    assert_eq!(out.stderr, "done\n");

    // The log holds the next 64 MiB, then says it was cut off.
    let log_cap = LimitsConfig::default().log_output_bytes;
    let text = std::fs::read(&log).unwrap();
    let len = text.len() as u64;
    assert!(len > log_cap && len < log_cap + 1024, "log is {len} bytes");
    let tail = String::from_utf8_lossy(&text[text.len() - 200..]).into_owned();
    assert!(
        tail.ends_with(&format!(
            "[… log cut off at {log_cap} bytes: {} bytes more were not written]\n",
            TOTAL - kept - log_cap
        )),
        "{tail}"
    );
    let head = String::from_utf8_lossy(&text[..100]).into_owned();
    assert!(
        head.starts_with(&format!(
            "\n--- stdout past the first {kept} bytes (kept in memory) ---\naaa"
        )),
        "{head}"
    );
}

#[tokio::test]
async fn output_past_the_cap_without_a_log_is_dropped_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = ProcessSandbox::with_options(ProcessOptions {
        supervisor: supervisor(),
        limits: LimitsConfig {
            captured_output_bytes: 1024,
            ..LimitsConfig::default()
        },
        ..ProcessOptions::default()
    });
    let out = sandbox
        .run(CommandSpec {
            command: "head -c 5000 /dev/zero | tr '\\0' o; head -c 3000 /dev/zero | tr '\\0' e >&2"
                .to_owned(),
            cwd: dir.path().to_owned(),
            timeout: Duration::from_secs(30),
            ..CommandSpec::default()
        })
        .await
        .unwrap();
    assert_eq!(
        out.stdout,
        format!(
            "{}\n[… 3976 bytes more of stdout, not kept]\n",
            "o".repeat(1024)
        )
    );
    assert_eq!(
        out.stderr,
        format!(
            "{}\n[… 1976 bytes more of stderr, not kept]\n",
            "e".repeat(1024)
        )
    );
}
