//! The run lease: one live holder at a time, named when a second run is refused; expiry,
//! takeover with a higher fencing token, renewal by the holder only, release, and persistence.
//! Time is the test's [`StepClock`](crate::support::StepClock): one second per reading, moved on
//! by hand to pass an expiry.

use std::sync::Arc;
use std::time::Duration;

use factory_core::lease::RunLease;
use factory_core::ports::{Store, StoreError};
use factory_store::SqliteStore;
use proptest::prelude::*;
use tokio::sync::Barrier;

use crate::support::{StepClock, TempStore, holder};

const MINUTE: Duration = Duration::from_secs(60);

fn held_by(err: StoreError) -> RunLease {
    match err {
        StoreError::LeaseHeld(lease) => *lease,
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
}

fn lost(err: StoreError) -> u64 {
    match err {
        StoreError::LeaseLost { token } => token,
        other => panic!("expected LeaseLost, got {other:?}"),
    }
}

/// Moves `clock` on so that its next reading is `at`.
fn advance_to(clock: &StepClock, at: factory_core::Timestamp) {
    let seconds = (at - clock.peek()).num_seconds();
    assert!(seconds >= 0, "the clock is already past {at}");
    clock.advance(seconds);
    assert_eq!(clock.peek(), at);
}

#[tokio::test]
async fn a_live_lease_refuses_a_second_run_and_names_the_holder() {
    let t = TempStore::new().await;
    assert_eq!(t.store.run_lease().await.unwrap(), None);
    let at = t.clock.peek();
    let first = t.store.acquire_run_lease(holder(1), MINUTE).await.unwrap();
    assert_eq!(first.token, 1);
    assert_eq!(first.holder, holder(1));
    assert_eq!((first.acquired_at, first.heartbeat_at), (at, at));
    assert_eq!(first.expires_at, at + chrono::Duration::seconds(60));
    assert_eq!(t.store.run_lease().await.unwrap(), Some(first.clone()));

    for pid in [2, 1] {
        // Even the same holder: a second `factory run` in the same process is still a second run.
        let err = t
            .store
            .acquire_run_lease(holder(pid), MINUTE)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("factory run (pid 1 on host-1)"), "{msg}");
        assert_eq!(held_by(err), first);
    }
    assert_eq!(t.store.run_lease().await.unwrap(), Some(first));
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_a_higher_token() {
    let t = TempStore::new().await;
    let first = t
        .store
        .acquire_run_lease(holder(1), Duration::from_secs(10))
        .await
        .unwrap();

    // One second before expiry it still holds.
    advance_to(&t.clock, first.expires_at - chrono::Duration::seconds(1));
    assert_eq!(
        held_by(
            t.store
                .acquire_run_lease(holder(2), MINUTE)
                .await
                .unwrap_err()
        ),
        first
    );

    // At its expiry it no longer does.
    assert_eq!(t.clock.peek(), first.expires_at);
    let at = t.clock.peek();
    let second = t.store.acquire_run_lease(holder(2), MINUTE).await.unwrap();
    assert_eq!(second.token, first.token + 1);
    assert_eq!(second.holder, holder(2));
    assert_eq!(second.acquired_at, at);
    assert_eq!(t.store.run_lease().await.unwrap(), Some(second.clone()));

    // The first holder finds out on its next heartbeat and cannot release the new lease.
    assert_eq!(
        lost(
            t.store
                .renew_run_lease(first.token, MINUTE)
                .await
                .unwrap_err()
        ),
        first.token
    );
    t.store.release_run_lease(first.token).await.unwrap();
    assert_eq!(t.store.run_lease().await.unwrap(), Some(second.clone()));
    assert_eq!(
        held_by(
            t.store
                .acquire_run_lease(holder(3), MINUTE)
                .await
                .unwrap_err()
        ),
        second
    );
}

#[tokio::test]
async fn renewal_extends_the_holders_lease_only_while_it_is_live() {
    let t = TempStore::new().await;
    // Nothing to renew yet.
    assert_eq!(
        lost(t.store.renew_run_lease(1, MINUTE).await.unwrap_err()),
        1
    );

    let lease = t
        .store
        .acquire_run_lease(holder(1), Duration::from_secs(10))
        .await
        .unwrap();
    t.clock.advance(5);
    let at = t.clock.peek();
    let renewed = t
        .store
        .renew_run_lease(lease.token, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        renewed,
        RunLease {
            heartbeat_at: at,
            expires_at: at + chrono::Duration::seconds(30),
            ..lease.clone()
        }
    );
    assert_eq!(t.store.run_lease().await.unwrap(), Some(renewed.clone()));

    // A token that never held it is refused and changes nothing.
    assert_eq!(
        lost(
            t.store
                .renew_run_lease(lease.token + 1, MINUTE)
                .await
                .unwrap_err()
        ),
        lease.token + 1
    );
    assert_eq!(t.store.run_lease().await.unwrap(), Some(renewed.clone()));

    // The renewed expiry is the one that counts: still held just before it…
    advance_to(&t.clock, renewed.expires_at - chrono::Duration::seconds(1));
    held_by(
        t.store
            .acquire_run_lease(holder(2), MINUTE)
            .await
            .unwrap_err(),
    );
    // …and once it lapses even its holder cannot renew it: it must acquire again.
    assert_eq!(
        lost(
            t.store
                .renew_run_lease(lease.token, MINUTE)
                .await
                .unwrap_err()
        ),
        lease.token
    );
    assert_eq!(t.store.run_lease().await.unwrap(), Some(renewed));
    let again = t.store.acquire_run_lease(holder(1), MINUTE).await.unwrap();
    assert_eq!(again.token, lease.token + 1);
}

#[tokio::test]
async fn release_lets_the_next_run_in_at_once_and_is_idempotent() {
    let t = TempStore::new().await;
    let first = t
        .store
        .acquire_run_lease(holder(1), Duration::from_secs(3600))
        .await
        .unwrap();
    let released_at = t.clock.peek();
    t.store.release_run_lease(first.token).await.unwrap();
    let after = t.store.run_lease().await.unwrap().unwrap();
    assert_eq!(
        after,
        RunLease {
            expires_at: released_at,
            ..first.clone()
        }
    );
    assert!(!after.is_live(released_at));
    // Releasing again changes nothing.
    t.store.release_run_lease(first.token).await.unwrap();
    assert_eq!(t.store.run_lease().await.unwrap(), Some(after));

    let second = t.store.acquire_run_lease(holder(2), MINUTE).await.unwrap();
    assert_eq!(second.token, 2);
    assert_eq!(
        lost(
            t.store
                .renew_run_lease(first.token, MINUTE)
                .await
                .unwrap_err()
        ),
        1
    );
}

#[tokio::test]
async fn the_lease_and_its_token_survive_a_reopen() {
    let mut t = TempStore::new().await;
    let first = t.store.acquire_run_lease(holder(1), MINUTE).await.unwrap();
    t.reopen().await;
    assert_eq!(t.store.run_lease().await.unwrap(), Some(first.clone()));
    assert_eq!(
        held_by(
            t.store
                .acquire_run_lease(holder(2), MINUTE)
                .await
                .unwrap_err()
        ),
        first
    );
    let renewed = t.store.renew_run_lease(first.token, MINUTE).await.unwrap();
    t.store.release_run_lease(first.token).await.unwrap();

    // The released row keeps the token, so the next one is still higher after a restart.
    t.reopen().await;
    assert_eq!(
        t.store.run_lease().await.unwrap().map(|l| l.token),
        Some(renewed.token)
    );
    let second = t.store.acquire_run_lease(holder(2), MINUTE).await.unwrap();
    assert_eq!(second.token, 2);
    t.reopen().await;
    assert_eq!(t.store.run_lease().await.unwrap(), Some(second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_runs_on_separate_handles_get_one_lease() {
    const RUNS: u32 = 12;
    let t = TempStore::new().await;
    // Separate pools on one file, as separate processes would have.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(SqliteStore::open(&t.path(), t.clock.clone()).await.unwrap());
    }
    let barrier = Arc::new(Barrier::new(RUNS as usize));
    let handles: Vec<_> = (0..RUNS)
        .map(|pid| {
            let store = stores[pid as usize % stores.len()].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.acquire_run_lease(holder(pid), MINUTE).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut refusals = Vec::new();
    for h in handles {
        match h.await.unwrap() {
            Ok(lease) => winners.push(lease),
            Err(err) => refusals.push(held_by(err)),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(winners[0].token, 1);
    // Every loser was told who won.
    assert!(refusals.iter().all(|l| *l == winners[0]), "{refusals:?}");
    assert_eq!(t.store.run_lease().await.unwrap(), Some(winners[0].clone()));
}

/// One step against the lease.
#[derive(Debug, Clone)]
enum Op {
    Acquire { pid: u32, ttl: u64 },
    Renew { token: u64, ttl: u64 },
    Release { token: u64 },
    Wait { seconds: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3u32, 1..20u64).prop_map(|(pid, ttl)| Op::Acquire { pid, ttl }),
        (0..5u64, 1..20u64).prop_map(|(token, ttl)| Op::Renew { token, ttl }),
        (0..5u64).prop_map(|token| Op::Release { token }),
        (0..15i64).prop_map(|seconds| Op::Wait { seconds }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever happens, the store agrees with a model of the lease: at most one live holder,
    /// tokens grow by one per acquisition, only the live holder renews, and release ends it now.
    #[test]
    fn the_lease_follows_its_model(ops in proptest::collection::vec(op(), 0..30)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let clock = Arc::new(StepClock::default());
            let store = SqliteStore::in_memory(clock.clone()).await.unwrap();
            let mut model: Option<RunLease> = None;
            for op in ops {
                let now = clock.peek();
                let live = model.clone().filter(|l| l.is_live(now));
                match op {
                    Op::Wait { seconds } => clock.advance(seconds),
                    Op::Acquire { pid, ttl } => {
                        let got = store.acquire_run_lease(holder(pid), Duration::from_secs(ttl)).await;
                        match (live, got) {
                            (Some(l), Err(StoreError::LeaseHeld(held))) => prop_assert_eq!(*held, l),
                            (None, Ok(lease)) => {
                                let token = model.as_ref().map_or(1, |l| l.token + 1);
                                let expected = RunLease {
                                    token,
                                    holder: holder(pid),
                                    acquired_at: now,
                                    heartbeat_at: now,
                                    expires_at: now + chrono::Duration::seconds(ttl as i64),
                                };
                                prop_assert_eq!(&lease, &expected);
                                model = Some(lease);
                            }
                            (live, got) => prop_assert!(false, "acquire at {now}: live {live:?}, store {got:?}"),
                        }
                    }
                    Op::Renew { token, ttl } => {
                        let got = store.renew_run_lease(token, Duration::from_secs(ttl)).await;
                        match (live.filter(|l| l.token == token), got) {
                            (Some(l), Ok(lease)) => {
                                let expected = RunLease {
                                    heartbeat_at: now,
                                    expires_at: now + chrono::Duration::seconds(ttl as i64),
                                    ..l
                                };
                                prop_assert_eq!(&lease, &expected);
                                model = Some(lease);
                            }
                            (None, Err(StoreError::LeaseLost { token: t })) => prop_assert_eq!(t, token),
                            (live, got) => prop_assert!(false, "renew {token} at {now}: live {live:?}, store {got:?}"),
                        }
                    }
                    Op::Release { token } => {
                        store.release_run_lease(token).await.unwrap();
                        if let Some(l) = live.filter(|l| l.token == token) {
                            model = Some(RunLease { expires_at: now, ..l });
                        }
                    }
                }
                prop_assert_eq!(store.run_lease().await.unwrap(), model.clone());
            }
            Ok(())
        })?;
    }
}

/// An expiry past year 9999 has no fixed-width RFC 3339 form: stored, it would neither read back
/// nor compare in time order, and the lease row would refuse every later run.
#[tokio::test]
async fn a_ttl_past_what_the_store_can_hold_is_refused_and_changes_nothing() {
    let t = TempStore::new().await;
    const TEN_THOUSAND_YEARS: Duration = Duration::from_secs(10_000 * 366 * 86_400);
    for ttl in [TEN_THOUSAND_YEARS, Duration::MAX] {
        let err = t.store.acquire_run_lease(holder(1), ttl).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
        assert_eq!(t.store.run_lease().await.unwrap(), None);
    }

    let lease = t.store.acquire_run_lease(holder(1), MINUTE).await.unwrap();
    let err = t
        .store
        .renew_run_lease(lease.token, TEN_THOUSAND_YEARS)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(t.store.run_lease().await.unwrap(), Some(lease.clone()));
    t.store.release_run_lease(lease.token).await.unwrap();
    let next = t.store.acquire_run_lease(holder(2), MINUTE).await.unwrap();
    assert_eq!(next.token, 2);
}
