//! Each flow's client and the start-up checks: the AWS clients built from the config (shared
//! between flows with equal settings), the dry-run output, how a flow's `add_ec2_metadata`
//! calls EC2, the factory that makes a flow's client at start and at reload, and the
//! destination checks run before tailing starts.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{Config, Destination, FlowConfig, ProcessorSpec};
use crate::error_chain::chain_text;
use crate::pipeline::processors::ec2::{Ec2Access, HttpAnswer, SendFuture, SendRequest};
use crate::sink::check::{self, CheckFailed, CheckPassed};
use crate::sink::clients::{AwsClients, FlowClients};
use crate::sink::destination::DestinationClient;
use crate::sink::dry_run::DryRunOutput;
use crate::sink::transport::HttpClient;
use crate::sink::wire::WireFormat;
use crate::sink::PutRecords;

use super::flows::*;
use super::*;

/// The AWS clients of every flow (dry-run flows need none) and the dry-run output.
pub struct Destinations {
    clients: HashMap<String, FlowClients>,
    dry_run: Option<Arc<DryRunOutput>>,
    cloudwatch: Option<aws_sdk_cloudwatch::Client>,
    /// How each flow that adds EC2 tags calls `DescribeTags`.
    ec2: HashMap<String, FlowEc2Access>,
}

/// How a flow's `add_ec2_metadata` calls EC2 (`DescribeTags`): the flow's credentials, region
/// and HTTP client (its proxies, CA bundle and timeouts).
#[derive(Clone, Debug)]
pub struct FlowEc2Access(pub(crate) Ec2Access);

/// The data path's HTTP client, as `add_ec2_metadata` sends through it.
#[derive(Debug)]
struct FlowHttp(HttpClient);

impl SendRequest for FlowHttp {
    fn send(&self, request: http::Request<Bytes>) -> SendFuture<'_> {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            self.0
                .send(http::Request::from_parts(parts, Full::new(body)))
                .await
                .map(|answer| HttpAnswer {
                    status: answer.status,
                    body: answer.body,
                })
                .map_err(|error| chain_text(&error))
        })
    }
}

/// Whether `flow` has an `add_ec2_metadata` that reads the instance's tags.
fn reads_ec2_tags(flow: &FlowConfig) -> bool {
    flow.processors
        .iter()
        .any(|spec| matches!(spec, ProcessorSpec::AddEc2Metadata(settings) if settings.tags))
}

impl Destinations {
    /// Builds each flow's clients, sharing them between flows with equal AWS settings.
    pub async fn build(config: &Config) -> Result<Self, AppError> {
        Self::build_keeping(config, None).await
    }

    /// Builds the clients of `config`'s flows, writing dry runs to `dry_run` if it is open.
    pub(super) async fn build_keeping(
        config: &Config,
        dry_run: Option<Arc<DryRunOutput>>,
    ) -> Result<Self, AppError> {
        let mut aws = AwsClients::new();
        let mut clients = HashMap::new();
        for flow in config.flows.iter().filter(|flow| !flow.dry_run) {
            let flow_clients = aws.for_flow(flow).await?;
            let data_path = match (&flow_clients.data_caller, flow_clients.wire_format) {
                (None, _) => "sdk",
                (Some(_), WireFormat::Cbor) => "direct, cbor",
                (Some(_), WireFormat::Json) => "direct, json",
            };
            info!(flow = %flow.name, destination = %flow.destination, region = %flow_clients.region, endpoint = flow.aws.endpoint_url.as_deref().unwrap_or("(AWS default)"), credentials = %flow.aws.describe_credentials(), data_path, "Destination settings.");
            clients.insert(flow.name.clone(), flow_clients);
        }
        if !clients.is_empty() {
            info!(
                flows = clients.len(),
                distinct_settings = aws.distinct_settings(),
                "AWS clients ready; flows with equal settings share one."
            );
        }
        let dry_run = if dry_run.is_some() {
            dry_run
        } else if config.flows.iter().any(|flow| flow.dry_run) {
            let path = config.dry_run_output.clone();
            let output =
                DryRunOutput::open(path.as_deref()).map_err(|source| AppError::DryRunOutput {
                    path: path
                        .as_ref()
                        .map_or_else(|| "standard output".to_owned(), |p| p.display().to_string()),
                    source,
                })?;
            Some(output)
        } else {
            None
        };
        let cloudwatch = match &config.cloudwatch {
            Some(settings) => Some(aws.cloudwatch(&settings.aws).await?),
            None => None,
        };
        let mut ec2 = HashMap::new();
        for flow in config.flows.iter().filter(|flow| reads_ec2_tags(flow)) {
            let (sdk, http) = aws.sdk_and_http(flow).await?;
            let access = Ec2Access {
                credentials: sdk.credentials_provider(),
                time: sdk.time_source().unwrap_or_default(),
                region: sdk.region().map(ToString::to_string),
                http: Arc::new(FlowHttp(http)),
            };
            ec2.insert(flow.name.clone(), FlowEc2Access(access));
        }
        Ok(Self {
            clients,
            dry_run,
            cloudwatch,
            ec2,
        })
    }

