//! The Windows service: `kinship service install|uninstall|start|stop`, and running under the
//! Service Control Manager (`service run`, the command line the service is registered with).
//!
//! The life cycle itself (which request stops the agent, what status to report when) is
//! [`super::control`]; this module only carries it to and from the Service Control Manager.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceSidType, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_dispatcher;
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use super::control::{Control, Controller, Exit, Reply, ReportStatus, State, Status, TICK_EVERY};
use super::ServiceRequest as Action;
use crate::config::{default_paths, Config, ConfigError};
use crate::logfile::LogFile;

/// The service's name, as `sc.exe query kinship` knows it.
pub const SERVICE_NAME: &str = "kinship";
const DISPLAY_NAME: &str = "kinship log shipper";
const DESCRIPTION: &str =
    "Tails log files and delivers every line to Amazon Kinesis Data Streams or Firehose.";
/// Recovery: restart after 5 s, 10 s, then 60 s; the count of failures resets after a day.
const RESTART_DELAYS: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(60),
];
const FAILURE_COUNT_RESET: Duration = Duration::from_secs(24 * 3600);
/// How long `service start` waits for the agent to run (its start-up checks included).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `service stop` waits beyond the wait hints the service reports.
const STOP_TIMEOUT: Duration = Duration::from_secs(300);
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Windows error codes worth a friendlier message.
const ERROR_ACCESS_DENIED: i32 = 5;
const ERROR_SERVICE_ALREADY_RUNNING: i32 = 1056;
const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;
const ERROR_SERVICE_EXISTS: i32 = 1073;
/// The exit status for an invalid config or a command used where it cannot work.
const EXIT_USAGE: u8 = 64;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("`service run` is what the Service Control Manager starts; in a console, use `kinship run` (or `kinship service start`)")]
    NotUnderServiceManager,
    #[error("cannot {doing}: {cause}")]
    Windows { doing: &'static str, cause: String },
    #[error("{0}")]
    Failed(String),
}

impl ServiceError {
    /// The exit status: 64 for a usage or config problem, as `kinship check`; else 1.
    pub fn exit_status(&self) -> u8 {
        match self {
            ServiceError::Config(_) | ServiceError::NotUnderServiceManager => EXIT_USAGE,
            ServiceError::Windows { .. } | ServiceError::Failed(_) => 1,
        }
    }

    fn windows(doing: &'static str, error: &windows_service::Error) -> ServiceError {
        let code = match error {
            windows_service::Error::Winapi(io) => io.raw_os_error(),
            _ => None,
        };
        let cause = match code {
            Some(ERROR_ACCESS_DENIED) => {
                "access is denied; run it from an elevated prompt (Run as administrator)".to_owned()
            }
            Some(ERROR_SERVICE_DOES_NOT_EXIST) => {
                "the kinship service is not installed; install it with `kinship service install`"
                    .to_owned()
            }
            Some(ERROR_SERVICE_EXISTS) => {
                "the kinship service is already installed; `kinship service uninstall` removes it"
                    .to_owned()
            }
            _ => match error {
                windows_service::Error::Winapi(io) => io.to_string(),
                other => other.to_string(),
            },
        };
        ServiceError::Windows { doing, cause }
    }
}

/// The agent as the service runs it: the same as `kinship run`, stopped through the token.
/// Returns the exit status `kinship run` would have.
pub type Agent = fn(Config, CancellationToken) -> u8;

/// Carries out `kinship service …`.
pub fn command(action: Action, agent: Agent) -> Result<(), ServiceError> {
    match action {
        Action::Install { config, account } => install(&config, &account),
        Action::Uninstall => uninstall(),
        Action::Start => start(),
        Action::Stop => stop(),
        Action::Run { config } => run_under_service_manager(config, agent),
    }
}

