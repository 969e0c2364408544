//! pgbench as a limit: runs a script of SQL (a service's own transactions, as written) with a
//! fixed number of clients for a fixed time and returns its rate and latency, so a benchmark can
//! print its figure beside what the database alone does with the same work, in the same run.

use crate::percentiles_of;
use anyhow::Context as _;
use std::path::Path;
use std::process::Command;

/// Where pgbench connects.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Password (passed in `PGPASSWORD`, never on the command line).
    pub password: String,
    /// Database.
    pub database: String,
}

/// One pgbench run: script executions per second and their latency.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Script executions per second (pgbench's `tps`, one script = one "transaction" to it).
    pub per_second: f64,
    /// p50, p90, p99, max of one script execution, in milliseconds (from pgbench's log).
    pub latency_ms: [f64; 4],
}

/// Runs `script` with `clients` connections for `secs` seconds (`-n`: no vacuum of pgbench's own
/// tables). `log_dir` receives pgbench's per-transaction log, read and removed here.
pub fn run(
    target: &Target,
    script: &Path,
    clients: usize,
    secs: u64,
    log_dir: &Path,
) -> anyhow::Result<Outcome> {
    let tag = format!("pgbench-{}-{clients}", std::process::id());
    let prefix = log_dir.join(&tag);
    let output = Command::new("pgbench")
        .args(["-n", "-h", &target.host, "-p", &target.port.to_string(), "-U", &target.user])
        .args(["-c", &clients.to_string(), "-j", &clients.min(2).to_string(), "-T", &secs.to_string()])
        .arg("-f")
        .arg(script)
        .args(["--log", "--log-prefix"])
        .arg(&prefix)
        .arg(&target.database)
        .env("PGPASSWORD", &target.password)
        .output()
        .context("running pgbench (Debian: postgresql-client)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}{}",
        text,
        String::from_utf8_lossy(&output.stderr)
    );
    let per_second = text
        .lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok())
        .context("no tps in pgbench output")?;
    // Per-transaction log lines: client_id transaction_no latency_us script_no epoch epoch_us.
    let mut samples = Vec::new();
    for entry in std::fs::read_dir(log_dir)? {
        let path = entry?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{tag}."))) {
            for line in std::fs::read_to_string(&path)?.lines() {
                if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse::<u64>().ok()) {
                    samples.push(us);
                }
            }
            std::fs::remove_file(&path)?;
        }
    }
    Ok(Outcome { per_second, latency_ms: percentiles_of(&samples)? })
}
