//! Deletes the topics test runs left on the stack's broker more than an hour ago (`make test`
//! runs it first). A test uses its topic for seconds to minutes, so an hour-old one is stale even
//! when another run is under way.
//!
//! `--also-untimed` also deletes the `prefix-<8 hex>` topics that test runs made before names
//! carried their time (and the shell scripts' `schemathesis-<pid>`), once, on a stack that predates
//! the change: their age is unknown, so run it only when no test is running.

use cruncan_testkit::{brokers, created_at, delete_topics_where};
use std::time::{Duration, SystemTime};

/// A name test runs made before [`cruncan_testkit::unique_name`] carried the time: `prefix-<8 hex>`
/// with at least one letter (so a date such as `audit-20261124` is not one), or a script's
/// `schemathesis-<pid>`.
fn untimed_test_name(name: &str) -> bool {
    let base = name.strip_suffix(".dlq").unwrap_or(name);
    let Some((prefix, last)) = base.rsplit_once('-') else { return false };
    let hex8 = last.len() == 8
        && last.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && last.bytes().any(|b| b.is_ascii_alphabetic());
    let script_pid = matches!(prefix, "schemathesis" | "st") && last.bytes().all(|b| b.is_ascii_digit());
    created_at(name).is_none() && !prefix.is_empty() && (hex8 || script_pid)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let untimed = std::env::args().any(|a| a == "--also-untimed");
    let cutoff = SystemTime::now() - Duration::from_secs(3600);
    let deleted = delete_topics_where(&brokers(), |name| {
        created_at(name).is_some_and(|made| made < cutoff) || (untimed && untimed_test_name(name))
    })
    .await?;
    if !deleted.is_empty() {
        println!("deleted {} stale test topics", deleted.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::untimed_test_name;

    #[test]
    fn only_the_old_test_name_forms_are_untimed_test_names() {
        for name in ["two-test-0a1b2c3d", "bdd-flow-0a1b2c3d.dlq", "schemathesis-6789", "st-27179"] {
            assert!(untimed_test_name(name), "{name}");
        }
        let young = cruncan_testkit::unique_name("two-test");
        for name in [
            "flow.requests",
            "saga.events.dlq",
            "orders-report",
            "-0a1b2c3d",
            "x-0A1B2C3D",
            "audit-20261124",
            &young,
        ] {
            assert!(!untimed_test_name(name), "{name}");
        }
    }
}
