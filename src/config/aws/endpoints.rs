//! Where an `aws` block's calls go and whom they trust: endpoint URLs (plain `http://` only to
//! this machine, unless allowed) and a CA bundle trusted beside the system's roots.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::config::Checker;
use crate::secrets::quoted;

/// Whether `text` holds a PEM certificate block.
fn holds_pem_certificate(text: &[u8]) -> bool {
    memchr::memmem::find(text, b"-----BEGIN CERTIFICATE-----").is_some()
}

/// Whether `host` (as written in a URL) is this machine.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host of an `http://` or `https://` URL, `None` if it is not one.
fn url_host(url: &str) -> Option<(bool, &str)> {
    let (tls, rest) = match url.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("http://")?),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if host_port.starts_with('[') {
        host_port
            .split(']')
            .next()
            .map(|h| &host_port[..h.len() + 1])?
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    (!host.is_empty()).then_some((tls, host))
}

impl Checker<'_> {
    /// A CA bundle: an absolute path to a readable file holding at least one PEM certificate.
    pub(super) fn ca_file(&mut self, key: &str, path: &str) -> Option<PathBuf> {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            self.problem(
                key,
                format!(
                    "`{}` is not an absolute path",
                    quoted(&path.display().to_string())
                ),
            );
            return None;
        }
        match std::fs::read(&path) {
            Err(error) => {
                self.problem(key, format!("cannot read `{}`: {error}", path.display()));
                None
            }
            Ok(text) if !holds_pem_certificate(&text) => {
                self.problem(
                    key,
                    format!(
                        "`{}` holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)",
                        path.display()
                    ),
                );
                None
            }
            Ok(_) => Some(path),
        }
    }

    /// An endpoint URL: `https://`, or `http://` to this machine or when `allow_insecure`.
    pub(in crate::config) fn endpoint(&mut self, key: &str, url: &str, allow_insecure: bool) {
        match url_host(url) {
            None => self.problem(
                key,
                format!(
                    "`{}` is not an http:// or https:// URL with a host",
                    quoted(url)
                ),
            ),
            Some((false, host)) if !allow_insecure && !is_loopback_host(host) => self.problem(
                key,
                format!(
                    "`{}` would send requests and signatures unencrypted to another host; use https://, or set allow_insecure_http: true",
                    quoted(url)
                ),
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for url in [
            "http://127.0.0.1:4567",
            "http://localhost:1",
            "http://[::1]:80/",
            "http://127.9.9.9",
        ] {
            let (tls, host) = url_host(url).expect(url);
            assert!(!tls && is_loopback_host(host), "{url}");
        }
        for url in [
            "http://kinesis.example.com",
            "http://10.0.0.1:80",
            "http://user@host:1/",
        ] {
            let (_, host) = url_host(url).expect(url);
            assert!(!is_loopback_host(host), "{url}");
        }
        assert_eq!(url_host("https://a.b:443/x"), Some((true, "a.b")));
        assert_eq!(url_host("ftp://a"), None);
        assert_eq!(url_host("http://"), None);
    }
}
