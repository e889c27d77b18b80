//! The fault server's STS (query protocol, XML answers): `AssumeRole` hands out temporary keys
//! the server then accepts, and `GetCallerIdentity` names who signed.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::auth::Unauthenticated;
use super::handler::invalid;
use super::state::{Identity, Shared};
use crate::support::kinesis_server::protocol::Wire;
use crate::support::kinesis_server::ACCOUNT;

/// STS (query protocol, XML answers): `AssumeRole` issues fresh keys that last
/// `sts_credentials_lifetime`; `GetCallerIdentity` names the assumed role for keys it issued.
pub(super) fn sts(shared: &Shared, body: &[u8], signer: &str) -> Response<Full<Bytes>> {
    let form = String::from_utf8_lossy(body);
    let action = form
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .unwrap_or_default()
        .to_owned();
    let request_id = shared.request_id();
    let xml = match action.as_str() {
        "AssumeRole" => {
            let mut state = shared.lock();
            let lifetime = state
                .faults
                .sts_credentials_lifetime
                .unwrap_or(Duration::from_secs(3600));
            let expiration = SystemTime::now() + lifetime;
            let key = format!("ASIAFAULT{:011}", state.sts.issued.len());
            state.sts.issued.push((key.clone(), expiration));
            state.identities.insert(
                key.clone(),
                Identity {
                    secret: format!("fault-secret-{key}"),
                    session: Some((format!("fault-token-{key}"), expiration)),
                },
            );
            format!(
                "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>fault-secret-{key}</SecretAccessKey><SessionToken>fault-token-{key}</SessionToken><Expiration>{}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROAFAULT:kinship</AssumedRoleId><Arn>arn:aws:sts::{ACCOUNT}:assumed-role/fault/kinship</Arn></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></AssumeRoleResponse>",
                humantime::format_rfc3339_seconds(expiration)
            )
        }
        "GetCallerIdentity" => {
            let arn = if signer.starts_with("ASIAFAULT") {
                format!("arn:aws:sts::{ACCOUNT}:assumed-role/fault/kinship")
            } else {
                format!("arn:aws:iam::{ACCOUNT}:user/test")
            };
            format!(
                "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><Arn>{arn}</Arn><UserId>AIDAFAULT</UserId><Account>{ACCOUNT}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
            )
        }
        other => {
            return invalid(
                shared,
                Wire::Json,
                "InvalidAction",
                &format!("STS action {other:?} is not served here"),
            )
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(xml)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}

/// STS (query protocol) refuses a signature with an XML error of its own codes.
pub(super) fn sts_error(shared: &Shared, refused: &Unauthenticated) -> Response<Full<Bytes>> {
    let (status, code) = match refused.code {
        "MissingAuthenticationTokenException" => {
            (StatusCode::FORBIDDEN, "MissingAuthenticationToken")
        }
        "IncompleteSignatureException" => (StatusCode::BAD_REQUEST, "IncompleteSignature"),
        "UnrecognizedClientException" => (StatusCode::FORBIDDEN, "InvalidClientTokenId"),
        "ExpiredTokenException" => (StatusCode::BAD_REQUEST, "ExpiredToken"),
        _ => (StatusCode::FORBIDDEN, "SignatureDoesNotMatch"),
    };
    let message = refused
        .message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let xml = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        shared.request_id()
    );
    let mut response = Response::new(Full::new(Bytes::from(xml)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}
