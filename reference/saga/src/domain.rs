//! Parse, don't validate: the body of `POST /orders` becomes a [`NewOrder`] at the edge or a
//! [`ValidationError`] naming the field. Past the edge, amounts are integer minor units
//! ([`Money`]), never floats, and every step is addressed by an [`IdempotencyKey`].

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use uuid::Uuid;

/// Largest number of lines in one order.
pub const MAX_ITEMS: usize = 50;
/// Largest quantity of one line.
pub const MAX_QUANTITY: u32 = 10_000;
/// Largest unit price, in minor units (1,000,000.00).
pub const MAX_PRICE: i64 = 100_000_000;

/// An amount in minor units (cents). Serialised as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Money(pub i64);

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, (self.0 % 100).abs())
    }
}

/// One order line that passed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    /// Product, non-empty.
    pub product_id: String,
    /// Units, 1..=[`MAX_QUANTITY`].
    pub quantity: u32,
    /// Unit price.
    pub price: Money,
}

/// The body of `POST /orders` as sent; prices are decimal numbers as in the seed.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateOrderBody {
    /// Who orders.
    pub user_id: String,
    /// What.
    pub items: Vec<CreateOrderItem>,
}

/// One line of [`CreateOrderBody`].
#[derive(Debug, Clone, Deserialize)]
pub struct CreateOrderItem {
    /// Product id.
    pub product_id: String,
    /// Units.
    pub quantity: i64,
    /// Unit price, e.g. `19.99`.
    pub price: f64,
}

impl CreateOrderBody {
    /// A body of `(product, quantity, price)` lines, as a client would send it (tests, benches).
    pub fn from_lines(user_id: &str, lines: &[(&str, i64, f64)]) -> Self {
        let items = lines
            .iter()
            .map(|&(product_id, quantity, price)| CreateOrderItem {
                product_id: product_id.into(),
                quantity,
                price,
            })
            .collect();
        Self { user_id: user_id.into(), items }
    }
}

/// A field that failed validation, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// JSON path of the field, e.g. `items[1].quantity`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An order that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// Who orders.
    pub user_id: String,
    /// At least one line.
    pub items: Vec<OrderItem>,
}

impl CreateOrderBody {
    /// Checks every field; the error names the first bad one.
    pub fn validate(self) -> Result<NewOrder, ValidationError> {
        let err = |field: String, message: &str| ValidationError { field, message: message.into() };
        let user_id = self.user_id.trim();
        if user_id.is_empty() || user_id.chars().count() > 64 {
            return Err(err("user_id".into(), "must be 1 to 64 characters"));
        }
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            return Err(err("items".into(), "must have 1 to 50 lines"));
        }
        let mut items = Vec::with_capacity(self.items.len());
        for (i, item) in self.items.into_iter().enumerate() {
            let product_id = item.product_id.trim();
            if product_id.is_empty() || product_id.chars().count() > 64 {
                return Err(err(format!("items[{i}].product_id"), "must be 1 to 64 characters"));
            }
            let quantity = u32::try_from(item.quantity)
                .ok()
                .filter(|q| (1..=MAX_QUANTITY).contains(q))
                .ok_or_else(|| err(format!("items[{i}].quantity"), "must be 1 to 10000"))?;
            let price = to_minor_units(item.price).ok_or_else(|| {
                err(format!("items[{i}].price"), "must be 0 to 1000000 with at most 2 decimals")
            })?;
            items.push(OrderItem { product_id: product_id.to_owned(), quantity, price });
        }
        Ok(NewOrder { user_id: user_id.to_owned(), items })
    }
}

/// `19.99` → 1999; `None` for negatives, NaN, too large or more than two decimals.
fn to_minor_units(price: f64) -> Option<Money> {
    let cents = (price * 100.0).round();
    let exact = (price * 100.0 - cents).abs() < 1e-6;
    (price.is_finite() && exact && (0.0..=MAX_PRICE as f64).contains(&cents)).then_some(Money(cents as i64))
}

impl NewOrder {
    /// SHA-256 of the validated order (user and lines, prices in minor units): the same order
    /// with its fields in another order, other whitespace or extra unknown fields is the same.
    pub fn fingerprint(&self) -> Vec<u8> {
        // Strings length-prefixed, numbers fixed-width: no two orders hash the same bytes.
        fn text(hash: &mut Sha256, s: &str) {
            hash.update((s.len() as u64).to_be_bytes());
            hash.update(s.as_bytes());
        }
        let mut hash = Sha256::new();
        text(&mut hash, &self.user_id);
        for item in &self.items {
            text(&mut hash, &item.product_id);
            hash.update(item.quantity.to_be_bytes());
            hash.update(item.price.0.to_be_bytes());
        }
        hash.finalize().to_vec()
    }

    /// Sum of price × quantity of every line.
    pub fn total(&self) -> Money {
        Money(self.items.iter().map(|i| i.price.0 * i64::from(i.quantity)).sum())
    }
}