    /// The client `flow` sends through; one that refuses every call if its clients are
    /// missing (a flow not in the config these were built from).
    pub fn client_for(&self, flow: &FlowConfig) -> DestinationClient {
        DestinationClient::for_flow(flow, self.clients.get(&flow.name), self.dry_run.as_ref())
            .unwrap_or_else(|| DestinationClient::unavailable(&flow.name))
    }
}

/// Runs the start-up checks of every flow that sends to AWS, at once; returns each flow's
/// name, destination and outcome, in config order.
pub async fn check_online(
    config: &Config,
) -> Result<Vec<(String, Destination, Result<CheckPassed, CheckFailed>)>, AppError> {
    let destinations = Destinations::build(config).await?;
    let mut checks = spawn_checks(
        config
            .flows
            .iter()
            .map(|flow| (flow, Arc::new(destinations.client_for(flow)))),
    );
    let mut outcomes: Vec<Option<Result<CheckPassed, CheckFailed>>> =
        config.flows.iter().map(|_| None).collect();
    while let Some(done) = checks.join_next().await {
        let (index, outcome) = done.map_err(|error| AppError::Task(error.to_string()))?;
        if let Some(slot) = outcomes.get_mut(index) {
            *slot = Some(outcome);
        }
    }
    Ok(config
        .flows
        .iter()
        .zip(outcomes)
        .filter_map(|(flow, outcome)| Some((flow.name.clone(), flow.destination.clone(), outcome?)))
        .collect())
}

/// Starts the checks of every flow that sends to AWS, each tagged with its flow's index.
pub(super) fn spawn_checks<'a, P: PutRecords>(
    flows: impl Iterator<Item = (&'a FlowConfig, Arc<P>)>,
) -> JoinSet<(usize, Result<CheckPassed, CheckFailed>)> {
    let mut checks = JoinSet::new();
    for (index, (flow, client)) in flows.enumerate() {
        if flow.dry_run {
            continue;
        }
        let kind = flow.destination.kind;
        let deadline = check::deadline(flow);
        checks.spawn(async move { (index, check::check(client.as_ref(), kind, deadline).await) });
    }
    checks
}

/// Makes each flow's client: at start for every flow, and for the flows a reload starts.
pub trait ClientFactory: Send {
    type Client: PutRecords;

    /// Readies the clients of `config`'s flows; called at each reload, before any of its
    /// flows starts. An error rejects the new config.
    fn prepare(&mut self, config: &Config) -> impl Future<Output = Result<(), AppError>> + Send;

    fn client_for(&self, flow: &FlowConfig) -> Self::Client;

    /// How `flow`'s `add_ec2_metadata` calls `DescribeTags`; `None`: it reads the instance's
    /// tags from the instance metadata only.
    fn ec2_access(&self, _flow: &FlowConfig) -> Option<FlowEc2Access> {
        None
    }

    /// The client metrics are published through, when `cloudwatch` is enabled.
    fn cloudwatch(&self) -> Option<aws_sdk_cloudwatch::Client> {
        None
    }
}

/// Any function from a flow to its client (tests run the whole agent in-process this way).
impl<P, F> ClientFactory for F
where
    P: PutRecords,
    F: Fn(&FlowConfig) -> P + Send,
{
    type Client = P;

    async fn prepare(&mut self, _config: &Config) -> Result<(), AppError> {
        Ok(())
    }

    fn client_for(&self, flow: &FlowConfig) -> P {
        self(flow)
    }
}

impl ClientFactory for Destinations {
    type Client = DestinationClient;

    async fn prepare(&mut self, config: &Config) -> Result<(), AppError> {
        *self = Self::build_keeping(config, self.dry_run.clone()).await?;
        Ok(())
    }

    fn client_for(&self, flow: &FlowConfig) -> DestinationClient {
        Destinations::client_for(self, flow)
    }

    fn ec2_access(&self, flow: &FlowConfig) -> Option<FlowEc2Access> {
        self.ec2.get(&flow.name).cloned()
    }

    fn cloudwatch(&self) -> Option<aws_sdk_cloudwatch::Client> {
        self.cloudwatch.clone()
    }
}

/// Checks every starting flow's destination at once before tailing starts; logs each result,
/// applies learnt record size limits, and leaves a task checking again for each flow that
/// failed.
pub(super) async fn check_destinations<P: PutRecords>(
    flows: &mut [Starting<P>],
    shutdown: &CancellationToken,
) {
    let mut checks = spawn_checks(
        flows
            .iter()
            .map(|starting| (&starting.flow, Arc::clone(&starting.client))),
    );
    loop {
        let done = tokio::select! {
            _ = shutdown.cancelled() => return,
            done = checks.join_next() => done,
        };
        let Some(done) = done else { return };
        let Ok((index, outcome)) = done else { continue };
        let Some(starting) = flows.get_mut(index) else {
            continue;
        };
        let flow = &mut starting.flow;
        match outcome {
            Ok(passed) => {
                check::log_passed(&flow.name, &flow.destination, &passed);
                check::apply_learned_limit(flow, &passed);
            }
            Err(failed) => {
                check::log_failed(&flow.name, &flow.destination, &failed);
                starting.tasks.spawn(check::keep_checking(
                    Arc::clone(&starting.client),
                    flow.name.clone(),
                    flow.destination.clone(),
                    check::deadline(flow),
                    starting.stop.clone(),
                ));
            }
        }
    }
}
