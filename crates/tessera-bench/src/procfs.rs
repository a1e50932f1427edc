//! What the kernel says about this process: resident memory (`/proc/self/status`) and, per
//! thread, CPU time and time spent runnable but waiting for a core
//! (`/proc/self/task/<tid>/schedstat`: run ns, run-queue wait ns, timeslices).

use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

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

/// CPU time counters of the whole machine and of this process, in clock ticks (the unit
/// cancels out: only shares are reported).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTicks {
    /// Every core's busy time (user, nice, system, irq, softirq), all processes.
    pub busy: u64,
    /// Idle and I/O wait.
    pub idle: u64,
    /// Time the hypervisor ran something else on our virtual cores.
    pub steal: u64,
    /// This process's user and system time (its live and exited threads).
    pub this_process: u64,
}

impl CpuTicks {
    /// Reads `/proc/stat` and `/proc/self/stat`.
    pub fn now() -> anyhow::Result<Self> {
        let stat = fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
        let line = stat
            .lines()
            .find(|line| line.starts_with("cpu "))
            .context("no cpu line in /proc/stat")?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot parse {line:?}"))?;
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        let own = fs::read_to_string("/proc/self/stat").context("cannot read /proc/self/stat")?;
        // Fields after the parenthesized name: state is first, utime the 12th, stime the 13th.
        let after_name = own.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |i: usize| -> u64 {
            fields
                .get(i)
                .and_then(|text| text.parse().ok())
                .unwrap_or(0)
        };
        Ok(Self {
            busy: at(0) + at(1) + at(2) + at(5) + at(6),
            idle: at(3) + at(4),
            steal: at(7),
            this_process: field(11) + field(12),
        })
    }

    /// The counters accumulated since `before`.
    pub fn since(&self, before: &Self) -> Self {
        Self {
            busy: self.busy.saturating_sub(before.busy),
            idle: self.idle.saturating_sub(before.idle),
            steal: self.steal.saturating_sub(before.steal),
            this_process: self.this_process.saturating_sub(before.this_process),
        }
    }

    fn share(&self, ticks: u64) -> f64 {
        ticks as f64 / (self.busy + self.idle + self.steal).max(1) as f64
    }

    /// The share of the machine's CPU time used by other processes, 0–1.
    pub fn others_only_share(&self) -> f64 {
        self.share(self.busy.saturating_sub(self.this_process))
    }

    /// The share taken by the hypervisor for other guests, 0–1.
    pub fn steal_share(&self) -> f64 {
        self.share(self.steal)
    }

    /// The share of idle time, 0–1.
    pub fn idle_share(&self) -> f64 {
        self.share(self.idle)
    }

    /// The share taken away from this process by other processes and the hypervisor, 0–1.
    pub fn others_share(&self) -> f64 {
        self.others_only_share() + self.steal_share()
    }

    /// One line: shares of the machine's CPU time.
    pub fn describe(&self) -> String {
        format!(
            "this process {:.0}%, other processes {:.0}%, hypervisor steal {:.0}%, idle {:.0}%",
            self.share(self.this_process.min(self.busy)) * 100.0,
            self.others_only_share() * 100.0,
            self.steal_share() * 100.0,
            self.idle_share() * 100.0
        )
    }
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
    /// Minor page faults (memory touched for the first time, or again after being returned).
    pub minor_faults: u64,
}

impl ThreadStat {
    /// What the thread did since `before`.
    pub fn since(&self, before: &Self) -> Self {
        Self {
            name: self.name.clone(),
            run_ns: self.run_ns.saturating_sub(before.run_ns),
            wait_ns: self.wait_ns.saturating_sub(before.wait_ns),
            slices: self.slices.saturating_sub(before.slices),
            minor_faults: self.minor_faults.saturating_sub(before.minor_faults),
        }
    }
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
        let (Ok(name), Ok(sched), Ok(stat)) = (
            fs::read_to_string(dir.join("comm")),
            fs::read_to_string(dir.join("schedstat")),
            fs::read_to_string(dir.join("stat")),
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
                minor_faults: minor_faults(&stat),
            },
        );
    }
    Ok(out)
}

/// The calling thread's own scheduler statistics.
pub fn current_thread() -> anyhow::Result<ThreadStat> {
    let sched = fs::read_to_string("/proc/thread-self/schedstat")
        .context("cannot read /proc/thread-self/schedstat")?;
    let mut fields = sched.split_whitespace().map(str::parse::<u64>);
    let mut next = || -> anyhow::Result<u64> {
        fields
            .next()
            .context("short schedstat")?
            .context("cannot parse schedstat")
    };
    let stat = fs::read_to_string("/proc/thread-self/stat")
        .context("cannot read /proc/thread-self/stat")?;
    Ok(ThreadStat {
        name: std::thread::current().name().unwrap_or("").to_owned(),
        run_ns: next()?,
        wait_ns: next()?,
        slices: next()?,
        minor_faults: minor_faults(&stat),
    })
}

/// The `minflt` field of a `stat` file (the 10th; the 8th after the parenthesized name).
fn minor_faults(stat: &str) -> u64 {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(7))
        .and_then(|field| field.parse().ok())
        .unwrap_or(0)
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
            (*tid, now.since(&then))
        })
        .collect()
}

/// The ids of the threads named `name`, once there are at least `expected` of them (or after
/// two seconds). Right after a tokio runtime is built these are its workers: its blocking pool
/// starts threads on demand, later.
pub fn named_threads(name: &str, expected: usize) -> anyhow::Result<BTreeSet<u32>> {
    let started = Instant::now();
    loop {
        let found: BTreeSet<u32> = threads()?
            .into_iter()
            .filter(|(_, thread)| thread.name == name)
            .map(|(tid, _)| tid)
            .collect();
        if found.len() >= expected || started.elapsed() > Duration::from_secs(2) {
            return Ok(found);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// CPU time (user + system, in clock ticks like [`CpuTicks`]) and command line of each process
/// whose command line satisfies `matches`, by pid; other users' processes count too when
/// `/proc` shows them. Used to tell the PostgreSQL server's share from other processes.
pub fn processes(matches: impl Fn(&str) -> bool) -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let Ok(cmdline) = fs::read(dir.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !matches(&cmdline) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let field = |i: usize| -> u64 { fields.get(i).and_then(|t| t.parse().ok()).unwrap_or(0) };
        out.insert(pid, (cmdline.trim().to_owned(), field(11) + field(12)));
    }
    out
}

/// CPU ticks each process of `after` used since `before` (processes born in between count from
/// zero; those that exited in between are lost).
pub fn process_delta(
    before: &BTreeMap<u32, (String, u64)>,
    after: &BTreeMap<u32, (String, u64)>,
) -> BTreeMap<u32, (String, u64)> {
    after
        .iter()
        .map(|(pid, (cmdline, ticks))| {
            let then = before.get(pid).map_or(0, |(_, ticks)| *ticks);
            (*pid, (cmdline.clone(), ticks.saturating_sub(then)))
        })
        .collect()
}
