//! The retention job against the real PostgreSQL, the example binary's exit codes, and the
//! CronJob manifest's fields.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

use chrono::{Duration as Days, Utc};
use std::process::Command;
use std::time::Duration;

async fn seeded() -> (sqlx::PgPool, cruncan_db::DatabaseSettings) {
    let db = cruncan_db::create_test_database(&cruncan_db::local_test_settings().unwrap()).await.unwrap();
    let pool = db.lazy_pool();
    one::MIGRATOR.run(&pool).await.unwrap();
    for i in 0..15 {
        let age = if i < 10 { Days::days(40) } else { Days::hours(1) };
        let id = format!("{i:020}");
        sqlx::query("INSERT INTO request (req_id, user_id, created_at, updated_at, req) VALUES ($1, 'u', $2, $2, '{}')")
            .bind(&id)
            .bind(Utc::now() - age)
            .execute(&pool)
            .await
            .unwrap();
        if i % 4 == 0 {
            sqlx::query("INSERT INTO idempotency_key (key, request_hash, response_status, response_body, req_id) VALUES ($1, 'h', 201, '{}', $1)")
                .bind(&id)
                .execute(&pool)
                .await
                .unwrap();
        }
    }
    (pool, db)
}

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn deletes_expired_rows_in_batches_and_a_dry_run_deletes_nothing() {
    let (pool, _) = seeded().await;
    let retention = |dry_run| cronjob::Retention {
        cutoff: Utc::now() - Days::days(30),
        batch_size: 3,
        dry_run,
        pause: Duration::ZERO,
    };
    let dry = cronjob::run(&pool, &retention(true)).await.unwrap();
    assert_eq!(dry, cronjob::Summary { rows: 10, batches: 0, dry_run: true });
    assert_eq!(dry.to_string(), "retention: dry run, would delete 10 request rows");
    assert_eq!(count(&pool, "SELECT count(*) FROM request").await, 15);

    let done = cronjob::run(&pool, &retention(false)).await.unwrap();
    assert_eq!(done, cronjob::Summary { rows: 10, batches: 4, dry_run: false });
    assert_eq!(done.to_string(), "retention: deleted 10 request rows in 4 batches");
    assert_eq!(count(&pool, "SELECT count(*) FROM request").await, 5);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM request WHERE created_at < now() - interval '30 days'").await,
        0
    );
    // The expired rows' idempotency keys went with them; the fresh ones' stayed.
    assert_eq!(count(&pool, "SELECT count(*) FROM idempotency_key").await, 1);

    let again = cronjob::run(&pool, &retention(false)).await.unwrap();
    assert_eq!(again.rows, 0, "a second run finds nothing");
}

fn example() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples/retention_cleanup")
}

#[tokio::test]
async fn the_program_prints_a_summary_and_exits_with_codes_a_scheduler_can_act_on() {
    let (_pool, db) = seeded().await;
    let url = format!("postgres://postgres:postgres@{}:{}/{}", db.host, db.port, db.name);
    let run = |args: &[&str], url: &str| {
        Command::new(example()).args(args).env("DATABASE_URL", url).output().unwrap()
    };

    let ok = run(&["--retention-days", "30", "--batch-size", "4", "--pause-ms", "0"], &url);
    assert_eq!(ok.status.code(), Some(cronjob::EXIT_OK), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "retention: deleted 10 request rows in 3 batches");

    let bad_args = run(&["--retention-days", "0"], &url);
    assert_eq!(bad_args.status.code(), Some(cronjob::EXIT_USAGE), "bad arguments: do not retry");

    let down = run(&["--retention-days", "30"], "postgres://postgres:postgres@127.0.0.1:1/one");
    assert_eq!(down.status.code(), Some(cronjob::EXIT_FAILED), "database unreachable: retry");
    assert!(String::from_utf8_lossy(&down.stderr).contains("retention: failed"));
}

#[test]
fn the_cronjob_manifest_has_what_a_scheduler_needs() {
    let path = cruncan_config::workspace_dir().join("deploy/k8s/cronjob.yaml");
    let cj: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let spec = &cj["spec"];
    assert_eq!(cj["kind"], "CronJob");
    assert!(spec["schedule"].as_str().unwrap().split_whitespace().count() == 5, "a five-field schedule");
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    assert!(spec["startingDeadlineSeconds"].as_u64().unwrap() > 0);
    let job = &spec["jobTemplate"]["spec"];
    assert!(job["backoffLimit"].as_u64().unwrap() >= 1);
    assert!(job["activeDeadlineSeconds"].as_u64().unwrap() > 0);
    let pod = &job["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "OnFailure");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert!(c["resources"]["requests"].is_mapping() && c["resources"]["limits"].is_mapping());
    let env = c["env"].as_sequence().unwrap();
    assert!(
        env.iter().any(|e| e["valueFrom"]["secretKeyRef"]["name"] == "cruncan-secrets"),
        "env from a Secret"
    );
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
}
