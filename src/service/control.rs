//! The Windows service's life cycle, kept free of Windows so it is tested everywhere: control
//! requests from the service manager become the agent's shutdown, and each step of starting
//! and stopping becomes a status to report (`src/service/windows.rs` sends them to the Service
//! Control Manager).
//!
//! StartPending → Running (once the agent is ready) → StopPending (a Stop, Preshutdown or
//! Shutdown request cancels the shutdown token, the same drain as SIGTERM) → Stopped, with the
//! agent's exit status. While a state is pending, [`Controller::tick`] raises its checkpoint so
//! the service manager sees progress.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long start-up may go without a new checkpoint: the ticker reports far more often.
pub const START_WAIT_HINT: Duration = Duration::from_secs(10);
/// What a stop needs beyond `shutdown_grace`: the last checkpoint write and the runtime's own
/// shutdown (at most a second).
pub const STOP_MARGIN: Duration = Duration::from_secs(5);
/// How often a pending state's checkpoint is raised.
pub const TICK_EVERY: Duration = Duration::from_secs(1);

/// A request from the service manager, as far as the agent cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Stop,
    /// The machine is about to shut down; sent early enough to drain (accepted where offered).
    Preshutdown,
    /// The machine is shutting down now.
    Shutdown,
    /// The service manager asks for the current status.
    Interrogate,
    /// Anything else (pause, parameter change, power events, …).
    Other,
}

/// Whether a control request was handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Handled,
    NotImplemented,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    StartPending,
    Running,
    StopPending,
    Stopped,
}

/// How the service ended, as the service manager records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// A clean stop (Windows error code 0).
    Clean,
    /// The agent's own exit status (`ERROR_SERVICE_SPECIFIC_ERROR` with this code): 64 for an
    /// invalid config, 1 for any other failure, as in the README's exit status table.
    Failed(u8),
}

impl Exit {
    /// The exit for an exit status of the `kinship` binary.
    pub fn from_status(status: u8) -> Exit {
        if status == 0 {
            Exit::Clean
        } else {
            Exit::Failed(status)
        }
    }
}

/// One status report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    /// Whether Stop, Preshutdown and Shutdown requests are accepted.
    pub accepts_stop: bool,
    /// Raised at each report of a pending state; 0 otherwise.
    pub checkpoint: u32,
    /// How long until the next report or the state's end; zero unless pending.
    pub wait_hint: Duration,
    /// Set once stopped.
    pub exit: Option<Exit>,
}

/// Where statuses go: the Service Control Manager, or a recorder in tests.
pub trait ReportStatus: Send + Sync {
    fn report(&self, status: Status);
}

/// Turns control requests into the shutdown and keeps the status the service manager sees.
pub struct Controller<R> {
    reporter: R,
    shutdown: CancellationToken,
    stop_wait_hint: Duration,
    current: Mutex<Status>,
}

impl<R: ReportStatus> Controller<R> {
    /// A controller that cancels `shutdown` when asked to stop; a stop may take up to
    /// `shutdown_grace`. Reports StartPending at once.
    pub fn new(reporter: R, shutdown: CancellationToken, shutdown_grace: Duration) -> Self {
        let start = Status {
            state: State::StartPending,
            accepts_stop: true,
            checkpoint: 1,
            wait_hint: START_WAIT_HINT,
            exit: None,
        };
        reporter.report(start);
        Self {
            reporter,
            shutdown,
            stop_wait_hint: shutdown_grace.saturating_add(STOP_MARGIN),
            current: Mutex::new(start),
        }
    }

    /// The agent's start-up checks ran and its flows started.
    pub fn running(&self) {
        self.update(|status| {
            if status.state != State::StartPending {
                return false;
            }
            *status = Status {
                state: State::Running,
                accepts_stop: true,
                checkpoint: 0,
                wait_hint: Duration::ZERO,
                exit: None,
            };
            true
        });
    }

    /// Handles a request from the service manager.
    pub fn control(&self, control: Control) -> Reply {
        match control {
            Control::Stop | Control::Preshutdown | Control::Shutdown => {
                self.update(|status| match status.state {
                    State::StartPending | State::Running => {
                        *status = Status {
                            state: State::StopPending,
                            accepts_stop: false,
                            checkpoint: 1,
                            wait_hint: self.stop_wait_hint,
                            exit: None,
                        };
                        true
                    }
                    // Already stopping or stopped: the drain is not restarted.
                    State::StopPending | State::Stopped => false,
                });
                // Cancelled outside the lock: the agent may log and report from other threads.
                self.shutdown.cancel();
                Reply::Handled
            }
            Control::Interrogate => {
                self.update(|_| true);
                Reply::Handled
            }
            Control::Other => Reply::NotImplemented,
        }
    }

    /// Shows progress while starting or stopping: raises the checkpoint and reports again.
    pub fn tick(&self) {
        self.update(|status| match status.state {
            State::StartPending | State::StopPending => {
                status.checkpoint = status.checkpoint.saturating_add(1);
                true
            }
            State::Running | State::Stopped => false,
        });
    }

