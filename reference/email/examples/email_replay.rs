//! `cargo run --example email_replay -- --from-start | --last | --from-seq N | --since 30s |
//! --at 2026-11-24T10:00:00Z [--dead-letters]`: prints the `email.send` history of the EMAILS
//! stream (or its dead letters, with their reasons), one JSON line per event, from the chosen start
//! position (the ones NATS Streaming offered).

use clap::Parser;
use email::replay::{StartAt, parse_age, replay};

/// Replays the email.send history.
#[derive(Debug, Parser)]
#[command(group(clap::ArgGroup::new("start").required(true).args(["from_start", "last", "from_seq", "since", "at"])))]
struct Args {
    /// From the first event kept
    #[arg(long)]
    from_start: bool,
    /// Only the newest event
    #[arg(long)]
    last: bool,
    /// From this stream sequence
    #[arg(long)]
    from_seq: Option<u64>,
    /// Events of the last 30s, 5m, 2h, 1d
    #[arg(long)]
    since: Option<String>,
    /// Events stored at or after this RFC 3339 time
    #[arg(long)]
    at: Option<chrono::DateTime<chrono::Utc>>,
    /// Most events to print
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// NATS server
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:14222")]
    nats_url: String,
    /// Stream name
    #[arg(long, default_value = "EMAILS")]
    stream: String,
    /// Replay email.send.dlq instead of email.send
    #[arg(long)]
    dead_letters: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let start = if args.from_start {
        StartAt::FromStart
    } else if args.last {
        StartAt::Last
    } else if let Some(seq) = args.from_seq {
        StartAt::Sequence(seq)
    } else if let Some(age) = &args.since {
        StartAt::Time(chrono::Utc::now() - parse_age(age)?)
    } else if let Some(at) = args.at {
        StartAt::Time(at)
    } else {
        anyhow::bail!("give a start position");
    };
    let js = async_nats::jetstream::new(async_nats::connect(&args.nats_url).await?);
    let subject =
        if args.dead_letters { email::jetstream::DLQ_SUBJECT } else { email::jetstream::SEND_SUBJECT };
    for event in replay(&js, &args.stream, subject, &start, args.limit).await? {
        println!("{}", serde_json::to_string(&event)?);
    }
    Ok(())
}