/// What every participant is told about the order: the saga's input, fixed when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSaga {
    /// The saga (and correlation) id.
    pub saga_id: Uuid,
    /// The order the saga creates, chosen before the first step so a retry creates the same one.
    pub order_id: Uuid,
    /// Who orders.
    pub user_id: String,
    /// Every line (all of them are reserved, not only the first).
    pub items: Vec<OrderItem>,
    /// Amount to charge.
    pub total: Money,
}

impl OrderSaga {
    /// A new saga with fresh ids for `order`.
    pub fn new(order: NewOrder) -> Self {
        let total = order.total();
        Self {
            saga_id: Uuid::new_v4(),
            order_id: Uuid::new_v4(),
            user_id: order.user_id,
            items: order.items,
            total,
        }
    }

    /// The idempotency key of `step` in this saga.
    pub fn key(&self, step: Step) -> IdempotencyKey {
        IdempotencyKey::new(self.saga_id, step)
    }
}

/// The four steps of the order saga, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Step {
    /// CreateOrder / CancelOrder (orders).
    CreateOrder,
    /// ProcessPayment / RefundPayment (payments).
    ProcessPayment,
    /// ReserveInventory / ReleaseReservation (inventory).
    ReserveInventory,
    /// ScheduleShipment / CancelShipment (shipping).
    ScheduleShipment,
}

impl Step {
    /// Every step, in execution order.
    pub const ALL: [Step; 4] =
        [Step::CreateOrder, Step::ProcessPayment, Step::ReserveInventory, Step::ScheduleShipment];

    /// The step's name, e.g. `ProcessPayment`.
    pub fn name(self) -> &'static str {
        match self {
            Step::CreateOrder => "CreateOrder",
            Step::ProcessPayment => "ProcessPayment",
            Step::ReserveInventory => "ReserveInventory",
            Step::ScheduleShipment => "ScheduleShipment",
        }
    }

    /// The name of its compensation, e.g. `RefundPayment`.
    pub fn compensation_name(self) -> &'static str {
        match self {
            Step::CreateOrder => "CancelOrder",
            Step::ProcessPayment => "RefundPayment",
            Step::ReserveInventory => "ReleaseReservation",
            Step::ScheduleShipment => "CancelShipment",
        }
    }

    /// Parses [`Step::name`].
    pub fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `<saga id>:<step>`: the same for a step and its compensation, so both land on one row of the
/// participant's `idempotency` table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key of `step` in saga `saga_id`.
    pub fn new(saga_id: Uuid, step: Step) -> Self {
        Self(format!("{saga_id}:{step}"))
    }

    /// Parses a key received from the wire (`<uuid>:<step name>`).
    pub fn parse(s: &str) -> Option<Self> {
        let (saga, step) = s.split_once(':')?;
        Some(Self::new(Uuid::parse_str(saga).ok()?, Step::from_name(step)?))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> Result<NewOrder, ValidationError> {
        serde_json::from_value::<CreateOrderBody>(json).unwrap().validate()
    }

    #[test]
    fn prices_become_minor_units_and_the_total_counts_every_line() {
        let order = body(serde_json::json!({"user_id": "u1", "items": [
            {"product_id": "product_1", "quantity": 2, "price": 19.99},
            {"product_id": "product_2", "quantity": 1, "price": 0.1},
        ]}))
        .unwrap();
        assert_eq!(order.items[0].price, Money(1999));
        assert_eq!(order.total(), Money(2 * 1999 + 10));
        assert_eq!(order.total().to_string(), "40.08");
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (serde_json::json!({"user_id": " ", "items": []}), "user_id"),
            (serde_json::json!({"user_id": "u", "items": []}), "items"),
            (
                serde_json::json!({"user_id": "u", "items": [{"product_id": "", "quantity": 1, "price": 1}]}),
                "items[0].product_id",
            ),
            (
                serde_json::json!({"user_id": "u", "items": [
                    {"product_id": "p", "quantity": 1, "price": 1},
                    {"product_id": "p", "quantity": 0, "price": 1}]}),
                "items[1].quantity",
            ),
            (
                serde_json::json!({"user_id": "u", "items": [{"product_id": "p", "quantity": 1, "price": -1}]}),
                "items[0].price",
            ),
            (
                serde_json::json!({"user_id": "u", "items": [{"product_id": "p", "quantity": 1, "price": 1.234}]}),
                "items[0].price",
            ),
        ];
        for (json, field) in cases {
            assert_eq!(body(json.clone()).unwrap_err().field, field, "{json}");
        }
    }

    #[test]
    fn keys_round_trip_and_reject_garbage() {
        let id = Uuid::new_v4();
        let key = IdempotencyKey::new(id, Step::ReserveInventory);
        assert_eq!(key.as_str(), format!("{id}:ReserveInventory"));
        assert_eq!(IdempotencyKey::parse(key.as_str()), Some(key));
        assert_eq!(IdempotencyKey::parse("nope:CreateOrder"), None);
        assert_eq!(IdempotencyKey::parse(&format!("{id}:Teleport")), None);
    }
}
