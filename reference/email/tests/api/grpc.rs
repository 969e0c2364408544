//! The gRPC edge over TLS: the same use cases, statuses instead of HTTP codes, health.

use crate::helpers::*;
use email::grpc::pb::{self, email_service_client::EmailServiceClient};
use std::time::Duration;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

async fn channel(app: &TestApp) -> Channel {
    let tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&app.ca_pem)).domain_name("localhost");
    Channel::from_shared(format!("https://{}", app.grpc_addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn create_request(subject: &str) -> pb::CreateRequest {
    pb::CreateRequest {
        from: "grpc@example.com".into(),
        to: vec!["carol@example.com".into()],
        subject: subject.into(),
        message: "sent through gRPC".into(),
    }
}

#[tokio::test]
async fn grpc_create_over_tls_is_sent_and_readable() {
    let app = spawn_app(Options::default()).await;
    let channel = channel(&app).await;
    let mut client = EmailServiceClient::new(channel.clone());
    let subject = cruncan_testkit::unique_name("gRPC hello");

    let mut req = tonic::Request::new(create_request(&subject));
    req.metadata_mut().insert("idempotency-key", "grpc-key-1".parse().unwrap());
    let id = client.create(req).await.unwrap().into_inner().email_id;
    let mut again = tonic::Request::new(create_request(&subject));
    again.metadata_mut().insert("idempotency-key", "grpc-key-1".parse().unwrap());
    assert_eq!(client.create(again).await.unwrap().into_inner().email_id, id, "same key, same email");

    app.wait_for_status(&id, "sent", Duration::from_secs(15)).await;
    let m = SinkApi::stack().wait_for(&id, Duration::from_secs(5)).await;
    assert_eq!(m["subject"], subject.as_str());
    assert_eq!(m["to"][0]["address"], "carol@example.com");
    assert_eq!(m["text"].as_str().unwrap().trim_end(), "sent through gRPC");

    let got = client.get_by_id(pb::GetByIdRequest { email_id: id.clone() }).await.unwrap().into_inner();
    let email = got.email.unwrap();
    assert_eq!(
        (email.status.as_str(), email.attempts, email.subject.as_str()),
        ("sent", 1, subject.as_str())
    );
    assert!(!email.sent_at.is_empty());

    let found = client
        .search(pb::SearchRequest { search: subject.clone(), page: 0, size: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((found.total_count, found.size, found.page), (1, 10, 1));
    assert_eq!(found.emails[0].email_id, id);

    let code = |r: Result<tonic::Response<_>, tonic::Status>| r.map(|_: tonic::Response<()>| ()).unwrap_err();
    let bad_id = client
        .get_by_id(pb::GetByIdRequest { email_id: "nope".into() })
        .await
        .map(|_| tonic::Response::new(()));
    assert_eq!(code(bad_id).code(), Code::InvalidArgument);
    let unknown = client
        .get_by_id(pb::GetByIdRequest { email_id: uuid::Uuid::now_v7().to_string() })
        .await
        .map(|_| tonic::Response::new(()));
    assert_eq!(code(unknown).code(), Code::NotFound);
    let injected =
        client.create(create_request("Hi\r\nBcc: x@example.com")).await.map(|_| tonic::Response::new(()));
    let status = code(injected);
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("subject"), "{}", status.message());
    let too_big = client
        .search(pb::SearchRequest { search: String::new(), page: 1, size: 101 })
        .await
        .map(|_| tonic::Response::new(()));
    assert_eq!(code(too_big).code(), Code::InvalidArgument);

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest { service: "cruncan.email.v1.EmailService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serving.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(self::channel(&app).await);
    let list = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies =
        reflection.server_reflection_info(tokio_stream::iter(vec![list])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"cruncan.email.v1.EmailService".to_owned()), "{names:?}");
    app.stop().await;
}

#[tokio::test]
async fn grpc_serves_the_certificate_files_when_configured() {
    let pki = email::tls::dev_pki().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    let mut s = settings(&Options { workers: 0, ..Options::default() }).await;
    s.grpc.cert_path = Some(cert.display().to_string());
    s.grpc.key_path = Some(key.display().to_string());
    let app = email::build(s).await.unwrap();
    assert!(app.dev_ca_pem().is_none(), "no development CA when files are given");
    let addr = app.grpc_addr().unwrap();
    let shutdown = cruncan_shutdown::Shutdown::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem)).domain_name("localhost");
    let channel =
        Channel::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).unwrap().connect().await;
    let mut client = EmailServiceClient::new(channel.unwrap());
    let status = client.get_by_id(pb::GetByIdRequest { email_id: "x".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "the call went through TLS with the file's certificate");
    shutdown.trigger();
    task.await.unwrap().unwrap();
}
