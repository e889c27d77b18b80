//! A stand-in for the EC2 instance metadata service on a loopback port, speaking IMDSv2 as the
//! AWS SDK's client expects it (no emulator serves IMDS): a session token from
//! `PUT /latest/api/token` (which must carry `X-aws-ec2-metadata-token-ttl-seconds`), then
//! reads that must carry the token in `X-aws-ec2-metadata-token`. It serves the instance
//! identity document, `instance-id`, `placement/region` and the instance's tags; anything else
//! is a 404, a read without the token a 401.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const TOKEN: &str = "imds-stand-in-token";

/// What the instance looks like.
#[derive(Clone, Debug)]
pub struct Instance {
    pub instance_id: String,
    pub region: String,
    /// Tags as the metadata lists them (when tags are allowed in the instance metadata).
    pub tags: Vec<(String, String)>,
}

/// A running stand-in; dropping it stops it.
pub struct Imds {
    endpoint: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Imds {
    pub fn start(instance: Instance) -> Imds {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the IMDS stand-in");
        let address = listener.local_addr().expect("address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let requests = Arc::clone(&requests);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Some(line) = answer(stream, &instance) {
                        requests.lock().expect("lock").push(line);
                    }
                }
            })
        };
        Imds {
            endpoint: format!("http://{address}"),
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Each request so far as `METHOD PATH`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for Imds {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so that it sees the flag.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request from `stream` and answers it; returns `METHOD PATH`.
fn answer(mut stream: TcpStream, instance: &Instance) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length = headers
        .get("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let (status, reply) = reply(&method, &path, &headers, instance);
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    Some(format!("{method} {path}"))
}

fn reply(
    method: &str,
    path: &str,
    headers: &BTreeMap<String, String>,
    instance: &Instance,
) -> (&'static str, String) {
    if method == "PUT" && path == "/latest/api/token" {
        return match headers.get("x-aws-ec2-metadata-token-ttl-seconds") {
            Some(_) => ("200 OK", TOKEN.to_owned()),
            None => ("400 Bad Request", String::new()),
        };
    }
    if method != "GET" || headers.get("x-aws-ec2-metadata-token").map(String::as_str) != Some(TOKEN)
    {
        return ("401 Unauthorized", String::new());
    }
    let found = match path {
        "/latest/dynamic/instance-identity/document" => Some(
            serde_json::json!({
                "accountId": "123456789012",
                "architecture": "x86_64",
                "availabilityZone": format!("{}a", instance.region),
                "imageId": "ami-12c6146b",
                "instanceId": instance.instance_id,
                "instanceType": "t3.micro",
                "pendingTime": "2026-01-01T00:00:00Z",
                "privateIp": "10.0.0.12",
                "region": instance.region,
                "version": "2017-09-30",
            })
            .to_string(),
        ),
        "/latest/meta-data/instance-id" => Some(instance.instance_id.clone()),
        "/latest/meta-data/placement/region" => Some(instance.region.clone()),
        "/latest/meta-data/tags/instance" => Some(
            instance
                .tags
                .iter()
                .map(|(key, _)| key.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        other => other
            .strip_prefix("/latest/meta-data/tags/instance/")
            .and_then(|key| instance.tags.iter().find(|(k, _)| k == key))
            .map(|(_, value)| value.clone()),
    };
    match found {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", String::new()),
    }
}
