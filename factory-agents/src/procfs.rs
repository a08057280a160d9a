//! Reading `/proc/<pid>/stat`: a process's state, parent, process group and start time.
//!
//! The start time (field 22, clock ticks since boot) is what tells a process apart from a later
//! one that got the same pid: together, pid and start time name one process for good.

/// What Factory needs of one line of `/proc/<pid>/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 1.
    pub pid: i32,
    /// Field 2 without its parentheses: the command name, which may hold anything, spaces and
    /// parentheses included.
    pub comm: String,
    /// Field 3: `R`, `S`, `D`, `T`, `Z`, `X`, …
    pub state: char,
    /// Field 4.
    pub ppid: i32,
    /// Field 5: the process group id.
    pub pgrp: i32,
    /// Field 22: when the process started, in clock ticks after boot.
    pub start_time: u64,
}

impl ProcStat {
    /// Whether the process still runs: not a zombie waiting to be reaped, not dead.
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/<pid>/stat`; `None` when it is not in that format. The command
/// name is found between the first `(` and the *last* `)`, since it may contain both.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let (pid, rest) = text.split_once(" (")?;
    let (comm, rest) = rest.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3; field n is `fields[n - 3]`.
    let field = |n: usize| fields.get(n - 3).copied();
    let mut state = field(3)?.chars();
    let (Some(state), None) = (state.next(), state.next()) else {
        return None;
    };
    Some(ProcStat {
        pid: pid.trim().parse().ok()?,
        comm: comm.to_owned(),
        state,
        ppid: field(4)?.parse().ok()?,
        pgrp: field(5)?.parse().ok()?,
        start_time: field(22)?.parse().ok()?,
    })
}

/// The stat of process `pid`, or `None` when there is no such process (or it cannot be read).
pub(crate) fn read_stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The stat of every process now (those that vanish while being read are left out).
pub(crate) fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_stat)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A stat line with `comm` and the given state, ppid, pgrp and start time; the other fields
    /// as the kernel writes them.
    fn line(pid: i32, comm: &str, state: char, ppid: i32, pgrp: i32, start: u64) -> String {
        format!(
            "{pid} ({comm}) {state} {ppid} {pgrp} {pgrp} 34816 {pgrp} 4194560 1091 0 0 0 1 0 0 0 20 0 1 0 {start} 2768896 408 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        )
    }

    #[test]
    fn a_plain_line_gives_its_fields() {
        let stat = parse_stat(&line(4242, "sleep", 'S', 1, 4242, 987_654)).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                pid: 4242,
                comm: "sleep".into(),
                state: 'S',
                ppid: 1,
                pgrp: 4242,
                start_time: 987_654,
            }
        );
        assert!(stat.is_alive());
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        for comm in ["a b", "x) S 1 2 (", "(sh)", ") )", "tmux: server", "a\nb"] {
            let stat = parse_stat(&line(7, comm, 'R', 3, 5, 42)).unwrap();
            assert_eq!(stat.comm, comm);
            assert_eq!(
                (stat.state, stat.ppid, stat.pgrp, stat.start_time),
                ('R', 3, 5, 42),
                "{comm}"
            );
        }
    }

    #[test]
    fn zombies_and_dead_processes_are_not_alive() {
        for state in ['Z', 'X'] {
            assert!(
                !parse_stat(&line(7, "z", state, 1, 7, 1))
                    .unwrap()
                    .is_alive()
            );
        }
        assert!(parse_stat(&line(7, "t", 'T', 1, 7, 1)).unwrap().is_alive());
    }

    #[test]
    fn text_that_is_not_a_stat_line_is_refused() {
        for text in [
            "",
            "garbage",
            "12 (sh) S 1 2",
            "x (sh) S 1 2 2 0 2 0 0 0 0 0 0 0 0 0 20 0 1 0 5",
            "12 (sh) SS 1 2 2 0 2 0 0 0 0 0 0 0 0 0 20 0 1 0 5",
        ] {
            assert_eq!(parse_stat(text), None, "{text:?}");
        }
        // The shortest line that has field 22.
        let short = "12 (sh) S 1 2 2 0 2 0 0 0 0 0 0 0 0 0 20 0 1 0 5";
        assert_eq!(parse_stat(short).unwrap().start_time, 5);
    }

    #[test]
    fn this_process_reads_as_alive_with_a_start_time() {
        let me = i32::try_from(std::process::id()).unwrap();
        let stat = read_stat(me).unwrap();
        assert_eq!(stat.pid, me);
        assert!(stat.is_alive());
        assert!(stat.start_time > 0);
        assert_eq!(read_stat(0), None);
        assert!(all_processes().iter().any(|p| p.pid == me));
    }
}
