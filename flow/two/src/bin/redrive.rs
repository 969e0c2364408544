//! `redrive`: re-publishes dead letters to the topic they came from, once the reason they failed
//! is fixed. `cargo run -p two --bin redrive -- --from one-request-local.dlq --filter reason=permanent`.

use clap::Parser;
use cruncan_kafka::{Producer, ProducerSettings, RedriveOptions};

#[derive(Debug, Parser)]
#[command(name = "redrive", about = "Re-publish dead letters to their original topic")]
struct Args {
    /// The dead-letter topic to read, e.g. one-request-local.dlq
    #[arg(long)]
    from: String,
    /// Publish here instead of each message's original topic (its dlq.original.topic header)
    #[arg(long)]
    to: Option<String>,
    /// Only dead letters with this header value; `reason=permanent` means `dlq.reason=permanent`
    #[arg(long, value_parser = parse_filter)]
    filter: Vec<(String, String)>,
    /// Print what would be redriven; publish and commit nothing
    #[arg(long)]
    dry_run: bool,
    /// Stop after this many messages
    #[arg(long)]
    limit: Option<usize>,
    /// Consumer group that remembers the progress (default: redrive.<from>); a new one starts over
    #[arg(long)]
    group: Option<String>,
    /// Kafka brokers
    #[arg(long, env = "KAFKA_BROKERS", default_value = cruncan_kafka::LOCAL_BROKERS)]
    brokers: String,
}

/// `name=value`; a name without a dot is a dead-letter header (`reason` → `dlq.reason`).
fn parse_filter(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not name=value"))?;
    let k = if k.contains('.') { k.to_owned() } else { format!("dlq.{k}") };
    Ok((k, v.to_owned()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let opts = RedriveOptions {
        brokers: args.brokers.clone(),
        group_id: args.group.clone().unwrap_or_else(|| format!("redrive.{}", args.from)),
        from: args.from,
        to: args.to,
        filters: args.filter,
        dry_run: args.dry_run,
        limit: args.limit,
    };
    let producer = Producer::new(&args.brokers, &ProducerSettings::new("redrive"))?;
    let report = cruncan_kafka::redrive(&opts, &producer).await?;
    producer.flush(std::time::Duration::from_secs(10))?;
    let verb = if opts.dry_run { "would redrive" } else { "redriven" };
    for (key, to) in &report.messages {
        println!("{verb}: {key} -> {to}");
    }
    println!("read {}, {verb} {}, skipped {} (filters)", report.read, report.redriven, report.skipped);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_dead_letter_headers_by_default() {
        assert_eq!(parse_filter("reason=permanent").unwrap(), ("dlq.reason".into(), "permanent".into()));
        assert_eq!(parse_filter("x.y=1").unwrap(), ("x.y".into(), "1".into()));
        assert!(parse_filter("reason").is_err());
    }
}