    /// The agent has ended: reports Stopped with its exit, whatever the state before.
    pub fn stopped(&self, exit: Exit) {
        self.update(|status| {
            if status.state == State::Stopped {
                return false;
            }
            *status = Status {
                state: State::Stopped,
                accepts_stop: false,
                checkpoint: 0,
                wait_hint: Duration::ZERO,
                exit: Some(exit),
            };
            true
        });
    }

    /// The status last reported.
    pub fn status(&self) -> Status {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change`; reports the status when it says so. The lock is held while reporting
    /// so reports reach the service manager in the order the changes were made.
    fn update(&self, change: impl FnOnce(&mut Status) -> bool) {
        let mut status = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if change(&mut status) {
            self.reporter.report(*status);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Status>>>);

    impl ReportStatus for Recorder {
        fn report(&self, status: Status) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(status);
        }
    }

    impl Recorder {
        fn states(&self) -> Vec<(State, u32)> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|status| (status.state, status.checkpoint))
                .collect()
        }

        fn last(&self) -> Status {
            *self
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .last()
                .expect("the controller reports StartPending as it is made")
        }
    }

    fn controller() -> (Controller<Recorder>, Recorder, CancellationToken) {
        let recorder = Recorder::default();
        let shutdown = CancellationToken::new();
        let controller =
            Controller::new(recorder.clone(), shutdown.clone(), Duration::from_secs(10));
        (controller, recorder, shutdown)
    }

    #[test]
    fn a_stop_drains_through_the_shutdown_token_and_ends_stopped_with_the_exit() {
        let (controller, recorder, shutdown) = controller();
        controller.tick();
        controller.running();
        assert!(!shutdown.is_cancelled());
        assert_eq!(controller.control(Control::Stop), Reply::Handled);
        assert!(shutdown.is_cancelled());
        let stopping = recorder.last();
        assert_eq!(stopping.state, State::StopPending);
        assert!(!stopping.accepts_stop);
        assert_eq!(stopping.wait_hint, Duration::from_secs(10) + STOP_MARGIN);
        controller.tick();
        controller.tick();
        controller.stopped(Exit::Clean);
        assert_eq!(
            recorder.states(),
            vec![
                (State::StartPending, 1),
                (State::StartPending, 2),
                (State::Running, 0),
                (State::StopPending, 1),
                (State::StopPending, 2),
                (State::StopPending, 3),
                (State::Stopped, 0),
            ]
        );
        let stopped = recorder.last();
        assert_eq!(stopped.exit, Some(Exit::Clean));
        assert_eq!(stopped.wait_hint, Duration::ZERO);
    }

    #[test]
    fn shutdown_and_preshutdown_start_the_same_drain_once() {
        for control in [Control::Shutdown, Control::Preshutdown] {
            let (controller, recorder, shutdown) = controller();
            controller.running();
            controller.control(control);
            assert!(shutdown.is_cancelled());
            // A second request neither restarts the checkpoints nor reports again.
            controller.control(Control::Stop);
            assert_eq!(
                recorder.states(),
                vec![
                    (State::StartPending, 1),
                    (State::Running, 0),
                    (State::StopPending, 1),
                ]
            );
        }
    }

    #[test]
    fn a_stop_during_start_up_is_honoured() {
        let (controller, recorder, shutdown) = controller();
        controller.control(Control::Stop);
        assert!(shutdown.is_cancelled());
        // The agent may still report ready as it winds down; the stop stands.
        controller.running();
        controller.stopped(Exit::Clean);
        assert_eq!(
            recorder.states(),
            vec![
                (State::StartPending, 1),
                (State::StopPending, 1),
                (State::Stopped, 0),
            ]
        );
    }

    #[test]
    fn interrogate_reports_the_current_status_and_other_requests_are_refused() {
        let (controller, recorder, shutdown) = controller();
        controller.running();
        assert_eq!(controller.control(Control::Interrogate), Reply::Handled);
        assert_eq!(controller.control(Control::Other), Reply::NotImplemented);
        assert!(!shutdown.is_cancelled());
        assert_eq!(
            recorder.states(),
            vec![
                (State::StartPending, 1),
                (State::Running, 0),
                (State::Running, 0),
            ]
        );
        // Ticks only move pending states.
        controller.tick();
        assert_eq!(recorder.states().len(), 3);
    }

    #[test]
    fn a_failed_agent_stops_with_its_exit_status_and_nothing_follows() {
        let (controller, recorder, _shutdown) = controller();
        controller.stopped(Exit::from_status(64));
        controller.tick();
        controller.control(Control::Stop);
        controller.stopped(Exit::Clean);
        assert_eq!(
            recorder.states(),
            vec![(State::StartPending, 1), (State::Stopped, 0)]
        );
        assert_eq!(recorder.last().exit, Some(Exit::Failed(64)));
        assert_eq!(controller.status().exit, Some(Exit::Failed(64)));
        assert_eq!(Exit::from_status(0), Exit::Clean);
    }
}
