//! The services' own config files, as they ship: each environment's files load, a misspelt key is
//! a start-up error that names it, and durations are humantime strings.
#![allow(clippy::unwrap_used)]

use cruncan_config::{check_config_files, load_with_env};
use flow_bdd::config_dir;
use std::time::Duration;

const ENVIRONMENTS: [&str; 2] = ["local", "production"];

#[test]
fn one_config_files_load_and_a_misspelt_key_is_an_error_that_names_it() {
    let misspelt = ["APP_KAFKA__PRODUCER__LINGER_MS", "APP_KAFKA__LINGER", "APP_OUTBOX__BATCH_SIZ"];
    check_config_files::<one::Settings>(&config_dir("one"), &ENVIRONMENTS, &misspelt);
}

#[test]
fn two_config_files_load_and_a_misspelt_key_is_an_error_that_names_it() {
    let misspelt =
        ["APP_KAFKA__CONSUMER__BACKOF_MAX", "APP_KAFKA__DEAD_LETTERS__LINGER_MS", "APP_THREE__TIMEOUT"];
    check_config_files::<two::Settings>(&config_dir("two"), &ENVIRONMENTS, &misspelt);
}

#[test]
fn durations_are_humantime() {
    let one: one::Settings =
        load_with_env(&config_dir("one"), "local", &[("APP_KAFKA__PRODUCER__LINGER", "20ms")]).unwrap();
    assert_eq!(
        (one.kafka.producer.linger, one.outbox.batch_window),
        (Duration::from_millis(20), Duration::from_millis(2))
    );
    let two: two::Settings =
        load_with_env(&config_dir("two"), "local", &[("APP_KAFKA__CONSUMER__BACKOFF_MAX", "3s")]).unwrap();
    assert_eq!(two.kafka.consumer.backoff_max, Duration::from_secs(3));
    assert_eq!(two.kafka.consumer.breaker.probe_max, Duration::from_secs(30));
}
