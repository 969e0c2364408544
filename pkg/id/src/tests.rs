//! The generator under an injected clock: uniqueness, order, overflow, a backwards clock, and
//! waiting without blocking the runtime's thread.

use super::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// A clock the test moves by hand.
#[derive(Clone, Default)]
struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    fn at(ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(ms)))
    }
    fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

const T0: u64 = EPOCH_MS + 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn million_ids_from_four_tasks_are_unique_and_increasing_per_task() {
    let generator = Arc::new(Generator::new(7));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let g = Arc::clone(&generator);
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(250_000);
                for _ in 0..250_000 {
                    ids.push(g.next_id().await.unwrap());
                }
                ids
            })
        })
        .collect();
    let mut all = HashSet::with_capacity(1_000_000);
    for h in handles {
        let ids = h.await.unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids of one task must increase");
        for id in ids {
            assert!(all.insert(id), "duplicate id {id}");
        }
    }
    assert_eq!(all.len(), 1_000_000);
    // Overflow waited for the clock instead of running ahead of it.
    let now = SystemClock.now_ms();
    assert!(all.iter().all(|id| id.timestamp_ms() <= now), "an id's timestamp ran ahead of the clock");
}

#[tokio::test]
async fn id_decodes_back_to_its_parts() {
    let clock = ManualClock::at(T0);
    let g = Generator::with_clock(0xBEEF, clock.clone());
    let first = g.next_id().await.unwrap();
    let second = g.next_id().await.unwrap();
    assert_eq!((first.timestamp_ms(), first.node(), first.sequence()), (T0, 0xBEEF, 0));
    assert_eq!((second.timestamp_ms(), second.node(), second.sequence()), (T0, 0xBEEF, 1));
    clock.set(T0 + 5);
    let third = g.next_id().await.unwrap();
    assert_eq!((third.timestamp_ms(), third.sequence()), (T0 + 5, 0));
}

#[tokio::test]
async fn display_is_twenty_zero_padded_digits_and_parses_back() {
    let id = Id::from_u64(42);
    assert_eq!(id.to_string(), "00000000000000000042");
    assert_eq!("00000000000000000042".parse::<Id>().unwrap(), id);
    let real = Generator::new(1).next_id().await.unwrap();
    assert_eq!(real.to_string().len(), 20);
    assert_eq!(real.to_string().parse::<Id>().unwrap(), real);
    for bad in ["42", "", "0000000000000000004x", "-0000000000000000042", "000000000000000000042"] {
        assert!(bad.parse::<Id>().is_err(), "{bad:?} must not parse");
    }
}

/// Runs `test` on a single-threaded runtime in its own thread and fails if it takes longer than
/// five seconds: a `next_id` that blocked its thread would stall every other task of the
/// runtime, the test's own included, and never finish.
fn on_one_thread<F: std::future::Future<Output = ()> + Send + 'static>(test: F) {
    let (done, finished) = std::sync::mpsc::channel();
    let runner = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(test);
        let _ = done.send(());
    });
    match finished.recv_timeout(std::time::Duration::from_secs(5)) {
        Ok(()) => runner.join().unwrap(),
        Err(_) if runner.is_finished() => std::panic::resume_unwind(runner.join().unwrap_err()),
        Err(_) => panic!("the runtime's only thread is blocked: next_id must wait asynchronously"),
    }
}

#[test]
fn sequence_overflow_waits_for_the_next_millisecond_without_blocking_the_thread() {
    on_one_thread(async {
        let clock = ManualClock::at(T0);
        let g = Arc::new(Generator::with_clock(1, clock.clone()));
        let mut ids = Vec::new();
        for _ in 0..64 {
            ids.push(g.next_id().await.unwrap());
        }
        assert_eq!(ids.last().unwrap().sequence(), 63);
        assert_eq!(g.try_next_id().unwrap(), Next::Wait { behind_ms: 0 });
        // The 65th id of this millisecond must wait until the clock ticks, while this task
        // (on the same thread) keeps running.
        let waiter = tokio::spawn({
            let g = Arc::clone(&g);
            async move { g.next_id().await.unwrap() }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "must not hand out a 65th id in the same millisecond");
        clock.set(T0 + 1);
        let next = waiter.await.unwrap();
        assert_eq!((next.timestamp_ms(), next.sequence()), (T0 + 1, 0));
        assert!(next > *ids.last().unwrap());
    });
}

#[test]
fn backwards_clock_never_duplicates() {
    on_one_thread(async {
        let clock = ManualClock::at(T0 + 10);
        let g = Arc::new(Generator::with_clock(3, clock.clone()));
        let mut seen = HashSet::new();
        let mut last = g.next_id().await.unwrap();
        seen.insert(last);
        // The clock jumps back 10 ms: the remaining 63 ids of the last millisecond are handed out.
        clock.set(T0);
        for _ in 0..63 {
            let id = g.next_id().await.unwrap();
            assert!(id > last, "{id} must be greater than {last}");
            assert!(seen.insert(id));
            last = id;
        }
        assert_eq!(g.try_next_id().unwrap(), Next::Wait { behind_ms: 10 });
        // Then the generator waits for the wall clock to pass its last timestamp.
        let waiter = tokio::spawn({
            let g = Arc::clone(&g);
            async move { g.next_id().await.unwrap() }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "must not reuse a timestamp while the clock is behind");
        clock.set(T0 + 11);
        let id = waiter.await.unwrap();
        assert!(id > last && seen.insert(id));
        assert_eq!((id.timestamp_ms(), id.sequence()), (T0 + 11, 0));
    });
}

#[test]
fn node_id_table() {
    type Case<'a> = (Option<u16>, Option<&'a str>, Result<Option<u16>, IdError>);
    let cases: [Case; 8] = [
        (None, Some("10.1.2.3"), Ok(Some(0x0203))),
        (None, Some("192.168.255.255"), Ok(Some(0xFFFF))),
        (None, Some(" 172.16.0.1 "), Ok(Some(1))),
        (Some(9), Some("10.1.2.3"), Ok(Some(9))),
        (Some(9), Some("fe80::1"), Ok(Some(9))),
        (None, None, Ok(None)),
        (None, Some("fe80::1"), Err(IdError::Ipv6("fe80::1".into()))),
        (None, Some("10.1.2"), Err(IdError::Malformed("10.1.2".into()))),
    ];
    for (explicit, pod_ip, want) in cases {
        assert_eq!(resolve_node_id(explicit, pod_ip), want, "explicit={explicit:?} pod_ip={pod_ip:?}");
    }
}

#[tokio::test]
async fn clock_before_epoch_is_an_error() {
    let g = Generator::with_clock(1, ManualClock::at(EPOCH_MS - 1));
    assert_eq!(g.next_id().await, Err(IdError::ClockOutOfRange));
}

#[test]
fn the_first_id_at_a_time_is_above_every_earlier_id_and_at_most_every_later_one() {
    let t = EPOCH_MS + 5_000_000;
    let first = Id::first_at(t).unwrap();
    assert_eq!(first.timestamp_ms(), t);
    assert!(Id::compose(4_999_999, u16::MAX, MAX_SEQUENCE) < first);
    assert!(first <= Id::compose(5_000_000, 0, 0));
    assert!(first.to_string() < Id::compose(5_000_000, 7, 3).to_string(), "as strings too");
    assert_eq!(Id::first_at(EPOCH_MS - 1), None);
    assert_eq!(Id::first_at(EPOCH_MS + (1 << TIME_BITS)), None);
}