fn install(config: &Path, account: &str) -> Result<(), ServiceError> {
    let config_path = std::path::absolute(config).unwrap_or_else(|_| config.to_owned());
    let loaded = Config::load(&config_path)?;
    let executable = std::env::current_exe().map_err(|error| {
        ServiceError::Failed(format!("cannot find kinship.exe's path: {error}"))
    })?;
    let manager = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
    let account_name = match account {
        "" | "LocalSystem" => None,
        "LocalService" => Some(OsString::from(r"NT AUTHORITY\LocalService")),
        other => Some(OsString::from(other)),
    };
    let virtual_account = account_name
        .as_ref()
        .is_some_and(|name| name.to_string_lossy().starts_with(r"NT SERVICE\"));
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: executable.clone(),
        launch_arguments: vec![
            "service".into(),
            "run".into(),
            "--config".into(),
            config_path.clone().into_os_string(),
        ],
        dependencies: Vec::new(),
        account_name,
        account_password: None,
    };
    let service = manager
        .create_service(
            &info,
            // Restart recovery actions need the start right.
            ServiceAccess::CHANGE_CONFIG | ServiceAccess::QUERY_STATUS | ServiceAccess::START,
        )
        .map_err(|error| ServiceError::windows("create the service", &error))?;
    println!(
        "Installed the {SERVICE_NAME} service: {} service run --config {} (account {}, automatic start)",
        executable.display(),
        config_path.display(),
        if account.is_empty() { "LocalSystem" } else { account }
    );
    // The service exists from here on: a setting that cannot be made is reported, and the
    // install still succeeds (Wine's service manager, for one, lacks some of them).
    let warn = |what: &'static str, outcome: windows_service::Result<()>| {
        if let Err(error) = outcome {
            eprintln!("kinship: warning: {}", ServiceError::windows(what, &error));
        }
    };
    warn("set the description", service.set_description(DESCRIPTION));
    warn(
        "set the recovery actions",
        service.update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(FAILURE_COUNT_RESET),
            reboot_msg: None,
            command: None,
            actions: Some(
                RESTART_DELAYS
                    .iter()
                    .map(|delay| ServiceAction {
                        action_type: ServiceActionType::Restart,
                        delay: *delay,
                    })
                    .collect(),
            ),
        }),
    );
    // A stop with a failure exit status counts as a failure too, not only a crash.
    warn(
        "count a failure exit status as a failure for recovery",
        service.set_failure_actions_on_non_crash_failures(true),
    );
    // At machine shutdown, the agent gets as long as a stop takes to drain.
    warn(
        "set the pre-shutdown timeout",
        service.set_preshutdown_timeout(stop_wait_hint(&loaded)),
    );
    if virtual_account {
        warn(
            "set the service SID type",
            service.set_config_service_sid_info(ServiceSidType::Unrestricted),
        );
    }
    println!(
        "Recovery: restart after 5 s, 10 s and 60 s; failures counted over a day. Start it with `kinship service start`."
    );
    Ok(())
}

fn uninstall() -> Result<(), ServiceError> {
    let manager = manager(ServiceManagerAccess::CONNECT)?;
    let service = manager
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(|error| ServiceError::windows("open the service", &error))?;
    let status = service
        .query_status()
        .map_err(|error| ServiceError::windows("query the service", &error))?;
    if status.current_state != ServiceState::Stopped {
        stop_and_wait(&service)?;
    }
    service
        .delete()
        .map_err(|error| ServiceError::windows("delete the service", &error))?;
    println!("Removed the {SERVICE_NAME} service; its config, state and logs are left in place.");
    Ok(())
}

fn start() -> Result<(), ServiceError> {
    let manager = manager(ServiceManagerAccess::CONNECT)?;
    let service = manager
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::START,
        )
        .map_err(|error| ServiceError::windows("open the service", &error))?;
    match service.start::<&str>(&[]) {
        Ok(()) => {}
        Err(windows_service::Error::Winapi(error))
            if error.raw_os_error() == Some(ERROR_SERVICE_ALREADY_RUNNING) =>
        {
            println!("The {SERVICE_NAME} service is already running.");
            return Ok(());
        }
        Err(error) => return Err(ServiceError::windows("start the service", &error)),
    }
    let status = wait_while(&service, ServiceState::StartPending, START_TIMEOUT)?;
    match status.current_state {
        ServiceState::Running => {
            println!("The {SERVICE_NAME} service is running.");
            Ok(())
        }
        ServiceState::StartPending => {
            println!("The {SERVICE_NAME} service is still starting (its start-up checks take a while); see `sc.exe query {SERVICE_NAME}`.");
            Ok(())
        }
        _ => Err(ServiceError::Failed(format!(
            "the {SERVICE_NAME} service stopped as it started ({}); see its log file",
            describe_exit(status.exit_code)
        ))),
    }
}

