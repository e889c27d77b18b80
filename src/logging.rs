//! The log set-up: level, format and destination from the config, and every line masked of
//! secrets before it is written, at every level, whatever a dependency printed.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use tracing::Metadata;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{AwsSettings, Config, CredentialSource, LogFormat};
use crate::logfile::LogFile;
use crate::secrets;

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot open the log file {} (log_file): {source}", path.display())]
    LogFile { path: PathBuf, source: io::Error },
}

/// Environment variables that hold secrets the SDK may read.
const SECRET_ENVIRONMENT: [&str; 5] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// Keys of the shared credentials and config files that hold secrets.
const SECRET_PROFILE_KEYS: [&str; 3] = [
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
];

/// Logs to standard error, or to the config's `log_file`, at the config's level (`RUST_LOG`
/// overrides it), in its format, with every secret masked. Every secret the config, the
/// environment and the shared credentials files hold is registered first.
pub fn init(config: &Config) -> Result<(), LoggingError> {
    register_known_secrets(config);
    let from_environment = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|value| !value.trim().is_empty())
        .and_then(|value| EnvFilter::try_new(value).ok());
    let filter = from_environment
        .or_else(|| EnvFilter::try_new(&config.log_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let settings = &config.log_file;
    let (writer, ansi) = match &settings.path {
        Some(path) => match LogFile::open(path, settings.max_bytes, settings.keep) {
            Ok(file) => (BoxMakeWriter::new(Masking::new(file)), false),
            Err(source) => {
                return Err(LoggingError::LogFile {
                    path: path.clone(),
                    source,
                })
            }
        },
        None => (
            BoxMakeWriter::new(Masking::new(io::stderr)),
            io::stderr().is_terminal(),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match config.log_format {
        LogFormat::Human => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    Ok(())
}

/// Registers the secrets of the config (every flow's and CloudWatch's AWS settings), of the
/// environment and of the shared credentials and config files, before anything can print them.
pub fn register_known_secrets(config: &Config) {
    let settings = config
        .flows
        .iter()
        .map(|flow| &flow.aws)
        .chain(config.cloudwatch.iter().map(|cloudwatch| &cloudwatch.aws));
    for aws in settings {
        register_settings(aws);
    }
    for name in SECRET_ENVIRONMENT {
        if let Ok(value) = std::env::var(name) {
            secrets::register(&value);
        }
    }
    for path in shared_aws_files() {
        if let Ok(text) = std::fs::read_to_string(&path) {
            register_profile_secrets(&text);
        }
    }
}

fn register_settings(aws: &AwsSettings) {
    if let CredentialSource::Static {
        access_key_id,
        secret_access_key,
        session_token,
    } = &aws.credentials
    {
        secrets::register(access_key_id.expose());
        secrets::register(secret_access_key.expose());
        if let Some(token) = session_token {
            secrets::register(token.expose());
        }
    }
    if let Some(external_id) = aws
        .assume_role
        .as_ref()
        .and_then(|role| role.external_id.as_ref())
    {
        secrets::register(external_id.expose());
    }
}

/// The shared credentials and config files the SDK reads, where the environment or the home
/// directory says they are.
fn shared_aws_files() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from);
    let named = |variable: &str, default: &str| {
        std::env::var_os(variable)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|home| home.join(".aws").join(default)))
    };
    [
        named("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        named("AWS_CONFIG_FILE", "config"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Registers the value of every secret key (`aws_secret_access_key = …`) of an INI-style
/// shared credentials or config file.
fn register_profile_secrets(text: &str) {
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if SECRET_PROFILE_KEYS.contains(&key.trim().to_ascii_lowercase().as_str()) {
            secrets::register(value.trim());
        }
    }
}

/// A writer maker whose writers mask secrets: each log line is gathered, masked, then written
/// whole by one call to the underlying writer.
pub struct Masking<M> {
    inner: M,
}

impl<M> Masking<M> {
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Masking<M> {
    type Writer = MaskingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskingWriter::new(self.inner.make_writer())
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        MaskingWriter::new(self.inner.make_writer_for(meta))
    }
}

/// Gathers what one log event writes and passes it on masked when flushed or dropped.
pub struct MaskingWriter<W: Write> {
    inner: W,
    gathered: Vec<u8>,
}

impl<W: Write> MaskingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            gathered: Vec::new(),
        }
    }

    fn pass_on(&mut self) -> io::Result<()> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.gathered);
        let result = self.inner.write_all(secrets::mask(&text).as_bytes());
        self.gathered.clear();
        result
    }
}

impl<W: Write> Write for MaskingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.gathered.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pass_on()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for MaskingWriter<W> {
    fn drop(&mut self) {
        // A log line that cannot be written has nowhere to report it.
        let _ = self.pass_on();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_secret_written_in_pieces_is_masked_whole() {
        secrets::register("loggingTestSecret/0123456789+abcdef");
        let captured = Captured::default();
        let sink = captured.clone();
        let masking = Masking::new(move || sink.clone());
        {
            let mut writer = masking.make_writer();
            writer.write_all(b"value=loggingTest").expect("gathered");
            writer
                .write_all(b"Secret/0123456789+abcdef key=AKIAIOSFODNN7EXAMPLE\n")
                .expect("gathered");
        }
        let written =
            String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("utf-8");
        assert_eq!(written, "value=<redacted> key=AKIA…MPLE\n");
    }

    #[test]
    fn events_logged_through_the_subscriber_are_masked() {
        secrets::register("subscriberTestToken/ABCDEFGH+12345678");
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Masking::new(move || sink.clone()))
            .with_max_level(tracing::Level::TRACE)
            .json()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(
                token = "subscriberTestToken/ABCDEFGH+12345678",
                "a dependency's line"
            );
        });
        let written =
            String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("utf-8");
        assert!(written.contains("a dependency's line"), "{written}");
        assert!(!written.contains("subscriberTestToken"), "{written}");
        assert!(written.contains(r#""token":"<redacted>""#), "{written}");
    }

    #[test]
    fn secret_keys_of_shared_credentials_files_are_registered() {
        register_profile_secrets(
            "[default]\naws_access_key_id = AKIAPROFILETEST00001\nAWS_Secret_Access_Key=profileTestSecret/0123456789\nregion = eu-west-1\n",
        );
        assert_eq!(
            secrets::SECRETS.mask("profileTestSecret/0123456789 eu-west-1 AKIAPROFILETEST00001"),
            "<redacted> eu-west-1 AKIA…0001"
        );
    }
}
