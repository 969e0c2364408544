//! Service two against the real Kafka and PostgreSQL of the local stack, with wiremock as the
//! token server and the third party. Each test has its own topic, group and database.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

mod crash;
mod delivery;
mod helpers;
mod ordering;
mod outage;
mod poison;
mod redrive;
mod retention;
mod retries;
mod shutdown;
mod store;
mod telemetry;
mod token;
