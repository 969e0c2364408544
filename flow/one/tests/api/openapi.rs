use crate::helpers::spawn_app;
use std::process::Command;

#[tokio::test]
async fn openapi_describes_both_endpoints_with_their_errors_and_docs_are_served() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let post = &doc["paths"]["/one"]["post"];
    for status in ["201", "400", "413", "415", "422", "503"] {
        assert!(post["responses"][status].is_object(), "POST /one documents {status}");
    }
    let get = &doc["paths"]["/one/{id}"]["get"];
    for status in ["200", "400", "404", "503"] {
        assert!(get["responses"][status].is_object(), "GET /one/{{id}} documents {status}");
    }
    assert!(post["responses"]["400"].to_string().contains("ErrorBody"));
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // The limits the service enforces are in the document (schema-valid means accepted).
    let request = &doc["components"]["schemas"]["OneRequest"]["properties"];
    assert_eq!(request["user_id"]["maxLength"], app.settings.limits.max_user_id_len);
    assert_eq!(request["user_id"]["minLength"], 1);
    assert_eq!(request["data"]["maxItems"], app.settings.limits.max_data_entries);
    assert!(post["responses"]["400"]["content"]["application/problem+json"].is_object());
    assert_eq!(get["parameters"][0]["schema"]["pattern"], "^0[0-9]{19}$");

    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"), "Swagger UI page");
    app.stop().await;
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_one")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--config-dir",
        "--environment",
        "--host",
        "--port",
        "--database-url",
        "--brokers",
        "--topic",
        "--node-id",
        "--pod-ip",
        "--log-filter",
    ] {
        assert!(help.contains(flag), "--help lists {flag}:\n{help}");
    }
}
