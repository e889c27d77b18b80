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
    CloseHandle, GetLastError, ERROR_INSUFFICIENT_BUFFER, ERROR_NO_MORE_ITEMS, HANDLE,
};
use windows_sys::Win32::System::EventLog::{
    EvtClose, EvtCreateBookmark, EvtNext, EvtRender, EvtRenderEventXml, EvtSubscribe,
    EvtSubscribeStartAfterBookmark, EvtSubscribeStartAtOldestRecord, EvtSubscribeToFutureEvents,
    EVT_HANDLE,
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
            (EvtSubscribeStartAfterBookmark, Some(EvtHandle(handle)))
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

impl Subscribing {
    /// Up to `max` events waiting now (none when there are none).
    fn take(&mut self, max: usize) -> Result<Vec<EvtHandle>, SubscribeError> {
        let mut handles: Vec<EVT_HANDLE> = vec![0; max];
        let mut returned = 0u32;
        let size = u32::try_from(max).unwrap_or(u32::MAX);
        // SAFETY: `handles` has room for `size` handles; `returned` is written by the call.
        let ok = unsafe {
            EvtNext(
                self.subscription.0,
                size,
                handles.as_mut_ptr(),
                0,
                0,
                &mut returned,
            )
        };
        if ok == 0 {
            let error = failed("EvtNext");
            return match error.code {
                ERROR_NO_MORE_ITEMS => Ok(Vec::new()),
                _ => Err(error),
            };
        }
        handles.truncate(returned as usize);
        Ok(handles.into_iter().map(EvtHandle).collect())
    }

    /// Waits up to `wait` for the signal.
    fn wait(&self, wait: Duration) {
        let millis = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        // SAFETY: the signal is a valid event handle.
        unsafe { WaitForSingleObject(self.signal.0, millis) };
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
                self.wait(wait);
                events = self.take(max)?;
            }
        }
        Ok(events.iter().map(render_xml).collect())
    }
}
