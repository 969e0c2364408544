//! The user and product services as the order service sees them: typed calls over the
//! resilient [`Dependency`] stacks, and the price cache that answers when products cannot.

use super::place::{Catalog, Line, Stock, UserCheck, Users};
use crate::deadline::Deadline;
use crate::products::{Product, ReleaseBody, ReserveBody};
use crate::resilience::{Call, Dependency, DependencyError, Reply};
use crate::users::Validity;
use async_trait::async_trait;
use cruncan_http::ErrorBody;
use http::StatusCode;
use opentelemetry::metrics::Counter;
use serde::de::DeserializeOwned;
use std::time::Duration;
use uuid::Uuid;

fn parse<T: DeserializeOwned>(dep: &Dependency, reply: &Reply) -> Result<T, DependencyError> {
    serde_json::from_slice(&reply.body).map_err(|e| dep.protocol(format!("{}: {e}", reply.status)))
}

/// The user service.
#[derive(Debug, Clone)]
pub struct HttpUsers(pub Dependency);

#[async_trait]
impl Users for HttpUsers {
    async fn check(&self, user: Uuid, deadline: Deadline) -> Result<UserCheck, DependencyError> {
        let reply = self.0.send(Call::get(format!("/users/{user}/validate"), deadline)).await?;
        match reply.status {
            StatusCode::OK if parse::<Validity>(&self.0, &reply)?.valid => Ok(UserCheck::Valid),
            StatusCode::OK => Ok(UserCheck::Inactive),
            StatusCode::NOT_FOUND => Ok(UserCheck::Unknown),
            other => Err(self.0.protocol(format!("validate answered {other}"))),
        }
    }
}

/// The product service, with a price cache.
#[derive(Debug, Clone)]
pub struct HttpCatalog {
    dep: Dependency,
    prices: Option<moka::future::Cache<Uuid, i64>>,
    fallbacks: Counter<u64>,
}

impl HttpCatalog {
    /// Calls through `dep`; prices stay usable for `staleness` after they were fetched (zero:
    /// no fallback).
    pub fn new(dep: Dependency, staleness: Duration) -> Self {
        let prices = (!staleness.is_zero())
            .then(|| moka::future::Cache::builder().time_to_live(staleness).max_capacity(100_000).build());
        let fallbacks = cruncan_telemetry::meter("services")
            .u64_counter("services.price.fallbacks")
            .with_description("Prices served from cache because the product service failed")
            .build();
        Self { dep, prices, fallbacks }
    }

    /// The dependency (tests read its breaker).
    pub fn dependency(&self) -> &Dependency {
        &self.dep
    }
}

#[async_trait]
impl Catalog for HttpCatalog {
    // ANCHOR: price_fallback
    async fn price(&self, product: Uuid, deadline: Deadline) -> Result<Option<i64>, DependencyError> {
        let failure = match self.dep.send(Call::get(format!("/products/{product}"), deadline)).await {
            Ok(reply) if reply.status == StatusCode::OK => {
                let price = parse::<Product>(&self.dep, &reply)?.price_cents;
                if let Some(cache) = &self.prices {
                    cache.insert(product, price).await;
                }
                return Ok(Some(price));
            }
            Ok(reply) if reply.status == StatusCode::NOT_FOUND => return Ok(None),
            Ok(reply) => self.dep.protocol(format!("product answered {}", reply.status)),
            Err(e) => e,
        };
        // The cache forgets a price after the staleness bound, so a fallback is never older.
        match &self.prices {
            Some(cache) => match cache.get(&product).await {
                Some(price) => {
                    tracing::warn!(%product, error = %failure, "serving a cached price");
                    self.fallbacks.add(1, &[]);
                    Ok(Some(price))
                }
                None => Err(failure),
            },
            None => Err(failure),
        }
    }
    // ANCHOR_END: price_fallback

    async fn reserve(
        &self,
        reservation: Uuid,
        line: Line,
        deadline: Deadline,
    ) -> Result<Stock, DependencyError> {
        let body = ReserveBody {
            product_id: line.product_id,
            quantity: line.quantity,
            reservation_id: Some(reservation),
        };
        let body = serde_json::to_value(body).map_err(|e| self.dep.protocol(e.to_string()))?;
        // Idempotent thanks to the reservation id, so the retry layer may send it again.
        let reply = self.dep.send(Call::post("/products/reserve", body, deadline, true)).await?;
        match reply.status {
            StatusCode::OK => Ok(Stock::Reserved),
            StatusCode::NOT_FOUND => Ok(Stock::UnknownProduct),
            StatusCode::CONFLICT if parse::<ErrorBody>(&self.dep, &reply)?.code == "insufficient_stock" => {
                Ok(Stock::Insufficient)
            }
            other => Err(self.dep.protocol(format!("reserve answered {other}"))),
        }
    }

    async fn release(&self, reservation: Uuid, deadline: Deadline) -> Result<(), DependencyError> {
        let body = serde_json::to_value(ReleaseBody { reservation_id: reservation })
            .map_err(|e| self.dep.protocol(e.to_string()))?;
        let reply = self.dep.send(Call::post("/products/release", body, deadline, true)).await?;
        match reply.status {
            StatusCode::OK => Ok(()),
            other => Err(self.dep.protocol(format!("release answered {other}"))),
        }
    }
}
