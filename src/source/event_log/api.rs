//! The Event Log API calls (wevtapi) of a live channel subscription, behind a safe interface:
//! subscribe (pull model, with a signal event), take the next events, render each as XML.
//! Every handle is closed when its owner is dropped.

// The Event Log API is a C API without a maintained safe Rust wrapper; these calls are the
// crate's only unsafe code, kept to this module (the crate denies unsafe code elsewhere).
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_OPERATION,
    ERROR_NO_MORE_ITEMS, HANDLE, WAIT_FAILED,
};
use windows_sys::Win32::System::EventLog::{
    EvtClose, EvtCreateBookmark, EvtNext, EvtQuery, EvtQueryChannelPath, EvtQueryReverseDirection,
    EvtRender, EvtRenderEventXml, EvtSubscribe, EvtSubscribeStartAfterBookmark,
    EvtSubscribeStartAtOldestRecord, EvtSubscribeStrict, EvtSubscribeToFutureEvents, EVT_HANDLE,
};
use windows_sys::Win32::System::Threading::{CreateEventW, ResetEvent, WaitForSingleObject};

use super::live::{bookmark_xml, Rendering, Start, SubscribeError, Subscribed, Subscription};

/// An Event Log handle (subscription, bookmark or event), closed on drop.
struct EvtHandle(EVT_HANDLE);

impl Drop for EvtHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from the API, is non-zero and is closed only here.
        unsafe { EvtClose(self.0) };
    }
}

/// A manual-reset event the API signals when events are waiting, closed on drop.
struct Signal(HANDLE);

impl Drop for Signal {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateEventW, is non-null and is closed only here.
        unsafe { CloseHandle(self.0) };
    }
}

/// A live subscription to one channel.
pub struct Subscribing {
    // Declared first, so dropped first: the subscription before the signal it uses.
    subscription: EvtHandle,
    _bookmark: Option<EvtHandle>,
    signal: Signal,
}

// SAFETY: Event Log and event handles are not tied to the thread that made them; the
// subscription is used by one thread at a time (it is owned, and `next_events` takes `&mut`).
unsafe impl Send for Subscribing {}

/// `text` as a NUL-terminated UTF-16 string.
fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

fn failed(call: &'static str) -> SubscribeError {
    // SAFETY: reads the calling thread's last error; no arguments.
    let code = unsafe { GetLastError() };
    SubscribeError { call, code }
}

/// Subscribes to `wanted.channel` from `wanted.start`.
pub fn subscribe(wanted: &Subscription) -> Result<Subscribing, SubscribeError> {
    // SAFETY: no security attributes and no name (null pointers are allowed); manual reset,
    // initially set, so that events already waiting are read at once.
    let signal = unsafe { CreateEventW(ptr::null(), 1, 1, ptr::null()) };
    if signal.is_null() {
        return Err(failed("CreateEventW"));
    }
    let signal = Signal(signal);
    let (flags, bookmark) = match wanted.start {
        Start::Oldest => (EvtSubscribeStartAtOldestRecord, None),
        Start::NewOnly => (EvtSubscribeToFutureEvents, None),
        Start::After(record_id) => {
            let xml = wide(&bookmark_xml(&wanted.channel, record_id));
            // SAFETY: `xml` is NUL-terminated and outlives the call.
            let handle = unsafe { EvtCreateBookmark(xml.as_ptr()) };
            if handle == 0 {
                return Err(failed("EvtCreateBookmark"));
            }
            // Strict: if the bookmarked event is gone, the call fails (ERROR_NOT_FOUND) rather
            // than starting after the nearest event, which would skip events unseen.
            (
                EvtSubscribeStartAfterBookmark | EvtSubscribeStrict,
                Some(EvtHandle(handle)),
            )
        }
    };
    let channel = wide(&wanted.channel);
    let query = wanted.query.as_deref().map(wide);
    // SAFETY: the strings are NUL-terminated and outlive the call; the bookmark handle is
    // valid (or 0 when unused); no session (local), no callback and no context (pull model).
    let subscription = unsafe {
        EvtSubscribe(
            0,
            signal.0,
            channel.as_ptr(),
            query.as_ref().map_or(ptr::null(), |query| query.as_ptr()),
            bookmark.as_ref().map_or(0, |bookmark| bookmark.0),
            ptr::null(),
            None,
            flags,
        )
    };
    if subscription == 0 {
        return Err(failed("EvtSubscribe"));
    }
    Ok(Subscribing {
        subscription: EvtHandle(subscription),
        _bookmark: bookmark,
        signal,
    })
}

