//! Executors and cross-shard messaging, on real glommio threads.

use std::sync::mpsc;
use std::time::Duration;

use shards::{Mesh, Pool, PoolConfig, PoolError, ShardCtx, ShardId};

const LIMIT: Duration = Duration::from_secs(20);

/// Joins the pool on a helper thread so that a hung shard fails the test instead of hanging it.
fn join_within(pool: Pool, limit: Duration) -> Result<(), PoolError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(pool.join());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => panic!("pool did not finish within {limit:?}"),
    }
}

/// Awaits `f` on a shard, failing after `LIMIT`.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match glommio::timer::timeout(LIMIT, async { Ok(f.await) }).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: timed out"),
    }
}

fn cfg(shards: usize) -> PoolConfig {
    PoolConfig::new(shards)
}

#[test]
fn each_shard_runs_its_main_task_with_its_id() {
    let (tx, rx) = flume::unbounded::<ShardCtx>();
    let pool = Pool::start(&cfg(4), move |ctx| {
        let tx = tx.clone();
        async move {
            tx.send(ctx).expect("test receiver alive");
        }
    })
    .expect("pool starts");
    assert_eq!(pool.len(), 4);
    join_within(pool, LIMIT).expect("all shards succeed");
    let mut got: Vec<ShardCtx> = rx.try_iter().collect();
    got.sort_by_key(|c| c.id);
    let want: Vec<ShardCtx> = (0..4).map(|i| ShardCtx { id: ShardId(i), n_shards: 4 }).collect();
    assert_eq!(got, want);
}

#[test]
fn pinned_shards_run_on_their_cpu() {
    let allowed = shards::process_allowed_cpus().expect("procfs");
    // Pin to the allowed CPUs in reverse order, so that shard i != cpu i when there are two+.
    let cpus: Vec<usize> = allowed.iter().rev().copied().collect();
    let mut c = cfg(cpus.len());
    c.cpus = Some(cpus.clone());
    c.spin_before_park = Some(Duration::from_micros(50));
    let (tx, rx) = flume::unbounded::<(usize, Vec<usize>)>();
    let pool = Pool::start(&c, move |ctx| {
        let tx = tx.clone();
        async move {
            // A one-off procfs read in a test; shard code proper never blocks like this.
            let mine = shards::thread_allowed_cpus().expect("procfs");
            tx.send((ctx.id.0, mine)).expect("test receiver alive");
        }
    })
    .expect("pool starts");
    join_within(pool, LIMIT).expect("all shards succeed");
    let mut got: Vec<(usize, Vec<usize>)> = rx.try_iter().collect();
    got.sort();
    assert_eq!(got.len(), cpus.len());
    for (shard, mine) in got {
        assert_eq!(mine, vec![cpus[shard]], "shard {shard}");
    }
}

#[test]
fn unpinned_shards_may_use_every_cpu() {
    let allowed = shards::process_allowed_cpus().expect("procfs");
    let (tx, rx) = flume::unbounded::<Vec<usize>>();
    let pool = Pool::start(&cfg(1), move |_| {
        let tx = tx.clone();
        async move {
            tx.send(shards::thread_allowed_cpus().expect("procfs")).expect("receiver alive");
        }
    })
    .expect("pool starts");
    join_within(pool, LIMIT).expect("shard succeeds");
    assert_eq!(rx.try_recv().expect("one report"), allowed);
}

#[test]
fn bad_configs_are_refused_before_starting() {
    let start = |c: &PoolConfig| Pool::start(c, |_| async {}).map(|_| ()).expect_err("refused");
    assert_eq!(start(&cfg(0)), PoolError::NoShards);

    let mut c = cfg(2);
    c.cpus = Some(vec![0]);
    assert_eq!(start(&c), PoolError::CpuCountMismatch { shards: 2, cpus: 1 });
    c.cpus = Some(vec![0, 0]);
    assert_eq!(start(&c), PoolError::DuplicateCpu(0));
    c.cpus = Some(vec![0, 4095]);
    assert!(matches!(start(&c), PoolError::NoSuchCpu { cpu: 4095, .. }));

    let mut c = cfg(1);
    c.name = "a\0b".to_string();
    assert!(matches!(start(&c), PoolError::BadName(_)));

    let mut c = cfg(1);
    c.io_memory = 4096;
    assert!(matches!(start(&c), PoolError::IoMemoryTooSmall { .. }));
    assert!(start(&c).to_string().contains("io_memory"));
}

