//! All four call kinds over real sockets with TLS, plus validation codes, cancellation,
//! deadlines, retries of UNAVAILABLE, health and graceful stop.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

use cruncan_shutdown::Shutdown;
use grpc::pb::payments_service_client::PaymentsServiceClient;
use grpc::pb::{LedgerRequest, TransactionRequest};
use grpc::tls::{client_tls, dev_pki};
use grpc::{Payments, ServiceSettings, client_interceptor, retry_unavailable, serve};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

struct Server {
    port: u16,
    ca: String,
    shutdown: Shutdown,
    cancelled: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(cfg: ServiceSettings) -> Server {
    let pki = dev_pki().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = Payments::new(cfg);
    let cancelled = service.cancelled_streams.clone();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(serve(listener, Some(pki.server.clone()), service, shutdown.clone()));
    Server { port, ca: pki.ca_pem, shutdown, cancelled, task }
}

async fn channel(s: &Server) -> Channel {
    Endpoint::from_shared(format!("https://127.0.0.1:{}", s.port))
        .unwrap()
        .tls_config(client_tls(&s.ca))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

type Client = PaymentsServiceClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>,
    >,
>;

async fn client(s: &Server) -> Client {
    PaymentsServiceClient::with_interceptor(channel(s).await, client_interceptor as fn(_) -> _)
}

fn tx(id: &str, source: &str, target: &str, amount: i64, interest: i64) -> TransactionRequest {
    TransactionRequest {
        id: id.into(),
        source_account_id: source.into(),
        target_account_id: target.into(),
        amount,
        interest,
    }
}

#[tokio::test]
async fn unary_transfer_and_request_id_round_trip() {
    let s = start(ServiceSettings::default()).await;
    let mut c = client(&s).await;
    let mut req = tonic::Request::new(tx("t-1", "acc-a", "acc-b", 10_000, 250));
    req.metadata_mut().insert("x-request-id", "req-42".parse().unwrap());
    let resp = c.do_transaction(req).await.unwrap();
    assert_eq!(resp.metadata().get("x-request-id").unwrap(), "req-42");
    let body = resp.into_inner();
    assert!(body.success);
    assert_eq!(body.transferred, 10_250);
    assert!(body.error_message.is_empty());
}

#[tokio::test]
async fn invalid_transfers_are_invalid_argument_naming_the_problem() {
    let s = start(ServiceSettings::default()).await;
    let mut c = client(&s).await;
    let cases = [
        (tx("", "a", "b", 1, 0), "id"),
        (tx("t", "", "b", 1, 0), "source_account_id"),
        (tx("t", "a", "a", 1, 0), "differ"),
        (tx("t", "a", "b", 0, 0), "amount"),
        (tx("t", "a", "b", -5, 0), "amount"),
        (tx("t", "a", "b", 1, -1), "interest"),
        (tx("t", "a", "b", i64::MAX, 1), "overflows"),
    ];
    for (req, needle) in cases {
        let status = c.do_transaction(req.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{req:?}");
        assert!(status.message().contains(needle), "{req:?}: {}", status.message());
    }
}

#[tokio::test]
async fn server_streaming_in_order_and_a_cancelled_stream_stops_the_producer() {
    let s = start(ServiceSettings::default()).await;
    let mut c = client(&s).await;
    let mut stream =
        c.ledger(LedgerRequest { account_id: "acc-a".into(), count: 10 }).await.unwrap().into_inner();
    let mut seqs = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        seqs.push(e.sequence);
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());

    // A long ledger, read a little, then dropped: the server notices and stops producing.
    let mut long =
        c.ledger(LedgerRequest { account_id: "acc-a".into(), count: 1_000_000 }).await.unwrap().into_inner();
    for _ in 0..3 {
        long.message().await.unwrap().unwrap();
    }
    drop(long);
    for _ in 0..50 {
        if s.cancelled.load(Ordering::Relaxed) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server kept producing for a client that went away");
}

#[tokio::test]
async fn client_streaming_batch_gets_one_summary() {
    let s = start(ServiceSettings::default()).await;
    let mut c = client(&s).await;
    let batch = vec![
        tx("b1", "a", "b", 100, 1),
        tx("b2", "a", "b", 200, 2),
        tx("bad", "a", "a", 5, 0),
        tx("b3", "a", "c", 300, 3),
    ];
    let summary = c.upload_batch(tokio_stream::iter(batch)).await.unwrap().into_inner();
    assert_eq!((summary.accepted, summary.rejected, summary.total_transferred), (3, 1, 606));
    assert_eq!(summary.errors.len(), 1);
    assert!(summary.errors[0].starts_with("bad:"));
}

#[tokio::test]
async fn bidirectional_running_balance() {
    let s = start(ServiceSettings::default()).await;
    let mut c = client(&s).await;
    let (tx_in, rx_in) = tokio::sync::mpsc::channel(4);
    let mut replies =
        c.running_balance(tokio_stream::wrappers::ReceiverStream::new(rx_in)).await.unwrap().into_inner();
    let mut balances = Vec::new();
    // A conversation: send one, read its answer, send the next.
    for (i, amount) in [100, 250, 50].into_iter().enumerate() {
        tx_in.send(tx(&format!("r{i}"), "a", "b", amount, 0)).await.unwrap();
        balances.push(replies.message().await.unwrap().unwrap().balance);
    }
    drop(tx_in);
    assert!(replies.message().await.unwrap().is_none(), "the server ends when the client does");
    assert_eq!(balances, [100, 350, 400]);
}

#[tokio::test]
async fn health_reports_serving() {
    let s = start(ServiceSettings::default()).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&s).await);
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest { service: "cruncan.payments.v1.PaymentsService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
}

#[tokio::test]
async fn a_client_deadline_ends_a_slow_call() {
    let s =
        start(ServiceSettings { processing_delay: Duration::from_millis(800), ..ServiceSettings::default() })
            .await;
    let mut c = client(&s).await;
    let mut req = tonic::Request::new(tx("slow", "a", "b", 1, 0));
    req.set_timeout(Duration::from_millis(100));
    let started = std::time::Instant::now();
    let status = c.do_transaction(req).await.unwrap_err();
    assert!(matches!(status.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled), "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(600), "the deadline, not the server, ended the call");
}

#[tokio::test]
async fn unavailable_is_retried_until_the_server_is_up() {
    // Reserve a port, free it, and start the server on it only after a while.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pki = dev_pki().unwrap();
    let server_tls = pki.server.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        serve(listener, Some(server_tls), Payments::default(), Shutdown::new()).await
    });
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(client_tls(&pki.ca_pem))
        .unwrap()
        .connect_lazy();
    let c = PaymentsServiceClient::with_interceptor(channel, client_interceptor as fn(_) -> _);
    let mut attempts = 0;
    let resp = retry_unavailable(10, Duration::from_millis(50), || {
        attempts += 1;
        let mut c = c.clone();
        async move { c.do_transaction(tx("r", "a", "b", 5, 1)).await }
    })
    .await
    .unwrap();
    assert_eq!(resp.into_inner().transferred, 6);
    assert!(attempts > 1, "the first attempts met no server");

    // Other codes are not retried.
    let mut calls = 0;
    let status = retry_unavailable(10, Duration::from_millis(1), || {
        calls += 1;
        let mut c = c.clone();
        async move { c.do_transaction(tx("", "a", "b", 5, 1)).await }
    })
    .await
    .unwrap_err();
    assert_eq!((status.code(), calls), (tonic::Code::InvalidArgument, 1));
}

#[tokio::test]
async fn tls_is_required_and_the_ca_must_be_trusted() {
    let s = start(ServiceSettings::default()).await;
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{}", s.port)).unwrap().connect().await;
    if let Ok(ch) = plain {
        let err = PaymentsServiceClient::new(ch).do_transaction(tx("p", "a", "b", 1, 0)).await.unwrap_err();
        assert_ne!(err.code(), tonic::Code::Ok);
    }
    let other_ca = dev_pki().unwrap().ca_pem;
    let untrusted = Endpoint::from_shared(format!("https://127.0.0.1:{}", s.port))
        .unwrap()
        .tls_config(client_tls(&other_ca))
        .unwrap()
        .connect()
        .await;
    assert!(untrusted.is_err(), "a certificate from an untrusted CA must be refused");
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_call_finish() {
    let s =
        start(ServiceSettings { processing_delay: Duration::from_millis(400), ..ServiceSettings::default() })
            .await;
    let mut c = client(&s).await;
    let call = tokio::spawn(async move { c.do_transaction(tx("late", "a", "b", 7, 0)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.shutdown.trigger();
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.into_inner().transferred, 7);
    tokio::time::timeout(Duration::from_secs(5), s.task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let s = start(ServiceSettings::default()).await;
    let mut reflection = ServerReflectionClient::new(channel(&s).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies =
        reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("expected a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"cruncan.payments.v1.PaymentsService".to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");
}

#[tokio::test]
async fn a_ten_megabyte_request_is_resource_exhausted() {
    let s = start(ServiceSettings::default()).await;
    let mut c = client(&s).await;
    let huge = tx(&"x".repeat(10 * 1024 * 1024), "a", "b", 1, 0);
    let status = c.do_transaction(huge).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("the limit is: 4194304 bytes"), "{}", status.message());
    // The connection is still good for a normal call.
    assert_eq!(c.do_transaction(tx("ok", "a", "b", 1, 0)).await.unwrap().into_inner().transferred, 1);
}

#[tokio::test]
async fn an_oversize_message_in_a_client_stream_is_resource_exhausted() {
    let s =
        start(ServiceSettings { max_decoding_message_size: 64 * 1024, ..ServiceSettings::default() }).await;
    let mut c = client(&s).await;
    let batch = vec![tx("small", "a", "b", 1, 0), tx(&"y".repeat(100 * 1024), "a", "b", 1, 0)];
    let status = c.upload_batch(tokio_stream::iter(batch)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("the limit is: 65536 bytes"), "{}", status.message());
}

/// A batch of `n` rejected transfers: the summary lists one error per transfer (~60 bytes each).
fn rejected_batch(n: usize) -> Vec<TransactionRequest> {
    (0..n).map(|i| tx(&format!("same-{i}"), "a", "a", 1, 0)).collect()
}

#[tokio::test]
async fn an_oversize_response_is_resource_exhausted() {
    let s =
        start(ServiceSettings { max_encoding_message_size: 4 * 1024, ..ServiceSettings::default() }).await;
    let mut c = client(&s).await;
    // Under the limit: fine.
    assert_eq!(
        c.upload_batch(tokio_stream::iter(rejected_batch(10))).await.unwrap().into_inner().rejected,
        10
    );
    let status = c.upload_batch(tokio_stream::iter(rejected_batch(200))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("encoded message length too large"), "{}", status.message());
}

#[tokio::test]
async fn a_client_limit_is_out_of_range_in_tonic_and_the_helper_maps_it() {
    let s = start(ServiceSettings::default()).await;
    let mut c = client(&s).await.max_decoding_message_size(1024);
    let status = c.upload_batch(tokio_stream::iter(rejected_batch(100))).await.unwrap_err();
    // The client's own decoder refuses the reply: tonic says OUT_OF_RANGE on this side too.
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    let mapped = grpc::limits::resource_exhausted_if_too_large(status);
    assert_eq!(mapped.code(), tonic::Code::ResourceExhausted);
    assert!(mapped.message().contains("the limit is: 1024 bytes"), "{}", mapped.message());
}

#[tokio::test]
async fn shutdown_with_an_open_server_stream_ends_it_after_the_drain_timeout() {
    let drain = Duration::from_millis(500);
    let s = start(ServiceSettings { drain_timeout: drain, ..ServiceSettings::default() }).await;
    let mut c = client(&s).await;
    // A client that reads slowly with a long deadline: without a bounded drain, the stop would
    // wait for it for a minute.
    let mut req = tonic::Request::new(LedgerRequest { account_id: "acc-a".into(), count: 1_000_000 });
    req.set_timeout(Duration::from_secs(60));
    let mut stream = c.ledger(req).await.unwrap().into_inner();
    stream.message().await.unwrap().unwrap();

    let stopping = std::time::Instant::now();
    s.shutdown.trigger();
    // During the drain the stream still works.
    let during = stream.message().await.unwrap().unwrap();
    assert!(during.sequence > 1);
    // Then it ends with UNAVAILABLE (after whatever was already on the wire).
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), grpc::drain::DRAIN_MESSAGE);
    assert!(stopping.elapsed() >= drain, "cut before the drain timeout: {:?}", stopping.elapsed());
    // The server has stopped — long before the client's 60 s deadline.
    tokio::time::timeout(Duration::from_secs(30), s.task).await.unwrap().unwrap().unwrap();
    // And the producer noticed and stopped.
    for _ in 0..50 {
        if s.cancelled.load(Ordering::Relaxed) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the ledger producer kept running after the drain");
}

#[tokio::test]
async fn a_unary_call_longer_than_the_drain_is_cut_with_unavailable() {
    let s = start(ServiceSettings {
        processing_delay: Duration::from_secs(60),
        drain_timeout: Duration::from_millis(300),
        ..ServiceSettings::default()
    })
    .await;
    let mut c = client(&s).await;
    let call = tokio::spawn(async move { c.do_transaction(tx("slow", "a", "b", 7, 0)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.shutdown.trigger();
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    tokio::time::timeout(Duration::from_secs(30), s.task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_client_send_limit_is_internal_in_tonic_so_the_client_checks_first() {
    let s = start(ServiceSettings::default()).await;
    let mut c = client(&s).await.max_encoding_message_size(1024);
    let big = tx(&"z".repeat(2048), "a", "b", 1, 0);
    // What tonic 0.14 does with a request over the client's own send limit: nothing names the size.
    let status = c.do_transaction(big.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    // Hence the check before sending.
    let refused = grpc::limits::ensure_fits(&big, 1024).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.message().contains("over the limit of 1024 bytes"), "{}", refused.message());
}
