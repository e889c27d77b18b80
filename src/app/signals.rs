//! The process's signals: SIGTERM and SIGINT (Ctrl-C on Windows) stop the agent, the first
//! cleanly and a second at once; SIGHUP asks for the config to be read again.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The first SIGTERM or SIGINT cancels `shutdown` (a clean shutdown); a second one exits the
/// process at once with `exit_status`.
pub async fn watch_signals(shutdown: CancellationToken, exit_status: i32) {
    let Some(mut signals) = StopSignals::listen() else {
        return;
    };
    stop_on_first(&mut signals, &shutdown).await;
    let second = signals.next().await;
    warn!(
        signal = second,
        "Second signal: exiting now; lines not yet acknowledged are read again at the next start."
    );
    std::process::exit(exit_status);
}

/// Waits for the first stop signal and cancels `shutdown`.
async fn stop_on_first(signals: &mut StopSignals, shutdown: &CancellationToken) {
    let first = signals.next().await;
    info!(signal = first, "Signal received; shutting down.");
    shutdown.cancel();
}

/// Each SIGHUP asks for the config to be read again (a request already waiting covers it).
/// Windows has no SIGHUP: the config is reloaded with `watch_config` there.
pub async fn watch_hangups(reload: mpsc::Sender<()>) {
    if let Some(hangups) = Hangups::listen() {
        hangups.forward(reload).await;
    }
}

#[cfg(unix)]
struct Hangups(tokio::signal::unix::Signal);

#[cfg(unix)]
impl Hangups {
    /// Listens for SIGHUP from now on; `None`, once logged, if it cannot.
    fn listen() -> Option<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(hangups) => Some(Self(hangups)),
            Err(failure) => {
                tracing::error!(%failure, "Cannot listen for SIGHUP; the config cannot be reloaded.");
                None
            }
        }
    }

    async fn forward(mut self, reload: mpsc::Sender<()>) {
        while self.0.recv().await.is_some() {
            info!(signal = "SIGHUP", "Signal received; reloading the config.");
            let _ = reload.try_send(());
        }
    }
}

#[cfg(not(unix))]
struct Hangups;

#[cfg(not(unix))]
impl Hangups {
    fn listen() -> Option<Self> {
        None
    }

    async fn forward(self, _reload: mpsc::Sender<()>) {}
}

#[cfg(unix)]
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl StopSignals {
    /// Listens for SIGTERM and SIGINT from now on; `None`, once logged, if it cannot.
    fn listen() -> Option<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(terminate), Ok(interrupt)) => Some(Self {
                terminate,
                interrupt,
            }),
            (Err(failure), _) | (_, Err(failure)) => {
                tracing::error!(%failure, "Cannot listen for signals; stop kinship with SIGKILL.");
                None
            }
        }
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

#[cfg(not(unix))]
struct StopSignals;

#[cfg(not(unix))]
impl StopSignals {
    fn listen() -> Option<Self> {
        Some(Self)
    }

    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    use super::*;

    fn send_to_self(signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &std::process::id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}");
    }

    #[tokio::test]
    async fn a_hangup_asks_for_a_reload() {
        let (reload, mut requests) = mpsc::channel(1);
        let hangups = Hangups::listen().expect("listen for SIGHUP");
        tokio::spawn(hangups.forward(reload));
        send_to_self("HUP");
        let asked = tokio::time::timeout(Duration::from_secs(30), requests.recv()).await;
        assert_eq!(asked.expect("a reload request within 30 s"), Some(()));
    }

    #[tokio::test]
    async fn the_first_sigterm_cancels_the_shutdown_token() {
        let shutdown = CancellationToken::new();
        let mut signals = StopSignals::listen().expect("listen for SIGTERM");
        let stopping = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { stop_on_first(&mut signals, &shutdown).await }
        });
        assert!(!shutdown.is_cancelled());
        send_to_self("TERM");
        tokio::time::timeout(Duration::from_secs(30), shutdown.cancelled())
            .await
            .expect("shutdown within 30 s of SIGTERM");
        stopping.await.expect("the watcher ends");
    }
}
