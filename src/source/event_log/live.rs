//! A live channel of the Windows Event Log as a source: `windows_event_log: { channel, query }`
//! follows the channel through the Event Log API (a pull subscription, read on a blocking
//! thread) and ships each event as the same JSON record as an `.evtx` file's (see `render`).
//!
//! The channel's identity is made from its name, so its checkpoint is found again after a
//! restart. Its checkpoint is one past the last record id acknowledged; the subscription
//! resumes strictly after a bookmark made from it (`<Bookmark Channel='…' RecordId='N'/>`),
//! from the oldest event when that event is gone. With `end_of_file` and no checkpoint, the
//! channel's newest event is asked for first and its position saved at once. Everything here
//! but the API calls (`api`, Windows only) is plain logic, the same on every platform.
//!
//! A subscription that cannot be made or read (no such channel, access denied) is one ERROR
//! naming the flow and the channel; it is tried again with a backoff doubling up to
//! `RETRY_MAX`, logged again only when the reason changes, and an INFO tells when the channel
//! is followed again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::reader::{as_record, Event};
use super::render::{render, RenderError};
use super::{Origin, Sending, LOG_EVERY, READ_AHEAD_BLOCKS};
use crate::config::InitialPosition;
use crate::log_limit::LogLimiter;
use crate::record::{Ack, FileId, SourceFile};
use crate::source::outlet::{named_id, Outlet};
use crate::source::KnownOffset;

/// Events taken from the API at a time, at most.
const BLOCK_EVENTS: usize = 128;
/// How long the reading thread waits for new events before it looks whether it is still
/// wanted.
const WAIT_FOR_EVENTS: Duration = Duration::from_millis(500);
/// The first wait before a failed subscription is tried again; it doubles up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What one flow following a live channel needs.
pub(in crate::source) struct EventLogChannel {
    pub channel: String,
    pub query: Option<String>,
    pub checkpoints: HashMap<FileId, KnownOffset>,
    pub outlet: Outlet,
}

/// The identity a channel's checkpoint is kept under: the same for the same channel name, in
/// any letter case (Windows ignores case in channel names), across restarts.
pub fn channel_id(channel: &str) -> FileId {
    named_id(&channel.to_lowercase())
}

/// Where a subscription starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// At the oldest event the channel keeps.
    Oldest,
    /// At the events written from now on.
    NewOnly,
    /// After the event with this record id.
    After(u64),
}

/// Where to subscribe from: after the last record id handed on (`next_record_id` is one past
/// it), or, with no position yet, where `initial_position` says. Record ids start at 1, so a
/// position of 1 or less is the channel's start (a bookmark on record 0 would name no event).
pub fn start_at(next_record_id: Option<u64>, initial: InitialPosition) -> Start {
    match (next_record_id, initial) {
        (Some(next), _) if next <= 1 => Start::Oldest,
        (None, InitialPosition::StartOfFile) => Start::Oldest,
        (Some(next), _) => Start::After(next - 1),
        (None, InitialPosition::EndOfFile) => Start::NewOnly,
    }
}

/// The Windows error of a subscription after a bookmark whose event the channel no longer
/// holds (with `EvtSubscribeStrict`).
pub const ERROR_NOT_FOUND: u32 = 1168;

/// The Event Log's bookmark XML for the event `record_id` of `channel`.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn bookmark_xml(channel: &str, record_id: u64) -> String {
    let mut escaped = String::with_capacity(channel.len());
    for c in channel.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '\'' => escaped.push_str("&apos;"),
            '"' => escaped.push_str("&quot;"),
            other => escaped.push(other),
        }
    }
    format!(
        "<BookmarkList><Bookmark Channel='{escaped}' RecordId='{record_id}' IsCurrent='true'/></BookmarkList>"
    )
}

/// What a subscription is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub channel: String,
    pub query: Option<String>,
    pub start: Start,
}

/// An Event Log API call that failed, with the Windows error code it gave.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed: {}", describe(*.code))]
pub struct SubscribeError {
    pub call: &'static str,
    pub code: u32,
}

/// What a Windows error code means here, and what to do about it.
fn describe(code: u32) -> String {
    match code {
        0 => "the Event Log gave no reason (its API may not be implemented here, as under Wine)"
            .into(),
        5 => "access denied (error 5): add the service's account to the local \"Event Log Readers\" group and restart the service, or run it as LocalSystem; a channel's own access list (`wevtutil gl CHANNEL`, or a Group Policy's log access setting) may ask for more".into(),
        50 | 120 => format!("the Event Log API is not available on this system (error {code})"),
        15001 => "the query is not a valid XPath filter for this channel (error 15001)".into(),
        15007 => "no such channel (error 15007); `wevtutil el` lists the channels".into(),
        15011 => "the channel was cleared or overwritten past the reading position (error 15011)"
            .into(),
        ERROR_NOT_FOUND => "the event the checkpoint names is no longer in the channel (error 1168)"
            .into(),
        other => format!("Windows error {other}"),
    }
}

