//! `cargo run --example coffee_order -- <command>`: the customer's and the counter's side.
//!
//! ```text
//! place --customer ada --drink latte --drink espresso [--card tok_visa] [--pickup-secs 300]
//!                                  start an order; prints its id
//! arrive ID                        signal "customer arrived"
//! status ID                        query where the order is (needs a worker up)
//! wait ID                          wait for the outcome
//! history ID                       which activities ran, on which attempt and worker
//! ```
//! Cards: `tok_visa` (approved), `tok_chargeDeclined` (declined), `tok_flaky` (processor times
//! out twice, then approves), `tok_unreachable` (processor never answers).

use clap::{Parser, Subcommand};
use std::time::Duration;
use temporal_ref::coffee::client::{customer_arrived, outcome, place_order, status};
use temporal_ref::coffee::{CoffeeOrder, Drink};
use temporal_ref::connect::{TemporalSettings, connect};
use temporal_ref::worker::TASK_QUEUE;

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// Task queue the workers poll.
    #[arg(long, global = true, default_value = TASK_QUEUE)]
    task_queue: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start an order and print its id.
    Place {
        #[arg(long)]
        customer: String,
        /// A drink (espresso, latte, cappuccino, flat_white); repeat for more.
        #[arg(long = "drink", required = true)]
        drinks: Vec<String>,
        #[arg(long, default_value = "tok_visa")]
        card: String,
        /// Seconds the drinks wait for the customer before the order is refunded.
        #[arg(long, default_value_t = 300)]
        pickup_secs: u64,
        /// Order id (default: a new one).
        #[arg(long)]
        id: Option<String>,
    },
    /// Signal that the customer arrived.
    Arrive { id: String },
    /// Query the order's state.
    Status { id: String },
    /// Wait for the outcome.
    Wait { id: String },
    /// List the activities that ran.
    History { id: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = connect(&TemporalSettings::from_env("coffee-order")).await?;
    match args.command {
        Command::Place { customer, drinks, card, pickup_secs, id } => {
            let drinks = drinks.iter().map(|d| d.parse()).collect::<Result<Vec<Drink>, _>>()?;
            let order = CoffeeOrder::new(&customer, drinks, &card, Duration::from_secs(pickup_secs))?;
            let id =
                id.unwrap_or_else(|| format!("coffee-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
            place_order(&client, &args.task_queue, &id, order).await?;
            println!("{id}");
        }
        Command::Arrive { id } => customer_arrived(&client, &id).await?,
        Command::Status { id } => println!("{}", serde_json::to_string(&status(&client, &id).await?)?),
        Command::Wait { id } => println!("{}", serde_json::to_string(&outcome(&client, &id).await?)?),
        Command::History { id } => {
            for run in temporal_ref::history::activity_runs(&client, &id).await? {
                println!("{:<36} attempt {}  {}", run.activity, run.attempt, run.worker);
            }
        }
    }
    Ok(())
}
