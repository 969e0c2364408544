//! Cucumber: the payments server against an examples table of transactions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing step panics with what it saw

use cruncan_shutdown::Shutdown;
use cucumber::{World as _, given, then, when};
use grpc::pb::TransactionRequest;
use grpc::pb::payments_service_client::PaymentsServiceClient;
use grpc::tls::{client_tls, dev_pki};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Default, cucumber::World)]
struct PaymentsWorld {
    client: Option<PaymentsServiceClient<Channel>>,
    shutdown: Option<Shutdown>,
    result: Option<String>,
}

impl Drop for PaymentsWorld {
    fn drop(&mut self) {
        if let Some(s) = &self.shutdown {
            s.trigger();
        }
    }
}

#[given("the payments server is running with TLS")]
async fn server(w: &mut PaymentsWorld) {
    let pki = dev_pki().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = Shutdown::new();
    tokio::spawn(grpc::serve(
        listener,
        Some(pki.server.clone()),
        grpc::Payments::default(),
        shutdown.clone(),
    ));
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(client_tls(&pki.ca_pem))
        .unwrap()
        .connect()
        .await
        .unwrap();
    w.client = Some(PaymentsServiceClient::new(channel));
    w.shutdown = Some(shutdown);
}

#[when(expr = "transaction {string} moves {int} plus {int} from {string} to {string}")]
async fn transfer(
    w: &mut PaymentsWorld,
    id: String,
    amount: i64,
    interest: i64,
    source: String,
    target: String,
) {
    let req =
        TransactionRequest { id, source_account_id: source, target_account_id: target, amount, interest };
    let result = w.client.as_mut().unwrap().do_transaction(req).await;
    w.result = Some(match result {
        Ok(r) => format!("transferred {}", r.into_inner().transferred),
        Err(s) => format!("{}: {}", code_name(s.code()), s.message()),
    });
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        _ => "OTHER",
    }
}

#[then(expr = "the result is {string}")]
async fn result_is(w: &mut PaymentsWorld, expected: String) {
    let got = w.result.clone().unwrap();
    assert_eq!(got, expected, "expected {expected:?}, saw {got:?}");
}

#[tokio::main]
async fn main() {
    PaymentsWorld::cucumber()
        .fail_on_skipped()
        .run_and_exit(cruncan_config::crate_dir!().join("features"))
        .await;
}