/// One event taken from a subscription: its XML, or why it could not be rendered.
pub type Rendering = Result<String, SubscribeError>;

/// A subscription's source of rendered events.
pub trait Subscribed {
    /// Up to `max` events, in order; waits up to `wait` for one when there are none. An error
    /// ends the subscription; an event that cannot be rendered does not.
    fn next_events(&mut self, max: usize, wait: Duration)
        -> Result<Vec<Rendering>, SubscribeError>;
}

/// Makes a subscription.
pub type Open = fn(&Subscription) -> Result<Box<dyn Subscribed + Send>, SubscribeError>;

/// The record id of the channel's newest event now; `None` for an empty channel.
pub type Newest = fn(&str) -> Result<Option<u64>, SubscribeError>;

#[cfg(windows)]
fn open_subscription(
    subscription: &Subscription,
) -> Result<Box<dyn Subscribed + Send>, SubscribeError> {
    Ok(Box::new(super::api::subscribe(subscription)?))
}

#[cfg(windows)]
fn newest_record_id(channel: &str) -> Result<Option<u64>, SubscribeError> {
    let xml = super::api::newest_event_xml(channel)?;
    Ok(xml.as_deref().and_then(record_id_in_text))
}

/// Not Windows: there is no Event Log.
#[cfg(not(windows))]
fn newest_record_id(_channel: &str) -> Result<Option<u64>, SubscribeError> {
    const ERROR_NOT_SUPPORTED: u32 = 50;
    Err(SubscribeError {
        call: "EvtQuery",
        code: ERROR_NOT_SUPPORTED,
    })
}

/// Not Windows: there is no Event Log (the config check refuses such flows first).
#[cfg(not(windows))]
fn open_subscription(
    _subscription: &Subscription,
) -> Result<Box<dyn Subscribed + Send>, SubscribeError> {
    const ERROR_NOT_SUPPORTED: u32 = 50;
    Err(SubscribeError {
        call: "EvtSubscribe",
        code: ERROR_NOT_SUPPORTED,
    })
}

/// What the reading thread hands over.
#[derive(Debug)]
pub enum LiveRead {
    /// The subscription is made; events follow.
    Subscribed,
    /// The event the checkpoint names is no longer in the channel (it was cleared, or wrapped
    /// past it): the subscription starts at the oldest event instead.
    BookmarkGone,
    Events(Vec<Event>),
    /// An event that cannot be rendered, or whose XML cannot be made into a record (it has no
    /// record id to place it by): why.
    Skipped(String),
    /// The subscription failed; the thread has ended.
    Failed(SubscribeError),
}

/// Subscribes and hands events over until `out` is closed or the subscription fails. Runs on a
/// blocking thread; reads only as fast as `out` is emptied.
pub fn read_channel(open: Open, subscription: Subscription, out: mpsc::Sender<LiveRead>) {
    let opened = match open(&subscription) {
        Err(failure)
            if failure.code == ERROR_NOT_FOUND && matches!(subscription.start, Start::After(_)) =>
        {
            if out.blocking_send(LiveRead::BookmarkGone).is_err() {
                return;
            }
            open(&Subscription {
                start: Start::Oldest,
                ..subscription
            })
        }
        opened => opened,
    };
    let mut events = match opened {
        Ok(events) => events,
        Err(failure) => {
            let _ = out.blocking_send(LiveRead::Failed(failure));
            return;
        }
    };
    if out.blocking_send(LiveRead::Subscribed).is_err() {
        return;
    }
    while !out.is_closed() {
        let xml = match events.next_events(BLOCK_EVENTS, WAIT_FOR_EVENTS) {
            Ok(xml) => xml,
            Err(failure) => {
                let _ = out.blocking_send(LiveRead::Failed(failure));
                return;
            }
        };
        let mut block = Vec::with_capacity(xml.len());
        for one in xml {
            let event = one
                .map_err(|error| error.to_string())
                .and_then(|xml| event_of(&xml).map_err(|error| error.to_string()));
            match event {
                Ok(event) => block.push(event),
                Err(error) => {
                    let earlier = std::mem::take(&mut block);
                    if (!earlier.is_empty()
                        && out.blocking_send(LiveRead::Events(earlier)).is_err())
                        || out.blocking_send(LiveRead::Skipped(error)).is_err()
                    {
                        return;
                    }
                }
            }
        }
        if !block.is_empty() && out.blocking_send(LiveRead::Events(block)).is_err() {
            return;
        }
    }
}