fn stop() -> Result<(), ServiceError> {
    let manager = manager(ServiceManagerAccess::CONNECT)?;
    let service = manager
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP,
        )
        .map_err(|error| ServiceError::windows("open the service", &error))?;
    stop_and_wait(&service)
}

fn stop_and_wait(service: &windows_service::service::Service) -> Result<(), ServiceError> {
    match service.stop() {
        Ok(_) => {}
        Err(windows_service::Error::Winapi(error))
            if error.raw_os_error() == Some(ERROR_SERVICE_NOT_ACTIVE) =>
        {
            println!("The {SERVICE_NAME} service is not running.");
            return Ok(());
        }
        Err(error) => return Err(ServiceError::windows("stop the service", &error)),
    }
    println!("Stopping the {SERVICE_NAME} service: it sends what it read first.");
    let status = wait_while(service, ServiceState::StopPending, STOP_TIMEOUT)?;
    if status.current_state != ServiceState::Stopped {
        return Err(ServiceError::Failed(format!(
            "the {SERVICE_NAME} service did not stop within {}s; see `sc.exe query {SERVICE_NAME}`",
            STOP_TIMEOUT.as_secs()
        )));
    }
    println!(
        "The {SERVICE_NAME} service stopped ({}).",
        describe_exit(status.exit_code)
    );
    Ok(())
}

fn manager(access: ServiceManagerAccess) -> Result<ServiceManager, ServiceError> {
    ServiceManager::local_computer(None::<&str>, access)
        .map_err(|error| ServiceError::windows("connect to the Service Control Manager", &error))
}

/// Polls the service's status until it leaves `pending` or `timeout` passes.
fn wait_while(
    service: &windows_service::service::Service,
    pending: ServiceState,
    timeout: Duration,
) -> Result<ServiceStatus, ServiceError> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = service
            .query_status()
            .map_err(|error| ServiceError::windows("query the service", &error))?;
        if status.current_state != pending || Instant::now() >= deadline {
            return Ok(status);
        }
        std::thread::sleep(POLL_EVERY);
    }
}

fn describe_exit(code: ServiceExitCode) -> String {
    match code {
        ServiceExitCode::Win32(0) => "exit code 0".to_owned(),
        ServiceExitCode::Win32(code) => format!("Windows error {code}"),
        ServiceExitCode::ServiceSpecific(code) => format!("exit status {code}"),
    }
}

fn stop_wait_hint(config: &Config) -> Duration {
    config
        .shutdown_grace
        .saturating_add(super::control::STOP_MARGIN)
}

/// What `service run` hands to the service's main function, which Windows calls on a thread
/// of its own.
struct Launch {
    config: PathBuf,
    agent: Agent,
}

static LAUNCH: OnceLock<Launch> = OnceLock::new();
/// The running service's controller, for the control handler and for [`notify`].
static CONTROLLER: OnceLock<Arc<Controller<ScmReporter>>> = OnceLock::new();

/// Connects to the Service Control Manager and runs the service until it stops.
fn run_under_service_manager(config: PathBuf, agent: Agent) -> Result<(), ServiceError> {
    if LAUNCH.set(Launch { config, agent }).is_err() {
        return Err(ServiceError::Failed(
            "the service is already running in this process".to_owned(),
        ));
    }
    match service_dispatcher::start(SERVICE_NAME, service_main_entry) {
        Ok(()) => Ok(()),
        Err(windows_service::Error::Winapi(error))
            if error.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) =>
        {
            Err(ServiceError::NotUnderServiceManager)
        }
        Err(error) => Err(ServiceError::windows(
            "connect to the Service Control Manager",
            &error,
        )),
    }
}

/// Called by Windows on its own thread. The service's arguments are not used (the config path
/// is on the registered command line), so the raw pointers are never read.
extern "system" fn service_main_entry(_argument_count: u32, _arguments: *mut *mut u16) {
    service_main();
}

