//! Replaying the email.send history from each start position.

use crate::helpers::*;
use email::replay::{StartAt, parse_age, replay};
use std::time::Duration;

#[tokio::test]
async fn replay_reads_the_history_from_each_start_position() {
    let app = spawn_app(Options { workers: 0, ..Options::default() }).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(app.create(&new_email(&format!("replayed {i}"))).await);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cruncan_jetstream::pending(&app.pool).await.unwrap() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "relay did not publish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stream = &app.settings.nats.stream;
    let subject = &app.settings.nats.subject(email::jetstream::SEND_SUBJECT);
    let js = &app.js;
    let run = |start: StartAt| async move { replay(js, stream, subject, &start, 100).await.unwrap() };
    let ids_of = |events: &[email::replay::Replayed]| -> Vec<String> {
        events.iter().map(|e| e.event.as_ref().unwrap().email_id.to_string()).collect()
    };

    let all = run(StartAt::FromStart).await;
    assert_eq!(ids_of(&all), ids, "in creation order");
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(ids_of(&run(StartAt::Sequence(2)).await), ids[1..]);
    assert_eq!(ids_of(&run(StartAt::Last).await), ids[2..]);
    let recent = chrono::Utc::now() - parse_age("1h").unwrap();
    assert_eq!(run(StartAt::Time(recent)).await.len(), 3);
    let after_second = all[1].published;
    assert_eq!(ids_of(&run(StartAt::Time(after_second)).await), ids[1..]);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(run(StartAt::Time(future)).await.is_empty());
    assert!(parse_age("10x").is_err());
    app.stop().await;
}
