//! Best-effort CPU accounting per thread group, from `/proc/self/task` (Linux
//! only; elsewhere every sample is empty and the CPU columns read "-").
//!
//! The bench names its runtimes' threads, so the CPU time of the server side
//! (tokio workers plus the wasmtime epoch ticker) and of the client side can
//! be told apart. That shows whether a measurement was server-bound or
//! client-bound, and gives server CPU time per request, which is the cost
//! that matters independently of the load generator. Minor page faults are
//! counted too: a fresh Wasm instance per request that touches freshly reset
//! memory shows up there.

use std::collections::BTreeMap;

/// Kernel clock ticks per second for `utime`/`stime` (USER_HZ); 100 on every
/// mainstream Linux build.
const TICKS_PER_SEC: f64 = 100.0;

/// Resources used so far by one thread group.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// `utime + stime`, in seconds.
    pub cpu_secs: f64,
    /// Minor page faults (`minflt`).
    pub minor_faults: u64,
}

/// Usage so far, per thread name prefix of [`GROUPS`].
#[derive(Debug, Clone, Default)]
pub struct Sample(BTreeMap<&'static str, Usage>);

/// Thread name prefixes (as in `/proc/.../comm`, at most 15 bytes) and the
/// group each belongs to.
const GROUPS: &[(&str, &str)] = &[
    (crate::SERVER_THREAD_NAME, "server"),
    ("sfop-epoch", "server"),
    ("sfop-instances", "server"),
    // The execution pool (ADR 0020) and the virtual bank's group commit
    // (ADR 0022) work for the server too.
    ("sfop-exec", "server"),
    ("sfop-vbank", "server"),
    // sled's own threads: its writer pool, which writes and syncs the log
    // for every flush the commit thread asks for, and its periodic flusher.
    ("sled-io", "server"),
    ("log flusher", "server"),
    (crate::CLIENT_THREAD_NAME, "client"),
];

impl Sample {
    /// Reads every thread of this process; threads that end between two
    /// samples are lost (the bench keeps its runtimes alive throughout).
    pub fn now() -> Self {
        let mut groups = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Self(groups);
        };
        for task in tasks.flatten() {
            let dir = task.path();
            let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
                continue;
            };
            let Some(prefix) = GROUPS
                .iter()
                .find(|(prefix, _)| comm.trim_end().starts_with(prefix))
                .map(|(prefix, _)| *prefix)
            else {
                continue;
            };
            let Some(usage) = std::fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
            else {
                continue;
            };
            let total: &mut Usage = groups.entry(prefix).or_default();
            total.cpu_secs += usage.cpu_secs;
            total.minor_faults += usage.minor_faults;
        }
        Self(groups)
    }

    /// What `group` used between `earlier` and `self`.
    pub fn since(&self, earlier: &Sample, group: &str) -> Option<Usage> {
        self.threads_since(earlier, group)
            .into_iter()
            .map(|(_, usage)| usage)
            .reduce(|a, b| Usage {
                cpu_secs: a.cpu_secs + b.cpu_secs,
                minor_faults: a.minor_faults + b.minor_faults,
            })
    }

    /// What each thread name prefix of `group` used between `earlier` and
    /// `self` (where the server's CPU goes: its worker, the execution pool,
    /// the commit thread, sled's writers, ...).
    pub fn threads_since(&self, earlier: &Sample, group: &str) -> Vec<(&'static str, Usage)> {
        GROUPS
            .iter()
            .filter(|(_, g)| *g == group)
            .filter_map(|(prefix, _)| {
                let now = self.0.get(prefix)?;
                let before = earlier.0.get(prefix).copied().unwrap_or_default();
                Some((
                    *prefix,
                    Usage {
                        cpu_secs: now.cpu_secs - before.cpu_secs,
                        minor_faults: now.minor_faults.saturating_sub(before.minor_faults),
                    },
                ))
            })
            .collect()
    }
}

/// What another process (all its threads) used so far, e.g. the bank
/// server of B3r/B4r; `None` off Linux or once it has ended.
pub fn process(pid: u32) -> Option<Usage> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Usage in one `/proc/<pid>/task/<tid>/stat` (or `/proc/<pid>/stat`) line.
fn parse_stat(stat: &str) -> Option<Usage> {
    // The command name (field 2) may hold spaces and parentheses; the fields
    // after its closing parenthesis start at field 3 (state).
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Field n is at index n - 3: minflt is field 10, utime 14, stime 15.
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Usage {
        cpu_secs: (field(14)? + field(15)?) as f64 / TICKS_PER_SEC,
        minor_faults: field(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_faults_and_cpu_after_an_odd_comm() {
        let stat = "4242 (bench-srv (x) y) R 1 2 3 4 5 6 77 8 9 10 150 50 0 0 20 0 1 0";
        assert_eq!(
            parse_stat(stat),
            Some(Usage {
                cpu_secs: 2.0,
                minor_faults: 77
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }
}
