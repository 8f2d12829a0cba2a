//! `skyhook serve`: API, fan-out and dispatcher in one process, on one SQLite
//! file. Every 202 is on disk before it is sent (WAL, synchronous=FULL).
//! Shutdown stops taking work, finishes what is in flight, and leaves the
//! rest in the queue: nothing acknowledged is lost, even on kill -9.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args};
use skyhook::adapters::local_secrets::FileSecrets;
use skyhook::adapters::sqlite::{SqliteQueue, SqliteQueueConfig, SqliteStore};
use skyhook::ports::{Clock, Queue, Secrets, SystemClock};
use skyhook::retry::RetrySchedule;
use skyhook::sender::HttpSender;
use skyhook::service::{Dispatcher, MessageOutcome, ServiceConfig, Skyhook};
use skyhook::ssrf::AddressPolicy;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address for the API.
    #[arg(long, env = "SKYHOOK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory for the SQLite database and the generated secrets.
    #[arg(long, env = "SKYHOOK_DATA_DIR", default_value = "./.skyhook")]
    pub data_dir: PathBuf,
    /// Admin token (default: generated on first start and kept in the data dir).
    #[arg(long, env = "SKYHOOK_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Let endpoints target 127.0.0.0/8 and ::1 (local development only).
    #[arg(long, env = "SKYHOOK_ALLOW_LOOPBACK", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub allow_loopback: bool,
    /// Require https endpoint URLs, as in production.
    #[arg(long, env = "SKYHOOK_REQUIRE_HTTPS", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub require_https: bool,
    /// Delays between attempts, e.g. `5s,5m,30m,2h,5h,10h,10h` (the default).
    #[arg(long, env = "SKYHOOK_RETRY_SCHEDULE")]
    pub retry_schedule: Option<String>,
    /// Jitter applied to each delay, as a fraction (0.2 = ±20 %).
    #[arg(long, env = "SKYHOOK_RETRY_JITTER", default_value_t = 0.2)]
    pub retry_jitter: f64,
    /// Seconds a received delivery stays hidden before it is tried again if
    /// its worker died (must exceed the 30 s maximum endpoint timeout).
    #[arg(long, env = "SKYHOOK_VISIBILITY_TIMEOUT", default_value_t = 60)]
    pub visibility_timeout: u64,
    /// Deliveries in flight at the same time (each holds ~40 KiB while in
    /// flight, connection included).
    #[arg(long, env = "SKYHOOK_CONCURRENCY", default_value_t = 128)]
    pub concurrency: usize,
    /// Threads running the API, fan-out and dispatcher (default: one per
    /// core; the store's reader and writer threads come on top).
    #[arg(long, env = "SKYHOOK_WORKERS")]
    pub workers: Option<usize>,
    /// Milliseconds between handing malloc's free pages back to the OS
    /// (0: never). Under load most of the heap's spare memory is free chunks
    /// between live ones, which glibc only returns when asked.
    #[arg(long, env = "SKYHOOK_MEMORY_TRIM_MS", default_value_t = 50)]
    pub memory_trim_ms: u64,
    /// Log format: `json` or `text`.
    #[arg(long, env = "SKYHOOK_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl ServeArgs {
    /// The explicit worker count, if any; without one, tokio's default (one
    /// per core) applies. Fewer saves memory: each async worker has a
    /// malloc arena that peaks on its own, and on two cores one worker
    /// instead of two took ~8 MiB off peak RSS, but cost 10-30 % of the
    /// throughput, as the one worker then serves the API and the dispatcher
    /// alone (docs/PERFORMANCE.md).
    pub fn worker_threads(&self) -> Option<usize> {
        self.workers.map(|n| n.max(1))
    }
}

