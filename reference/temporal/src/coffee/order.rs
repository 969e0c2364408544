//! The coffee order as the workflow sees it: validated once at the edge, then passed around
//! (and stored in Temporal's history) as a type that cannot hold a bad order.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What the shop brews, with its price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Drink {
    /// A single shot.
    Espresso,
    /// Espresso with steamed milk.
    Latte,
    /// Espresso with foamed milk.
    Cappuccino,
    /// Espresso with microfoam.
    FlatWhite,
}

impl Drink {
    /// Price in cents.
    pub fn price_cents(self) -> i64 {
        match self {
            Drink::Espresso => 250,
            Drink::Latte => 400,
            Drink::Cappuccino => 380,
            Drink::FlatWhite => 420,
        }
    }

    /// The name used on the command line and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Drink::Espresso => "espresso",
            Drink::Latte => "latte",
            Drink::Cappuccino => "cappuccino",
            Drink::FlatWhite => "flat_white",
        }
    }
}

impl FromStr for Drink {
    type Err = OrderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "espresso" => Ok(Drink::Espresso),
            "latte" => Ok(Drink::Latte),
            "cappuccino" => Ok(Drink::Cappuccino),
            "flat_white" => Ok(Drink::FlatWhite),
            other => Err(OrderError::new("drinks", format!("unknown drink {other:?}"))),
        }
    }
}

impl fmt::Display for Drink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bad order, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct OrderError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl OrderError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}

/// At most this many drinks per order.
pub const MAX_DRINKS: usize = 10;

// ANCHOR: order
/// A valid order: a named customer, one to ten drinks, a card token, and how long the
/// shop keeps the drinks before it cancels and refunds. Deserialising re-checks all of
/// it (`try_from`), so an order read back from history is as valid as the one that was
/// started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawOrder", into = "RawOrder")]
pub struct CoffeeOrder {
    customer: String,
    drinks: Vec<Drink>,
    card: String,
    pickup_within: Duration,
}
// ANCHOR_END: order

/// The wire shape of [`CoffeeOrder`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawOrder {
    /// Customer name.
    pub customer: String,
    /// Drinks, in brewing order.
    pub drinks: Vec<Drink>,
    /// Card token (the processor's test tokens: `tok_visa`, `tok_chargeDeclined`,
    /// `tok_flaky`, `tok_unreachable`).
    pub card: String,
    /// Pickup window in milliseconds.
    pub pickup_within_ms: u64,
}

impl CoffeeOrder {
    /// Checks every field; the error names the first bad one.
    pub fn new(
        customer: &str,
        drinks: Vec<Drink>,
        card: &str,
        pickup_within: Duration,
    ) -> Result<Self, OrderError> {
        let customer = customer.trim();
        if customer.is_empty() || customer.chars().count() > 64 {
            return Err(OrderError::new("customer", "must be 1 to 64 characters"));
        }
        if drinks.is_empty() || drinks.len() > MAX_DRINKS {
            return Err(OrderError::new("drinks", format!("must be 1 to {MAX_DRINKS} drinks")));
        }
        if !card.starts_with("tok_") || card.len() > 64 || !card.is_ascii() {
            return Err(OrderError::new("card", "must be a card token (tok_...)"));
        }
        if pickup_within.is_zero() || pickup_within > Duration::from_secs(24 * 3600) {
            return Err(OrderError::new("pickup_within", "must be between 1ms and 24h"));
        }
        Ok(Self { customer: customer.to_owned(), drinks, card: card.to_owned(), pickup_within })
    }

    /// Customer name.
    pub fn customer(&self) -> &str {
        &self.customer
    }

    /// Drinks, in brewing order.
    pub fn drinks(&self) -> &[Drink] {
        &self.drinks
    }

    /// Card token.
    pub fn card(&self) -> &str {
        &self.card
    }

    /// How long the drinks wait for the customer.
    pub fn pickup_within(&self) -> Duration {
        self.pickup_within
    }

    /// Sum of the drinks' prices.
    pub fn total_cents(&self) -> i64 {
        self.drinks.iter().map(|d| d.price_cents()).sum()
    }
}

impl TryFrom<RawOrder> for CoffeeOrder {
    type Error = OrderError;

    fn try_from(raw: RawOrder) -> Result<Self, Self::Error> {
        Self::new(&raw.customer, raw.drinks, &raw.card, Duration::from_millis(raw.pickup_within_ms))
    }
}

impl From<CoffeeOrder> for RawOrder {
    fn from(o: CoffeeOrder) -> Self {
        let pickup_within_ms = u64::try_from(o.pickup_within.as_millis()).unwrap_or(u64::MAX);
        Self { customer: o.customer, drinks: o.drinks, card: o.card, pickup_within_ms }
    }
}

// ANCHOR: view
/// Where an order is; the workflow's query answers with this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Taken, card not charged yet.
    Received,
    /// Charged; drinks being brewed.
    Brewing,
    /// All drinks brewed, waiting for the customer.
    Ready,
    /// The customer took the drinks.
    Collected,
    /// The card was declined; the order was cancelled.
    Declined,
    /// Not collected in time (or not brewable): cancelled and refunded.
    Refunded,
}

/// The workflow's state as a query returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// Where the order is.
    pub stage: Stage,
    /// Drinks brewed so far.
    pub drinks_ready: u32,
    /// Drinks ordered.
    pub drinks_total: u32,
    /// Whether the "customer arrived" signal came.
    pub customer_arrived: bool,
    /// The charge, once the card was charged.
    pub charge_id: Option<String>,
}
// ANCHOR_END: view

/// How an order ended: the workflow's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Brewed and handed over.
    Collected {
        /// The charge.
        charge_id: String,
    },
    /// The card was declined (or the processor never answered); nothing was charged, the
    /// order was cancelled.
    Declined {
        /// The processor's reason.
        reason: String,
    },
    /// Charged, then cancelled and refunded.
    Refunded {
        /// The refunded charge.
        charge_id: String,
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> CoffeeOrder {
        CoffeeOrder::new("ada", vec![Drink::Latte, Drink::Espresso], "tok_visa", Duration::from_secs(60))
            .unwrap()
    }

    #[test]
    fn total_is_the_sum_of_the_drinks() {
        assert_eq!(order().total_cents(), 650);
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = Duration::from_secs(1);
        let cases = [
            (CoffeeOrder::new(" ", vec![Drink::Latte], "tok_visa", ok), "customer"),
            (CoffeeOrder::new("ada", vec![], "tok_visa", ok), "drinks"),
            (CoffeeOrder::new("ada", vec![Drink::Latte; 11], "tok_visa", ok), "drinks"),
            (CoffeeOrder::new("ada", vec![Drink::Latte], "4242424242424242", ok), "card"),
            (CoffeeOrder::new("ada", vec![Drink::Latte], "tok_visa", Duration::ZERO), "pickup_within"),
        ];
        for (result, field) in cases {
            assert_eq!(result.unwrap_err().field, field);
        }
        assert_eq!("mocha".parse::<Drink>().unwrap_err().field, "drinks");
    }

    #[test]
    fn json_round_trip_revalidates() {
        let json = serde_json::to_value(order()).unwrap();
        assert_eq!(json["pickup_within_ms"], 60_000);
        let back: CoffeeOrder = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, order());
        let mut bad = json;
        bad["drinks"] = serde_json::json!([]);
        assert!(serde_json::from_value::<CoffeeOrder>(bad).is_err());
    }
}