fn service_main() {
    let Some(launch) = LAUNCH.get() else { return };
    let default_log = default_paths().service_log_file;
    let loaded = Config::load(&launch.config);
    let grace = loaded
        .as_ref()
        .map_or(Duration::from_secs(10), |config| config.shutdown_grace);
    let handler = |request: ServiceControl| match CONTROLLER.get() {
        Some(controller) => match controller.control(control_of(&request)) {
            Reply::Handled => ServiceControlHandlerResult::NoError,
            Reply::NotImplemented => ServiceControlHandlerResult::NotImplemented,
        },
        None if matches!(request, ServiceControl::Interrogate) => {
            ServiceControlHandlerResult::NoError
        }
        None => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = match service_control_handler::register(SERVICE_NAME, handler) {
        Ok(handle) => handle,
        Err(error) => {
            let failure =
                ServiceError::windows("register with the Service Control Manager", &error);
            log_outside_tracing(default_log.as_deref(), &failure.to_string());
            return;
        }
    };
    let shutdown = CancellationToken::new();
    let controller = Arc::new(Controller::new(
        ScmReporter(handle),
        shutdown.clone(),
        grace,
    ));
    let controller = Arc::clone(CONTROLLER.get_or_init(|| controller));
    let mut config = match loaded {
        Ok(config) => config,
        Err(problem) => {
            // Nothing is logging yet: the problems go to the default log file.
            log_outside_tracing(default_log.as_deref(), &problem.to_string());
            controller.stopped(Exit::Failed(EXIT_USAGE));
            return;
        }
    };
    if config.log_file.path.is_none() {
        config.log_file.path = default_log;
    }
    let (stop_ticking, ticks) = mpsc::channel::<()>();
    let ticker = {
        let controller = Arc::clone(&controller);
        std::thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = ticks.recv_timeout(TICK_EVERY) {
                controller.tick();
            }
        })
    };
    let status = (launch.agent)(config, shutdown);
    drop(stop_ticking);
    let _ = ticker.join();
    controller.stopped(Exit::from_status(status));
}

/// Forwards `READY=1` from the agent (the point systemd is told it is ready) to the service.
pub(super) fn notify(state: &str) {
    if let Some(controller) = CONTROLLER.get() {
        if state.lines().any(|line| line == "READY=1") {
            controller.running();
        }
    }
}

fn control_of(request: &ServiceControl) -> Control {
    match request {
        ServiceControl::Stop => Control::Stop,
        ServiceControl::Preshutdown => Control::Preshutdown,
        ServiceControl::Shutdown => Control::Shutdown,
        ServiceControl::Interrogate => Control::Interrogate,
        _ => Control::Other,
    }
}

/// Writes `text` to the log file when tracing is not set up (the config could not be read).
fn log_outside_tracing(path: Option<&Path>, text: &str) {
    use std::io::Write;
    use tracing_subscriber::fmt::MakeWriter;
    let Some(path) = path else { return };
    if let Ok(file) = LogFile::open(path, u64::MAX, 0) {
        let _ = file
            .make_writer()
            .write_all(format!("kinship service: {text}\n").as_bytes());
    }
}

/// Sends the controller's statuses to the Service Control Manager.
struct ScmReporter(service_control_handler::ServiceStatusHandle);

impl ReportStatus for ScmReporter {
    fn report(&self, status: Status) {
        // Nothing more can be done if the manager refuses a status: the next one is tried.
        let _ = self.0.set_service_status(service_status(status));
    }
}

fn service_status(status: Status) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: match status.state {
            State::StartPending => ServiceState::StartPending,
            State::Running => ServiceState::Running,
            State::StopPending => ServiceState::StopPending,
            State::Stopped => ServiceState::Stopped,
        },
        controls_accepted: if status.accepts_stop {
            ServiceControlAccept::STOP | ServiceControlAccept::PRESHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: match status.exit {
            None | Some(Exit::Clean) => ServiceExitCode::NO_ERROR,
            Some(Exit::Failed(code)) => ServiceExitCode::ServiceSpecific(u32::from(code)),
        },
        checkpoint: status.checkpoint,
        wait_hint: status.wait_hint,
        process_id: None,
    }
}
