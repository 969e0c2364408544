//! Service two: consumes the request events service one publishes, gets an OAuth2
//! client-credentials token (cached), and posts each request to the third party — at least once,
//! with retries, a dead-letter topic and de-duplication by request id.

pub mod app;
pub mod config;
pub mod handler;
pub mod retention;
pub mod store;

pub use app::{App, MIGRATOR, build};
pub use config::{Cli, Settings};
