//! The whole agent run inside the test process, with a destination that keeps every record it
//! accepts in memory: the real tailers, batcher, sink and checkpoint store, with no network.
//! Each agent has a runtime of its own, so it can be stopped in order or dropped at once, as a
//! killed process would be.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kinship::config::Config;
use kinship::record::OutRecord;
use kinship::sink::{PutError, PutRecords, RecordFailure, StreamStatus};
use tokio_util::sync::CancellationToken;

/// Every record the destination accepted, in the order it accepted them. While held, calls
/// wait unanswered (as calls in flight do) until released.
#[derive(Default)]
pub struct Accepted {
    records: Mutex<Vec<Vec<u8>>>,
    held: AtomicBool,
    released: tokio::sync::Notify,
    /// Records in calls that arrived while held.
    offered_while_held: AtomicUsize,
}

impl Accepted {
    pub fn snapshot(&self) -> Vec<Vec<u8>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Makes calls wait unanswered from now on.
    pub fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    /// Answers the waiting calls and those to come.
    pub fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
        self.released.notify_waiters();
    }

    /// Records in calls that arrived while held.
    pub fn offered_while_held(&self) -> usize {
        self.offered_while_held.load(Ordering::SeqCst)
    }

    pub fn len(&self) -> usize {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

struct MemoryStream(Arc<Accepted>);

impl PutRecords for MemoryStream {
    async fn put_records(&self, records: &[OutRecord]) -> Result<Vec<RecordFailure>, PutError> {
        if self.0.held.load(Ordering::SeqCst) {
            self.0
                .offered_while_held
                .fetch_add(records.len(), Ordering::SeqCst);
            loop {
                let released = self.0.released.notified();
                if !self.0.held.load(Ordering::SeqCst) {
                    break;
                }
                released.await;
            }
        }
        let mut accepted = self
            .0
            .records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        accepted.extend(records.iter().map(|record| record.data.to_vec()));
        Ok(Vec::new())
    }

    async fn describe(&self) -> Result<StreamStatus, PutError> {
        Ok(StreamStatus {
            status: "ACTIVE".into(),
            open_shards: Some(1),
            max_record_bytes: None,
        })
    }
}

pub struct InProcess {
    runtime: tokio::runtime::Runtime,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<Result<(), kinship::app::AppError>>,
}

impl InProcess {
    /// Starts the agent for the config at `config_path`, sending to `accepted`.
    pub fn start(config_path: &Path, accepted: &Arc<Accepted>) -> InProcess {
        let config = Config::load(config_path).expect("valid config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let shutdown = CancellationToken::new();
        let accepted = Arc::clone(accepted);
        let done = runtime.spawn(kinship::app::run_with(
            config,
            shutdown.clone(),
            None,
            move |_flow: &kinship::config::FlowConfig| MemoryStream(Arc::clone(&accepted)),
        ));
        InProcess {
            runtime,
            shutdown,
            done,
        }
    }

    /// Stops the agent as a signal does: reading stops, what was read is sent, the last
    /// checkpoint is written.
    pub fn stop(self) {
        self.shutdown.cancel();
        let result = self.runtime.block_on(self.done).expect("agent task");
        result.expect("agent stopped cleanly");
        self.runtime.shutdown_timeout(Duration::from_secs(5));
    }

    /// Drops the agent at once, as SIGKILL would: nothing more is sent or written. A file
    /// operation already under way on a blocking thread (a checkpoint write, say) is let
    /// finish, as if the kill came just after it: left running, it would race the next agent
    /// on the same files, which no killed process can do.
    pub fn kill(self) {
        self.runtime.shutdown_timeout(Duration::from_secs(10));
    }
}

/// The in-process agent's log, kept to explain a failure.
#[derive(Clone, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();

impl LogCapture {
    /// The process-wide capture, installed as the tracing subscriber on first use.
    pub fn install() -> &'static LogCapture {
        CAPTURE.get_or_init(|| {
            let capture = LogCapture::default();
            let writer = capture.clone();
            let _ = tracing_subscriber::fmt()
                .with_env_filter("kinship=debug")
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .try_init();
            capture
        })
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