/// One event's XML as a record. XML that cannot be rendered is sent as it is beside the
/// reason, as for files, when its record id can still be found; else it cannot be placed.
fn event_of(xml: &str) -> Result<Event, RenderError> {
    match render(xml) {
        Ok(rendered) => {
            let record = serde_json::Value::Object(rendered.record);
            Ok(Event {
                record_id: rendered.record_id,
                json: serde_json::to_vec(&record).unwrap_or_default(),
            })
        }
        Err(error) => {
            let record_id = record_id_in_text(xml).ok_or(error)?;
            Ok(Event {
                record_id,
                json: as_record(record_id, xml),
            })
        }
    }
}

/// The number in the text's `<EventRecordID>` element, read without parsing the XML.
fn record_id_in_text(xml: &str) -> Option<u64> {
    const OPEN: &str = "<EventRecordID>";
    let start = xml.find(OPEN)? + OPEN.len();
    let digits = &xml[start..];
    let end = digits.find('<')?;
    digits[..end].trim().parse().ok()
}

/// The index of the first event of `block` whose record id is below `position`: where the
/// channel's record ids started again (it was cleared).
fn restart_index(block: &[Event], position: Option<u64>) -> Option<usize> {
    let position = position?;
    block.iter().position(|event| event.record_id < position)
}

/// The wait before the next try, after `tries` failed ones in a row.
fn retry_after(tries: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1u32.checked_shl(tries.min(16)).unwrap_or(u32::MAX))
        .min(RETRY_MAX)
}

impl EventLogChannel {
    /// Follows the channel until `cancel` fires.
    pub(in crate::source) async fn run(self) {
        self.run_with(open_subscription, newest_record_id).await;
    }

    async fn run_with(self, open: Open, newest: Newest) {
        let outlet = &self.outlet;
        let flow = outlet.flow.name.as_str();
        let channel = self.channel.as_str();
        let id = channel_id(channel);
        let mut source = self.source(id);
        if !outlet.seen(&source).await {
            return;
        }
        let known = self.checkpoints.get(&id).map(|known| known.offset);
        if let Some(from) = known {
            if !outlet.announce(&source, from).await {
                return;
            }
        }
        // With `end_of_file` and no checkpoint, the channel's newest event is where reading
        // starts, saved at once, so that neither a restart nor a failed subscription loses
        // what is written meanwhile; until the Event Log has named it, nothing is read.
        let mut newest_pending =
            known.is_none() && outlet.flow.initial_position == InitialPosition::EndOfFile;
        let mut sending = Sending::new(Origin::Channel(self.channel.clone()), known, &outlet.flow);
        let mut skipped_log = LogLimiter::new(LOG_EVERY);
        let mut failed_tries = 0u32;
        let mut last_failure: Option<SubscribeError> = None;
        let mut keep_alive = tokio::time::interval(outlet.flow.scan_interval);
        loop {
            if newest_pending {
                let channel_name = self.channel.clone();
                let asked = tokio::task::spawn_blocking(move || newest(&channel_name)).await;
                let asked = asked.unwrap_or(Err(SubscribeError {
                    call: "EvtQuery",
                    code: 0,
                }));
                match asked {
                    Ok(found) => {
                        newest_pending = false;
                        // An empty channel is read from its start: all its events are new.
                        let from = found.map_or(1, |newest| newest.saturating_add(1));
                        sending.position = Some(from);
                        if !outlet.announce(&source, from).await {
                            return;
                        }
                    }
                    Err(failure) => {
                        if !self
                            .pause_after(&failure, &mut failed_tries, &mut last_failure)
                            .await
                        {
                            return;
                        }
                        continue;
                    }
                }
            }
            let subscription = Subscription {
                channel: self.channel.clone(),
                query: self.query.clone(),
                start: start_at(sending.position, outlet.flow.initial_position),
            };
            let (sender, mut events) = mpsc::channel(READ_AHEAD_BLOCKS);
            tokio::task::spawn_blocking(move || read_channel(open, subscription, sender));
            let failure = loop {
                let read = tokio::select! {
                    _ = outlet.cancel.cancelled() => return,
                    _ = keep_alive.tick() => {
                        if !outlet.seen(&source).await {
                            return;
                        }
                        continue;
                    }
                    read = events.recv() => read,
                };
                match read {
                    Some(LiveRead::Subscribed) if last_failure.is_none() => {
                        info!(
                            flow,
                            channel,
                            query = self.query.as_deref(),
                            next_record_id = sending.position,
                            "Following the Event Log channel."
                        );
                    }
                    Some(LiveRead::Subscribed) => {
                        debug!(
                            flow,
                            channel,
                            next_record_id = sending.position,
                            "Subscribed to the Event Log channel again."
                        );
                    }
                    Some(LiveRead::BookmarkGone) => {
                        warn!(flow, channel, next_record_id = sending.position, "The event the checkpoint names is no longer in the channel (it was cleared, or it wrapped past it): reading from the oldest event kept. Events overwritten before they were read are lost; after a clear, events whose record ids are below the checkpoint start a new reading.");
                    }
                    Some(LiveRead::Events(block)) => {
                        failed_tries = 0;
                        // A failure is over only once events flow again.
                        if last_failure.take().is_some() {
                            info!(
                                flow,
                                channel,
                                next_record_id = sending.position,
                                "Following the Event Log channel again."
                            );
                        }
                        if !self.ship(&mut source, &mut sending, block).await {
                            return;
                        }
                    }
                    Some(LiveRead::Skipped(error)) => {
                        if let Some(earlier) = skipped_log.allow() {
                            warn!(flow, channel, %error, earlier, "An event of the channel cannot be made into a record; it is not sent (logged at most once a minute).");
                        }
                    }
                    Some(LiveRead::Failed(failure)) => break failure,
                    None => {
                        break SubscribeError {
                            call: "the reading thread",
                            code: 0,
                        }
                    }
                }
            };
            if !self
                .pause_after(&failure, &mut failed_tries, &mut last_failure)
                .await
            {
                return;
            }
        }
    }