/// Up to `max` events of `results` (a subscription or a query) ready within `timeout_ms`
/// (none when there are none).
fn next_handles(
    results: &EvtHandle,
    max: usize,
    timeout_ms: u32,
) -> Result<Vec<EvtHandle>, SubscribeError> {
    let mut handles: Vec<EVT_HANDLE> = vec![0; max];
    let mut returned = 0u32;
    let size = u32::try_from(max).unwrap_or(u32::MAX);
    // SAFETY: `handles` has room for `size` handles; `returned` is written by the call.
    let ok = unsafe {
        EvtNext(
            results.0,
            size,
            handles.as_mut_ptr(),
            timeout_ms,
            0,
            &mut returned,
        )
    };
    if ok == 0 {
        let error = failed("EvtNext");
        return match error.code {
            ERROR_NO_MORE_ITEMS => Ok(Vec::new()),
            // Some Windows versions say so of a subscription with nothing to read yet.
            ERROR_INVALID_OPERATION if returned == 0 => Ok(Vec::new()),
            _ => Err(error),
        };
    }
    handles.truncate(returned as usize);
    Ok(handles
        .into_iter()
        .filter(|handle| *handle != 0)
        .map(EvtHandle)
        .collect())
}

/// The newest event of `channel` as XML; `None` for an empty channel.
pub fn newest_event_xml(channel: &str) -> Result<Option<String>, SubscribeError> {
    const QUERY_TIMEOUT_MS: u32 = 10_000;
    let channel = wide(channel);
    // SAFETY: the channel is NUL-terminated and outlives the call; no session (local), no
    // query (every event), newest first.
    let query = unsafe {
        EvtQuery(
            0,
            channel.as_ptr(),
            ptr::null(),
            EvtQueryChannelPath | EvtQueryReverseDirection,
        )
    };
    if query == 0 {
        return Err(failed("EvtQuery"));
    }
    let query = EvtHandle(query);
    let events = next_handles(&query, 1, QUERY_TIMEOUT_MS)?;
    events.first().map(render_xml).transpose()
}

impl Subscribing {
    /// Up to `max` events waiting now (none when there are none).
    fn take(&mut self, max: usize) -> Result<Vec<EvtHandle>, SubscribeError> {
        next_handles(&self.subscription, max, 0)
    }

    /// Waits up to `wait` for the signal.
    fn wait(&self, wait: Duration) -> Result<(), SubscribeError> {
        let millis = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        // SAFETY: the signal is a valid event handle.
        let waited = unsafe { WaitForSingleObject(self.signal.0, millis) };
        if waited == WAIT_FAILED {
            return Err(failed("WaitForSingleObject"));
        }
        Ok(())
    }

    fn reset(&self) {
        // SAFETY: the signal is a valid event handle.
        unsafe { ResetEvent(self.signal.0) };
    }
}

/// The event as XML (`EvtRenderEventXml`).
fn render_xml(event: &EvtHandle) -> Result<String, SubscribeError> {
    let mut used = 0u32;
    let mut properties = 0u32;
    // SAFETY: asks for the size only: no buffer, size 0; `used` and `properties` are written.
    let ok = unsafe {
        EvtRender(
            0,
            event.0,
            EvtRenderEventXml,
            0,
            ptr::null_mut(),
            &mut used,
            &mut properties,
        )
    };
    if ok == 0 {
        let error = failed("EvtRender");
        if error.code != ERROR_INSUFFICIENT_BUFFER {
            return Err(error);
        }
    }
    let mut buffer = vec![0u16; (used as usize).div_ceil(2)];
    let size = u32::try_from(buffer.len() * 2).unwrap_or(u32::MAX);
    // SAFETY: `buffer` holds `size` bytes; `used` and `properties` are written.
    let ok = unsafe {
        EvtRender(
            0,
            event.0,
            EvtRenderEventXml,
            size,
            buffer.as_mut_ptr().cast::<c_void>(),
            &mut used,
            &mut properties,
        )
    };
    if ok == 0 {
        return Err(failed("EvtRender"));
    }
    let chars = (used as usize / 2).min(buffer.len());
    let text = &buffer[..chars];
    let text = text.strip_suffix(&[0]).unwrap_or(text);
    Ok(String::from_utf16_lossy(text))
}

impl Subscribed for Subscribing {
    fn next_events(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Rendering>, SubscribeError> {
        let mut events = self.take(max)?;
        if events.is_empty() {
            // Reset before looking again, so that an event arriving in between sets it anew.
            self.reset();
            events = self.take(max)?;
            if events.is_empty() {
                self.wait(wait)?;
                events = self.take(max)?;
            }
        }
        Ok(events.iter().map(render_xml).collect())
    }
}
