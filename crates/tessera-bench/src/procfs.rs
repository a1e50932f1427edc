//! What the kernel says about this process: resident memory (`/proc/self/status`) and, per
//! thread, CPU time and time spent runnable but waiting for a core
//! (`/proc/self/task/<tid>/schedstat`: run ns, run-queue wait ns, timeslices).

use anyhow::Context;
use std::collections::BTreeMap;
use std::fs;

/// Resident memory of the process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident set size now.
    pub rss_kib: u64,
    /// Peak resident set size so far ("high water mark").
    pub hwm_kib: u64,
}

/// Reads VmRSS and VmHWM.
pub fn memory() -> anyhow::Result<Memory> {
    let status =
        fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .with_context(|| format!("{name} missing from /proc/self/status"))?;
        line.trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("cannot parse {line:?}"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// Scheduler statistics of one thread.
#[derive(Debug, Clone, Default)]
pub struct ThreadStat {
    /// The thread's name (`comm`, at most 15 bytes).
    pub name: String,
    /// Nanoseconds spent on a CPU.
    pub run_ns: u64,
    /// Nanoseconds spent runnable, waiting for a CPU.
    pub wait_ns: u64,
    /// Times it was scheduled onto a CPU.
    pub slices: u64,
}

/// Every thread of the process, by thread id. Threads that exit while being read are skipped.
pub fn threads() -> anyhow::Result<BTreeMap<u32, ThreadStat>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir("/proc/self/task").context("cannot list /proc/self/task")? {
        let entry = entry?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let (Ok(name), Ok(sched)) = (
            fs::read_to_string(dir.join("comm")),
            fs::read_to_string(dir.join("schedstat")),
        ) else {
            continue;
        };
        let mut fields = sched.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(run_ns)), Some(Ok(wait_ns)), Some(Ok(slices))) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        out.insert(
            tid,
            ThreadStat {
                name: name.trim().to_owned(),
                run_ns,
                wait_ns,
                slices,
            },
        );
    }
    Ok(out)
}

/// The calling thread's id.
pub fn current_tid() -> anyhow::Result<u32> {
    let link = fs::read_link("/proc/thread-self").context("cannot read /proc/thread-self")?;
    link.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.parse().ok())
        .with_context(|| format!("unexpected /proc/thread-self target {}", link.display()))
}

/// What each thread did between two snapshots (threads born in between count from zero).
pub fn delta(
    before: &BTreeMap<u32, ThreadStat>,
    after: &BTreeMap<u32, ThreadStat>,
) -> BTreeMap<u32, ThreadStat> {
    after
        .iter()
        .map(|(tid, now)| {
            let then = before.get(tid).cloned().unwrap_or_default();
            (
                *tid,
                ThreadStat {
                    name: now.name.clone(),
                    run_ns: now.run_ns.saturating_sub(then.run_ns),
                    wait_ns: now.wait_ns.saturating_sub(then.wait_ns),
                    slices: now.slices.saturating_sub(then.slices),
                },
            )
        })
        .collect()
}
