//! The fault server's check of a request's SigV4 signature: a key it knows, scoped to the
//! right service and region, with a session token that has not expired; refusals are worded as
//! the JSON services word them.

use std::time::SystemTime;

use super::sigv4::{self, Authorization, Refusal, Signable};
use super::state::Shared;
use crate::support::kinesis_server::REGION;

/// A request refused for its signature, in the words of the JSON services.
pub(super) struct Unauthenticated {
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl Unauthenticated {
    fn new(code: &'static str, message: impl Into<String>) -> Unauthenticated {
        Unauthenticated {
            code,
            message: message.into(),
        }
    }
}

/// Checks the request's SigV4 signature for `service` in the server's region; returns the
/// access key id that signed it.
pub(super) fn authenticate(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    service: &str,
) -> Result<String, Unauthenticated> {
    let Some(header) = parts.headers.get("authorization") else {
        return Err(Unauthenticated::new(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let authorization = header
        .to_str()
        .map_err(|_| "the authorization header is not ASCII".to_owned())
        .and_then(Authorization::parse)
        .map_err(|message| Unauthenticated::new("IncompleteSignatureException", message))?;
    if authorization.service != service {
        return Err(Unauthenticated::new(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to correct service: '{service}'. (got '{}')",
                authorization.service
            ),
        ));
    }
    if authorization.region != REGION {
        return Err(Unauthenticated::new(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region. (got '{}', this endpoint is {REGION})",
                authorization.region
            ),
        ));
    }
    let identity = shared
        .lock()
        .identities
        .get(&authorization.access_key_id)
        .cloned();
    let invalid_token = || {
        Unauthenticated::new(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    };
    let identity = identity.ok_or_else(invalid_token)?;
    if let Some((token, expires)) = &identity.session {
        let sent = parts
            .headers
            .get("x-amz-security-token")
            .and_then(|value| value.to_str().ok());
        if sent != Some(token.as_str()) {
            return Err(invalid_token());
        }
        if SystemTime::now() >= *expires {
            return Err(Unauthenticated::new(
                "ExpiredTokenException",
                "The security token included in the request is expired",
            ));
        }
    }
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    // HTTP/2 carries the host as `:authority`, which SigV4 signs as `host`.
    if !parts.headers.contains_key("host") {
        if let Some(authority) = parts.uri.authority() {
            headers.push(("host".to_owned(), authority.as_str().to_owned()));
        }
    }
    let request = Signable {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body,
    };
    match sigv4::verify(
        &request,
        &authorization,
        &identity.secret,
        SystemTime::now(),
    ) {
        Ok(()) => Ok(authorization.access_key_id),
        Err(Refusal::Incomplete(message)) => Err(Unauthenticated::new(
            "IncompleteSignatureException",
            message,
        )),
        Err(Refusal::Mismatch(message)) => {
            Err(Unauthenticated::new("InvalidSignatureException", message))
        }
    }
}
