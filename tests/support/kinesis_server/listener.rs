//! The accept loop and connections of a test endpoint: every accepted connection is served by
//! the endpoint's [`Endpoint::handle`], over TLS when the listener has an acceptor (HTTP/2 or
//! HTTP/1.1, by ALPN) or plain HTTP/1.1 with keep-alive. [`Listening::stop`] closes the
//! listener and drops every connection, calls in flight included, as an outage does.

use std::future::Future;
use std::io;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A client that has not finished its TLS handshake by then is dropped.
const TLS_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// How long the accept loop backs off after a failed accept (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// What a test endpoint does with the calls its connections carry.
pub trait Endpoint: Send + Sync + 'static {
    /// An answer the endpoint chooses not to give: hyper then closes the connection (or resets
    /// the HTTP/2 stream) without writing one.
    type Error: std::error::Error + Send + Sync + 'static;

    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<Full<Bytes>>, Self::Error>> + Send;

    /// A client did not finish its TLS handshake: `why` says how.
    fn tls_handshake_failed(&self, why: &str) {
        let _ = why;
    }

    /// Accepting a connection failed; the loop backs off and goes on.
    fn accept_failed(&self, error: &io::Error) {
        let _ = error;
    }
}

/// One listening period: the accept loop and every connection it accepted.
pub struct Listening {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Listening {
    /// Serves `listener` on `runtime` until [`Listening::stop`].
    pub fn start<E: Endpoint>(
        runtime: &Handle,
        listener: TcpListener,
        endpoint: Arc<E>,
        tls: Option<TlsAcceptor>,
    ) -> Listening {
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let connections = Connections {
            endpoint,
            tls,
            stop: stop.clone(),
            tasks: tasks.clone(),
        };
        tasks.spawn_on(connections.accept_loop(listener), runtime);
        Listening { stop, tasks }
    }

    /// Closes the listener (connecting is refused from now on) and drops every connection;
    /// returns at once.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// [`Listening::stop`], then waits up to `deadline` for every connection to be gone;
    /// returns whether they all went.
    pub fn stop_and_wait(self, runtime: &Handle, deadline: Duration) -> bool {
        self.stop();
        self.tasks.close();
        let (closed, all_closed) = mpsc::channel();
        let tasks = self.tasks.clone();
        runtime.spawn(async move {
            tasks.wait().await;
            let _ = closed.send(());
        });
        all_closed.recv_timeout(deadline).is_ok()
    }
}

/// What the accept loop hands each connection.
struct Connections<E> {
    endpoint: Arc<E>,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl<E> Clone for Connections<E> {
    fn clone(&self) -> Self {
        Connections {
            endpoint: Arc::clone(&self.endpoint),
            tls: self.tls.clone(),
            stop: self.stop.clone(),
            tasks: self.tasks.clone(),
        }
    }
}

impl<E: Endpoint> Connections<E> {
    async fn accept_loop(self, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                // Returning drops the listener: from here on, connecting is refused.
                () = self.stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    self.tasks.spawn(self.clone().serve(stream));
                }
                Err(error) => {
                    self.endpoint.accept_failed(&error);
                    // Back off rather than spin.
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            }
        }
    }

    async fn serve(self, stream: TcpStream) {
        // Answers are small and written in one go; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = self.tls.clone() else {
            return self.serve_http(stream, false).await;
        };
        let handshake = tokio::select! {
            () = self.stop.cancelled() => return,
            handshake = tokio::time::timeout(TLS_HANDSHAKE_DEADLINE, acceptor.accept(stream)) => handshake,
        };
        match handshake {
            Ok(Ok(stream)) => {
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                self.serve_http(stream, h2).await;
            }
            Ok(Err(error)) => self
                .endpoint
                .tls_handshake_failed(&format!("TLS handshake failed: {error}")),
            Err(_) => self
                .endpoint
                .tls_handshake_failed("TLS handshake timed out"),
        }
    }

    async fn serve_http<I>(self, io: I, h2: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let endpoint = Arc::clone(&self.endpoint);
        let service = service_fn(move |request| Arc::clone(&endpoint).handle(request));
        let io = TokioIo::new(io);
        // An error is a client hanging up, or a call the endpoint chose to leave unanswered
        // (over HTTP/2, that stream is reset). Stopping drops the connection, which closes its
        // socket, even mid-call.
        if h2 {
            let executor = TrackedExecutor {
                stop: self.stop.clone(),
                tasks: self.tasks.clone(),
            };
            let connection = http2::Builder::new(executor).serve_connection(io, service);
            tokio::select! {
                _ = connection => {}
                () = self.stop.cancelled() => {}
            }
        } else {
            let connection = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, service);
            tokio::select! {
                _ = connection => {}
                () = self.stop.cancelled() => {}
            }
        }
    }
}

/// Runs an HTTP/2 connection's streams as tasks of the listening period, which stopping ends
/// as it ends HTTP/1.1 calls in flight.
#[derive(Clone)]
struct TrackedExecutor {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = future => {}
                () = stop.cancelled() => {}
            }
        });
    }
}