#[test]
fn a_panicking_shard_is_an_error_not_a_panic() {
    let (tx, rx) = flume::unbounded::<usize>();
    let pool = Pool::start(&cfg(3), move |ctx| {
        let tx = tx.clone();
        async move {
            if ctx.id == ShardId(1) {
                panic!("shard one gives up");
            }
            tx.send(ctx.id.0).expect("receiver alive");
        }
    })
    .expect("pool starts");
    let err = join_within(pool, LIMIT).expect_err("shard 1 panicked");
    match err {
        PoolError::Shards(list) => {
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].shard, ShardId(1));
            assert!(list[0].panicked);
            assert!(list[0].reason.contains("shard one gives up"), "{}", list[0].reason);
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut ok: Vec<usize> = rx.try_iter().collect();
    ok.sort_unstable();
    assert_eq!(ok, vec![0, 2], "the other shards ran to completion");
}

#[test]
fn mesh_ping_pong_between_two_shards() {
    const ROUNDS: u64 = 2_000;
    const REPLY: u64 = 1_000_000;
    let mesh: Mesh<u64> = Mesh::new(2, 8);
    let (tx, rx) = flume::unbounded::<(usize, u64)>();
    let pool = Pool::start(&cfg(2), move |ctx| {
        let (mesh, tx) = (mesh.clone(), tx.clone());
        async move {
            let inbox = mesh.inbox(ctx.id);
            let mut done = 0;
            for i in 0..ROUNDS {
                if ctx.id == ShardId(0) {
                    mesh.send_to(ShardId(1), i).await.expect("send");
                    let r = within("ping reply", inbox.recv_async()).await.expect("mesh alive");
                    assert_eq!(r, i + REPLY);
                } else {
                    let v = within("ping", inbox.recv_async()).await.expect("mesh alive");
                    assert_eq!(v, i);
                    mesh.send_to(ShardId(0), v + REPLY).await.expect("send");
                }
                done += 1;
            }
            tx.send((ctx.id.0, done)).expect("receiver alive");
        }
    })
    .expect("pool starts");
    join_within(pool, LIMIT).expect("both shards succeed");
    let mut got: Vec<(usize, u64)> = rx.try_iter().collect();
    got.sort_unstable();
    assert_eq!(got, vec![(0, ROUNDS), (1, ROUNDS)]);
}

#[test]
fn backpressure_waits_and_loses_nothing() {
    const N: u64 = 10_000;
    let mesh: Mesh<u64> = Mesh::new(2, 1);
    let (tx, rx) = flume::unbounded::<(u64, u64, usize)>();
    let pool = Pool::start(&cfg(2), move |ctx| {
        let (mesh, tx) = (mesh.clone(), tx.clone());
        async move {
            if ctx.id == ShardId(0) {
                let mut max_queued = 0;
                for i in 0..N {
                    mesh.send_to(ShardId(1), i).await.expect("send");
                    max_queued = max_queued.max(mesh.queued(ShardId(1)));
                }
                tx.send((u64::MAX, 0, max_queued)).expect("receiver alive");
            } else {
                let inbox = mesh.inbox(ctx.id);
                let (mut count, mut sum) = (0u64, 0u64);
                while count < N {
                    let v = within("backpressure recv", inbox.recv_async()).await.expect("mesh alive");
                    assert_eq!(v, count, "in order, none lost");
                    count += 1;
                    sum += v;
                }
                tx.send((count, sum, 0)).expect("receiver alive");
            }
        }
    })
    .expect("pool starts");
    join_within(pool, LIMIT).expect("both shards succeed");
    let mut got: Vec<(u64, u64, usize)> = rx.try_iter().collect();
    got.sort_unstable();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].0, got[0].1), (N, N * (N - 1) / 2));
    assert!(got[1].2 <= 1, "inbox never held more than its capacity: {}", got[1].2);
}

#[test]
fn a_plain_thread_sends_into_an_executor() {
    const N: u64 = 5_000;
    let mesh: Mesh<u64> = Mesh::new(1, 4);
    let (tx, rx) = flume::unbounded::<u64>();
    let inner = mesh.clone();
    let pool = Pool::start(&cfg(1), move |ctx| {
        let (mesh, tx) = (inner.clone(), tx.clone());
        async move {
            let inbox = mesh.inbox(ctx.id);
            let mut sum = 0;
            for _ in 0..N {
                sum += within("recv from thread", inbox.recv_async()).await.expect("mesh alive");
            }
            tx.send(sum).expect("receiver alive");
        }
    })
    .expect("pool starts");
    // Half blocking sends, half try_send with bounded retries: a control thread does either.
    let sender = std::thread::spawn(move || {
        for i in 0..N / 2 {
            mesh.send_blocking_to(ShardId(0), i).expect("send");
        }
        for i in N / 2..N {
            let mut tries = 0;
            while let Err(e) = mesh.try_send_to(ShardId(0), i) {
                assert_eq!(e, shards::MeshError::Full { shard: ShardId(0) });
                tries += 1;
                assert!(tries < 1_000_000, "shard stopped draining");
                std::thread::yield_now();
            }
        }
    });
    join_within(pool, LIMIT).expect("shard succeeds");
    sender.join().expect("sender thread");
    assert_eq!(rx.try_recv().expect("sum"), N * (N - 1) / 2);
}
