//! `cargo run --example grpc_client`: all four call kinds against `grpc_server`, over TLS,
//! trusting target/grpc-demo/ca.pem; retries UNAVAILABLE while the server starts; a deadline on
//! the unary call; explicit message size limits, and an oversize request refused as
//! RESOURCE_EXHAUSTED.

use grpc::pb::payments_service_client::PaymentsServiceClient;
use grpc::pb::{LedgerRequest, TransactionRequest};
use std::time::Duration;

fn tx(id: &str, amount: i64, interest: i64) -> TransactionRequest {
    TransactionRequest {
        id: id.into(),
        source_account_id: "acc-a".into(),
        target_account_id: "acc-b".into(),
        amount,
        interest,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ca = std::fs::read_to_string("target/grpc-demo/ca.pem").map_err(|e| {
        anyhow::anyhow!("target/grpc-demo/ca.pem: {e} — start `cargo run --example grpc_server` first")
    })?;
    let channel = tonic::transport::Endpoint::from_static("https://127.0.0.1:50051")
        .tls_config(grpc::tls::client_tls(&ca))?
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy();
    // The client's limits, as explicit as the server's (tonic's defaults: 4 MiB in, unlimited out).
    let client = PaymentsServiceClient::with_interceptor(channel, grpc::client_interceptor)
        .max_decoding_message_size(grpc::limits::DEFAULT_MAX_MESSAGE_SIZE)
        .max_encoding_message_size(grpc::limits::DEFAULT_MAX_MESSAGE_SIZE);

    let unary = grpc::retry_unavailable(5, Duration::from_millis(200), || {
        let mut c = client.clone();
        let mut req = tonic::Request::new(tx("t-1", 10_000, 250));
        req.set_timeout(Duration::from_secs(2));
        async move { c.do_transaction(req).await }
    })
    .await?;
    println!(
        "unary:            {:?} (x-request-id {:?})",
        unary.get_ref(),
        unary.metadata().get("x-request-id")
    );

    let mut c = client.clone();
    let mut ledger = c.ledger(LedgerRequest { account_id: "acc-a".into(), count: 5 }).await?.into_inner();
    while let Some(e) = ledger.message().await? {
        println!("server streaming: {e:?}");
    }
    let summary = c
        .upload_batch(tokio_stream::iter(vec![tx("b-1", 100, 1), tx("b-2", 200, 2), tx("", 1, 0)]))
        .await?
        .into_inner();
    println!("client streaming: {summary:?}");
    let mut balances =
        c.running_balance(tokio_stream::iter(vec![tx("r-1", 100, 0), tx("r-2", 250, 0)])).await?.into_inner();
    while let Some(b) = balances.message().await? {
        println!("bidirectional:    {b:?}");
    }
    match c.do_transaction(tx("bad", 0, 0)).await {
        Err(status) => println!("validation:       {:?} {}", status.code(), status.message()),
        Ok(r) => anyhow::bail!("an invalid transfer was accepted: {r:?}"),
    }
    // 5 MB, over the 4 MiB limit. A client checks before sending: tonic 0.14 reports a request
    // over the client's own send limit as INTERNAL "h2 protocol error", not as a size problem.
    let oversize = tx(&"x".repeat(5 * 1024 * 1024), 1, 0);
    match grpc::limits::ensure_fits(&oversize, grpc::limits::DEFAULT_MAX_MESSAGE_SIZE) {
        Err(status) => println!("oversize, client: {:?} {}", status.code(), status.message()),
        Ok(()) => anyhow::bail!("a 5 MB transfer fits?"),
    }
    // Sent anyway by a client without a send limit: the server answers RESOURCE_EXHAUSTED.
    let mut unlimited = client.clone().max_encoding_message_size(usize::MAX);
    match unlimited.do_transaction(oversize).await {
        Err(status) => println!("oversize, server: {:?} {}", status.code(), status.message()),
        Ok(r) => anyhow::bail!("a 5 MB transfer was accepted: {r:?}"),
    }
    Ok(())
}
