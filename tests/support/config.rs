//! Agent configs for tests, written as YAML text by one builder: the keys nearly every test sets
//! (the state directory, the `aws` block with the endpoint, and flows with their files and
//! stream) in one place; a test adds the keys its case is about as `key: value` lines. A test
//! about a particular YAML shape writes its text by hand instead.

use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};

/// A config under construction; [`AgentConfig::text`] renders it, [`AgentConfig::write`] writes
/// it to `<dir>/kinship.yaml`.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    dir: PathBuf,
    top: Vec<String>,
    aws: Vec<String>,
    flows: Vec<Flow>,
}

impl AgentConfig {
    /// A config whose `state_dir` is `<dir>/state`, with nothing else yet.
    pub fn new(dir: &Path) -> AgentConfig {
        AgentConfig {
            dir: dir.to_path_buf(),
            top: Vec::new(),
            aws: Vec::new(),
            flows: Vec::new(),
        }
    }

    /// A top-level `key: value` line (or lines).
    pub fn top(mut self, line: impl Into<String>) -> AgentConfig {
        self.top.push(line.into());
        self
    }

    pub fn tops(self, lines: &[&str]) -> AgentConfig {
        lines.iter().fold(self, |config, line| config.top(*line))
    }

    /// A `key: value` line in the top-level `aws` block.
    pub fn aws(mut self, line: impl Into<String>) -> AgentConfig {
        self.aws.push(line.into());
        self
    }

    pub fn aws_keys(self, lines: &[&str]) -> AgentConfig {
        lines.iter().fold(self, |config, line| config.aws(*line))
    }

    /// `aws: region` and `endpoint_url`, with the identity check off, as an emulator needs.
    pub fn emulator(self, region: &str, endpoint: &str) -> AgentConfig {
        self.aws(format!("region: {region}"))
            .aws(format!("endpoint_url: {endpoint}"))
            .aws("check_identity: false")
    }

    pub fn flow(mut self, flow: Flow) -> AgentConfig {
        self.flows.push(flow);
        self
    }

    /// The YAML text: `state_dir`, the top-level lines, the `aws` block, then the flows.
    pub fn text(&self) -> String {
        let mut text = format!("state_dir: {}\n", self.dir.join("state").display());
        for line in &self.top {
            text.push_str(line);
            text.push('\n');
        }
        if !self.aws.is_empty() {
            text.push_str("aws:\n");
            for line in &self.aws {
                text.push_str("  ");
                text.push_str(line);
                text.push('\n');
            }
        }
        text.push_str("flows:\n");
        for flow in &self.flows {
            text.push_str(&flow.text());
        }
        text
    }

    /// Writes the text to `<dir>/kinship.yaml` and returns that path.
    pub fn write(&self) -> PathBuf {
        let path = self.dir.join("kinship.yaml");
        fs::write(&path, self.text()).expect("write config");
        path
    }
}

/// One flow of an [`AgentConfig`]: its name, its files, and key lines.
#[derive(Clone, Debug)]
pub struct Flow {
    name: String,
    keys: Vec<String>,
}

impl Flow {
    /// A flow `name` following `files` (a path or glob), with no destination yet.
    pub fn new(name: &str, files: impl Display) -> Flow {
        Flow {
            name: name.to_owned(),
            keys: vec![format!("files: {files}")],
        }
    }

    /// A flow `name` shipping the `.evtx` file `file` into the Kinesis stream `stream`.
    pub fn event_log_file(name: &str, file: impl Display, stream: &str) -> Flow {
        Flow {
            name: name.to_owned(),
            keys: vec![
                format!("windows_event_log: {{ file: {file} }}"),
                format!("kinesis_stream: {stream}"),
            ],
        }
    }

    /// A flow `name` shipping the journal in `directory` into the Kinesis stream `stream`;
    /// `more` are further keys of its `journald` block.
    pub fn journald(name: &str, directory: impl Display, more: &str, stream: &str) -> Flow {
        Flow {
            name: name.to_owned(),
            keys: vec![
                format!("journald: {{ directory: {directory}{more} }}"),
                format!("kinesis_stream: {stream}"),
            ],
        }
    }

    /// A flow `name` following `files` into the Kinesis stream `stream`.
    pub fn kinesis(name: &str, files: impl Display, stream: &str) -> Flow {
        Flow::new(name, files).key(format!("kinesis_stream: {stream}"))
    }

    /// A `key: value` line of the flow.
    pub fn key(mut self, line: impl Into<String>) -> Flow {
        self.keys.push(line.into());
        self
    }

    pub fn keys(self, lines: &[&str]) -> Flow {
        lines.iter().fold(self, |flow, line| flow.key(*line))
    }

    /// The flow as an item of the `flows` list.
    pub fn text(&self) -> String {
        let mut text = format!("  - name: {}\n", self.name);
        for line in &self.keys {
            text.push_str("    ");
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}