/// Calls glibc's `malloc_trim(0)` every `interval` on a thread of its own.
/// Each async worker's arena keeps the pages its freed buffers (request
/// bodies, connection buffers) leave between live allocations; returning
/// them takes peak RSS from ~36 to ~30 MiB under the benchmark's load at no
/// throughput cost measurable there (docs/PERFORMANCE.md, log step 8).
fn spawn_memory_trimmer(interval: Duration) {
    if interval.is_zero() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new().name("skyhook-memory-trim".into()).spawn(move || {
            loop {
                std::thread::sleep(interval);
                // SAFETY: malloc_trim only takes the arenas' own locks; it is
                // safe to call from any thread at any time.
                unsafe { libc::malloc_trim(0) };
            }
        });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "could not start the memory trimmer; freed heap pages stay with the process");
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hyper=warn,reqwest=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        let _ = builder.json().flatten_event(true).with_current_span(true).try_init();
    } else {
        let _ = builder.compact().try_init();
    }
}

pub async fn print_admin_token(data_dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let secrets = FileSecrets::new(data_dir, None);
    let material = secrets.load().await.map_err(|e| e.to_string())?;
    println!("{}", material.admin_token);
    Ok(())
}

pub async fn run(args: ServeArgs) -> Result<(), String> {
    init_logging(&args.log_format);
    spawn_memory_trimmer(Duration::from_millis(args.memory_trim_ms));
    std::fs::create_dir_all(&args.data_dir).map_err(|e| format!("cannot create {}: {e}", args.data_dir.display()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let secrets = FileSecrets::new(&args.data_dir, args.admin_token.clone());
    let first_start = secrets.ensure().map_err(|e| e.to_string())?;
    let material = secrets.load().await.map_err(|e| e.to_string())?;

    let db_path = args.data_dir.join("skyhook.db");
    let store = Arc::new(SqliteStore::open(&db_path, Arc::clone(&clock)).map_err(|e| e.to_string())?);
    let queue_config = SqliteQueueConfig {
        visibility_timeout: Duration::from_secs(args.visibility_timeout.max(1)),
        ..SqliteQueueConfig::default()
    };
    // The queue shares the store's writer thread: the writes of a fan-out or
    // of an attempt and its message commit together, one fsync per group.
    let sqlite_queue = Arc::new(
        SqliteQueue::open_with_store(&store, "deliveries", queue_config, Arc::clone(&clock))
            .map_err(|e| e.to_string())?,
    );
    let queue: Arc<dyn Queue> = sqlite_queue.clone();

    let retry_schedule = match &args.retry_schedule {
        Some(spec) => RetrySchedule::parse(spec, args.retry_jitter).map_err(|e| e.to_string())?,
        None => RetrySchedule::default(),
    };
    let policy = AddressPolicy { allow_loopback: args.allow_loopback };
    let config = ServiceConfig {
        retry_schedule,
        require_https: args.require_https,
        address_policy: policy,
        ..ServiceConfig::default()
    };
    let fanout_wakeup = Arc::new(Notify::new());
    let hook_wakeup = Arc::clone(&fanout_wakeup);
    let purged_store = Arc::clone(&store);
    let service = Arc::new(
        Skyhook::new(store, Arc::clone(&queue), Arc::clone(&clock), material.clone(), config)
            .with_publish_hook(Arc::new(move || hook_wakeup.notify_one())),
    );
    let sender = Arc::new(HttpSender::system(policy, &format!("Skyhook/{}", skyhook::VERSION)));
    let dispatcher = Arc::new(Dispatcher::new(Arc::clone(&service), sender));

    let listener =
        TcpListener::bind(args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    if first_start && args.admin_token.is_none() {
        println!(
            "Generated admin token (kept in {}): {}",
            args.data_dir.join("secrets.json").display(),
            material.admin_token
        );
    }
    println!("Skyhook {} listening on http://{address} (data in {})", skyhook::VERSION, args.data_dir.display());
    tracing::info!(%address, loopback_allowed = args.allow_loopback, "skyhook serve started");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let http = tokio::spawn(crate::http_server::run(listener, Arc::clone(&service), shutdown_rx.clone()));
    let fanout = tokio::spawn(fanout_worker(Arc::clone(&service), fanout_wakeup, shutdown_rx.clone()));
    let purge = tokio::spawn(purge_worker(purged_store, shutdown_rx.clone()));
    let delivery = tokio::spawn(dispatch_worker(dispatcher, sqlite_queue, args.concurrency.max(1), shutdown_rx));

    wait_for_signal().await;
    tracing::info!("shutting down: finishing requests and deliveries in flight");
    let _ = shutdown_tx.send(true);
    let _ = http.await;
    let _ = fanout.await;
    let _ = delivery.await;
    let _ = purge.await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// How often expired rows are deleted (the embedded stand-in for DynamoDB
/// TTL; every read skips them either way, this keeps the file from growing
/// without bound).
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Deletes rows past their retention at start and every [`PURGE_EVERY`],
/// in small chunks that share commits with the other writes.
async fn purge_worker(store: Arc<SqliteStore>, mut shutdown: watch::Receiver<bool>) {
    loop {
        match store.purge_expired().await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "purged expired rows"),
            Err(err) => tracing::warn!(error = %err, "could not purge expired rows"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PURGE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Events fanned out at the same time by one sweep: their writes share the
/// group commit (one fsync for all of them).
const FANOUT_CONCURRENCY: usize = 128;

/// The embedded backend's outbox: fans out events written but not yet fanned
/// out, woken by each publish and swept every second (and at start, which
/// picks up whatever a crash left behind).
async fn fanout_worker(service: Arc<Skyhook>, wakeup: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    loop {
        loop {
            match service.sweep_fanout_concurrent(FANOUT_CONCURRENCY * 2, FANOUT_CONCURRENCY).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(err) => {
                    tracing::warn!(error = %err, "fan-out sweep failed");
                    break;
                }
            }
        }
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = wakeup.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Receive loops running at once. One receive is one group commit (it
/// hides the messages it returns), so a single loop could take at most ten
/// messages per fsync; a few keep the dispatcher fed without many idle
/// pollers re-reading the queue on every send.
const RECEIVERS: usize = 8;

/// Receives batches of ten and handles them concurrently, up to
/// `concurrency` deliveries in flight.
async fn dispatch_worker(
    dispatcher: Arc<Dispatcher>,
    queue: Arc<SqliteQueue>,
    concurrency: usize,
    shutdown: watch::Receiver<bool>,
) {
    let batches = (concurrency / 10).max(1);
    let permits = Arc::new(Semaphore::new(batches));
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..RECEIVERS.min(batches) {
        loops.spawn(receive_loop(Arc::clone(&dispatcher), Arc::clone(&queue), Arc::clone(&permits), shutdown.clone()));
    }
    while loops.join_next().await.is_some() {}
    // Wait for the batches in flight (bounded by the endpoint timeout).
    let _ = tokio::time::timeout(Duration::from_secs(35), permits.acquire_many(batches as u32)).await;
}

/// Takes a permit, receives up to ten messages and hands them to a task
/// that sends them and deletes the finished ones; until shutdown.
async fn receive_loop(
    dispatcher: Arc<Dispatcher>,
    queue: Arc<SqliteQueue>,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
        let messages = match queue.receive(10, Duration::from_millis(500)).await {
            Ok(messages) => messages,
            Err(err) => {
                tracing::warn!(error = %err, "receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let dispatcher = Arc::clone(&dispatcher);
        let queue = Arc::clone(&queue);
        tokio::spawn(async move {
            let outcomes = dispatcher.handle_batch(&messages).await;
            // The finished ones in one write, as DeleteMessageBatch would.
            let done: Vec<String> = messages
                .iter()
                .zip(outcomes)
                .filter(|(_, outcome)| *outcome == MessageOutcome::Done)
                .map(|(message, _)| message.receipt_handle.clone())
                .collect();
            let finished = done.len();
            match queue.delete_batch(done).await {
                Ok(deleted) if deleted < finished => tracing::warn!(
                    stale = finished - deleted,
                    "some finished messages were received again meanwhile; they will be seen again and skipped"
                ),
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "could not delete finished messages; they will be seen again and skipped")
                }
            }
            drop(permit);
        });
    }
}
