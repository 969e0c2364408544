//! `cargo run --example email_grpc_client -- --to you@example.com`: creates an email over gRPC
//! (TLS, trusting the dev CA `email_service` wrote to target/email-demo/ca.pem), waits until it
//! is sent and prints it, then searches for its subject.

use clap::Parser;
use email::grpc::pb::{self, email_service_client::EmailServiceClient};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// Creates, reads and searches an email over gRPC.
#[derive(Debug, Parser)]
struct Args {
    /// gRPC endpoint
    #[arg(long, default_value = "https://127.0.0.1:8301")]
    endpoint: String,
    /// CA certificate of the server
    #[arg(long, default_value = "target/email-demo/ca.pem")]
    ca: String,
    /// Recipient
    #[arg(long, default_value = "you@example.com")]
    to: String,
    /// Subject
    #[arg(long, default_value = "Hello over gRPC")]
    subject: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ca = std::fs::read_to_string(&args.ca)?;
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    let channel = Channel::from_shared(args.endpoint)?.tls_config(tls)?.connect().await?;
    let mut client = EmailServiceClient::new(channel);
    let created = client
        .create(pb::CreateRequest {
            from: "grpc-demo@example.com".into(),
            to: vec![args.to],
            subject: args.subject.clone(),
            message: "Sent through the gRPC edge.".into(),
        })
        .await?
        .into_inner();
    println!("created {}", created.email_id);
    for _ in 0..50 {
        let got = client.get_by_id(pb::GetByIdRequest { email_id: created.email_id.clone() }).await?;
        let email = got.into_inner().email.unwrap_or_default();
        if email.status != "queued" {
            println!("{} after {} attempt(s): {email:?}", email.status, email.attempts);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let found =
        client.search(pb::SearchRequest { search: args.subject, page: 1, size: 5 }).await?.into_inner();
    println!("search: {} match(es) on {} page(s)", found.total_count, found.total_pages);
    Ok(())
}
