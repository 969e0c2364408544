//! Full-text search: ranking, paging edges, size bounds, hostile queries.

use crate::helpers::*;
use serde_json::{Value, json};

async fn search(app: &TestApp, query: &[(&str, &str)]) -> reqwest::Response {
    app.http.get(format!("{}/api/v1/email", app.base)).query(query).send().await.unwrap()
}

#[tokio::test]
async fn search_ranks_pages_and_bounds() {
    let app = spawn_app(Options { workers: 0, ..Options::default() }).await;
    let body_hit = app
        .create(&json!({"from": "ops@example.com", "to": ["team@example.com"], "subject": "Weekly notes",
            "message": "the invoice for March is attached"}))
        .await;
    let subject_hit = app
        .create(
            &json!({"from": "billing@example.com", "to": ["cfo@example.com"], "subject": "Invoice overdue",
            "message": "please pay"}),
        )
        .await;
    for i in 0..3 {
        app.create(&json!({"from": "news@example.com", "to": ["all@example.com"], "subject": format!("Newsletter {i}"),
            "message": "nothing to see"}))
            .await;
    }

    // Stemming (invoices → invoice) and weights: the subject match ranks first.
    let r: Value = search(&app, &[("search", "invoices")]).await.json().await.unwrap();
    assert_eq!(r["total_count"], 2);
    let ids: Vec<&str> =
        r["emails"].as_array().unwrap().iter().map(|e| e["email_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [subject_hit.as_str(), body_hit.as_str()]);

    // Addresses are searchable.
    let r: Value = search(&app, &[("search", "cfo@example.com")]).await.json().await.unwrap();
    assert_eq!(r["total_count"], 1);

    // Paging: 5 emails by 2 → 3 pages; the last has one and no more; past the end is empty.
    let page = |p: &'static str| {
        let app = &app;
        async move { search(app, &[("page", p), ("size", "2")]).await }
    };
    let first: Value = page("1").await.json().await.unwrap();
    assert_eq!((first["total_count"].as_i64(), first["total_pages"].as_i64()), (Some(5), Some(3)));
    assert_eq!(first["has_more"], true);
    let last: Value = page("3").await.json().await.unwrap();
    assert_eq!((last["emails"].as_array().unwrap().len(), last["has_more"].as_bool()), (1, Some(false)));
    let beyond: Value = page("4").await.json().await.unwrap();
    assert_eq!((beyond["emails"].as_array().unwrap().len(), beyond["has_more"].as_bool()), (0, Some(false)));
    let mut seen: Vec<String> = Vec::new();
    for p in ["1", "2", "3"] {
        let v: Value = page(p).await.json().await.unwrap();
        seen.extend(
            v["emails"].as_array().unwrap().iter().map(|e| e["email_id"].as_str().unwrap().to_owned()),
        );
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "pages neither overlap nor skip");

    // No match at all.
    let none: Value = search(&app, &[("search", "zebra")]).await.json().await.unwrap();
    assert_eq!((none["total_count"].as_i64(), none["total_pages"].as_i64()), (Some(0), Some(0)));

    // Bounds.
    for (k, v, field) in
        [("size", "0", "size"), ("size", "101", "size"), ("page", "0", "page"), ("size", "ten", "size")]
    {
        let r = search(&app, &[(k, v)]).await;
        assert_eq!(r.status(), 400, "{k}={v}");
        let err: Value = r.json().await.unwrap();
        assert!(err["detail"].as_str().unwrap().starts_with(field), "{err}");
    }
    assert_eq!(search(&app, &[("size", "100")]).await.status(), 200);

    // Injection-looking and syntax-breaking queries are just words.
    for q in
        ["'; DROP TABLE email; --", "invoice & | ! (", "\"unclosed", "a:* <-> b", "-", "or or or", "%_\\"]
    {
        let r = search(&app, &[("search", q)]).await;
        assert_eq!(r.status(), 200, "{q}");
    }
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM email").fetch_one(&app.pool).await.unwrap();
    assert_eq!(still, 5);
    app.stop().await;
}
