//! The processes under test: started from the release binaries, stopped (SIGTERM, then wait)
//! when dropped, their resident memory sampled while they work.

use anyhow::Context as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A child process killed (SIGTERM, then wait) when dropped.
pub struct Proc(Child, &'static str);

impl Proc {
    /// Starts `cmd`, its output going to `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: &std::path::Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(log)?;
        let child = cmd
            .stdout(file.try_clone()?)
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self(child, name))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.0.id())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
        eprintln!("bench: stopped {}", self.1);
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Samples the RSS of `procs` every 200 ms until `stop`; returns the peak (KiB) per process.
pub fn sample_rss(
    procs: Vec<(&'static str, u32)>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(&'static str, u64)>> {
    tokio::spawn(async move {
        let mut peak = vec![0u64; procs.len()];
        while !stop.load(Ordering::Relaxed) {
            for (i, (_, pid)) in procs.iter().enumerate() {
                peak[i] = peak[i].max(rss_kib(*pid));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        procs.iter().map(|(n, _)| *n).zip(peak).collect()
    })
}

/// Waits until `url` answers 2xx (60 s at most).
pub async fn wait_http(url: &str, what: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{what} did not become ready at {url}")
}