    /// After a failure: logs it (an ERROR when the reason is new, a DEBUG line when it is the
    /// same as the last), and waits the backoff; false if shutting down meanwhile.
    async fn pause_after(
        &self,
        failure: &SubscribeError,
        failed_tries: &mut u32,
        last_failure: &mut Option<SubscribeError>,
    ) -> bool {
        let flow = self.outlet.flow.name.as_str();
        let channel = self.channel.as_str();
        let wait = retry_after(*failed_tries);
        *failed_tries = failed_tries.saturating_add(1);
        if last_failure.as_ref() != Some(failure) {
            error!(flow, channel, %failure, retry_in = ?wait, "Cannot read the Event Log channel; trying again with a backoff up to a minute (logged again only if the reason changes).");
        } else {
            debug!(flow, channel, %failure, retry_in = ?wait, "Still cannot read the Event Log channel.");
        }
        *last_failure = Some(failure.clone());
        tokio::select! {
            _ = self.outlet.cancel.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    /// The channel as a source of records, under a new reading key.
    fn source(&self, id: FileId) -> Arc<SourceFile> {
        self.outlet.source(id, PathBuf::from(&self.channel))
    }

    /// Hands `block` on; false if shutting down. Record ids below the position mean the
    /// channel was cleared: what follows is a new reading from its first event.
    async fn ship(
        &self,
        source: &mut Arc<SourceFile>,
        sending: &mut Sending,
        block: Vec<Event>,
    ) -> bool {
        let outlet = &self.outlet;
        let flow = outlet.flow.name.as_str();
        let channel = self.channel.as_str();
        let mut rest = block;
        while let Some(first) = rest.first().map(|event| event.record_id) {
            match sending.position {
                None => {
                    sending.position = Some(first);
                    if !outlet.announce(source, first).await {
                        return false;
                    }
                }
                // Without a query, a channel's record ids follow one another: a gap is events
                // overwritten (the log wrapped) before they were read.
                Some(next) if first > next && self.query.is_none() => {
                    warn!(flow, channel, first_missing = next, first_read = first, "Events of the channel were overwritten before they were read (the log is full and wraps); they are not sent.");
                }
                Some(_) => {}
            }
            let restart = restart_index(&rest, sending.position).map(|at| rest.split_off(at));
            if let Some(lines) = sending.lines(source, rest, &outlet.metrics, flow) {
                if !outlet.send(lines).await {
                    return false;
                }
            }
            let Some(after) = restart else {
                break;
            };
            let first = after.first().map_or(0, |event| event.record_id);
            warn!(flow, channel, next_record_id = sending.position, first_read = first, "The channel's record ids started again (it was cleared); its events are read on from there.");
            *source = self.source(source.id);
            sending.position = Some(first);
            let restarted = Ack::Restarted {
                file: Arc::clone(source),
                offset: first,
                before: None,
            };
            if outlet.acks.send(restarted).await.is_err() {
                return false;
            }
            rest = after;
        }
        true
    }
}

#[cfg(test)]
mod tests;
