//! AWS Signature Version 4 (`AWS4-HMAC-SHA256` in an `Authorization` header), written from the
//! specification for the fault server to check every request with, and for tests to sign raw
//! requests with. It deliberately shares no code with the `aws-sigv4` crate the agent signs
//! with: a mistake in how the agent uses that crate must show here as a refused request.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's `X-Amz-Date` may be from the server's clock, as the services allow.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);
/// What the services answer for a signature that does not match.
pub const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the \
     signature you provided. Check your AWS Secret Access Key and signing method. Consult the \
     service documentation for details.";

/// One HTTP request as it was sent: what a signature covers.
pub struct Signable<'a> {
    pub method: &'a str,
    /// The path as it appears on the request line, percent-encoding and all.
    pub path: &'a str,
    /// The query string as sent, without `?` (empty when none).
    pub query: &'a str,
    /// Every header, names in any case; a name may repeat.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD`.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lower-case names, in the order given.
    pub signed_headers: Vec<String>,
    /// Lower-case hex.
    pub signature: String,
}

impl Authorization {
    /// Reads the header; `Err` says what is missing or malformed, as the services'
    /// `IncompleteSignatureException` does.
    pub fn parse(header: &str) -> Result<Authorization, String> {
        let rest = header
            .strip_prefix(ALGORITHM)
            .filter(|rest| rest.starts_with(' '))
            .ok_or_else(|| format!("the authorization header does not start with {ALGORITHM}"))?;
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(value) = part.strip_prefix("Credential=") {
                credential = Some(value);
            } else if let Some(value) = part.strip_prefix("SignedHeaders=") {
                signed_headers = Some(value);
            } else if let Some(value) = part.strip_prefix("Signature=") {
                signature = Some(value);
            } else {
                return Err(format!(
                    "unexpected part {part:?} in the authorization header"
                ));
            }
        }
        let missing = |name: &str| format!("the authorization header has no {name}=");
        let credential = credential.ok_or_else(|| missing("Credential"))?;
        let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
        let signature = signature.ok_or_else(|| missing("Signature"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
            return Err(format!(
                "Credential should be KEY/YYYYMMDD/REGION/SERVICE/aws4_request, not {credential:?}"
            ));
        };
        if access_key_id.is_empty()
            || date.len() != 8
            || !date.bytes().all(|byte| byte.is_ascii_digit())
        {
            return Err(format!("malformed credential scope {credential:?}"));
        }
        if signature.len() != 64 || !signature.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err("the signature is not 64 hex digits".to_owned());
        }
        Ok(Authorization {
            access_key_id: access_key_id.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            signed_headers: signed_headers.split(';').map(str::to_owned).collect(),
            signature: signature.to_ascii_lowercase(),
        })
    }

    /// `DATE/REGION/SERVICE/aws4_request`.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// Why a signature was refused, in the services' words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The header is malformed or leaves out what must be signed.
    Incomplete(String),
    /// The signature does not match, or the request is too old, or its payload hash is wrong.
    Mismatch(String),
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Checks `request` against `authorization`, signed with `secret`: the canonical request is
/// rebuilt from what arrived, and the signature compared. `now` bounds the request's age.
pub fn verify(
    request: &Signable<'_>,
    authorization: &Authorization,
    secret: &str,
    now: SystemTime,
) -> Result<(), Refusal> {
    let signed = &authorization.signed_headers;
    if signed.is_empty()
        || signed
            .iter()
            .any(|name| name.is_empty() || *name != name.to_ascii_lowercase())
        || signed.windows(2).any(|pair| pair[0] >= pair[1])
    {
        return Err(Refusal::Incomplete(
            "SignedHeaders must be lower-case names in sorted order, each once".to_owned(),
        ));
    }
    if !signed.iter().any(|name| name == "host") {
        return Err(Refusal::Incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
        ));
    }
    let amz_date = header_value(request.headers, "x-amz-date").ok_or_else(|| {
        Refusal::Incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
             header."
                .to_owned(),
        )
    })?;
    if !signed.iter().any(|name| name == "x-amz-date") {
        return Err(Refusal::Incomplete(
            "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
        ));
    }
    let signed_at = parse_amz_date(&amz_date).ok_or_else(|| {
        Refusal::Incomplete(format!("X-Amz-Date {amz_date:?} is not YYYYMMDDTHHMMSSZ"))
    })?;
    if !amz_date.starts_with(&authorization.date) {
        return Err(Refusal::Mismatch(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{}'",
            authorization.date,
            &amz_date[..8]
        )));
    }
    let skew = now
        .duration_since(signed_at)
        .or_else(|early| signed_at.duration_since(now).map_err(|_| early))
        .unwrap_or_default();
    if skew > MAX_CLOCK_SKEW {
        return Err(Refusal::Mismatch(format!(
            "Signature expired: {amz_date} is more than 15 minutes from the server's time."
        )));
    }
    let body_hash = sha256_hex(request.body);
    let payload_hash = match header_value(request.headers, "x-amz-content-sha256") {
        Some(claimed) if claimed != body_hash => {
            return Err(Refusal::Mismatch(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
                    .to_owned(),
            ))
        }
        _ => body_hash,
    };
    let canonical = canonical_request(request, signed, &payload_hash);
    let expected = signature(secret, authorization, &amz_date, &canonical);
    if expected != authorization.signature {
        return Err(Refusal::Mismatch(format!(
            "{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n\
             '{canonical}'\n\nThe String-to-Sign should have been\n'{}'\n",
            string_to_sign(authorization, &amz_date, &canonical)
        )));
    }
    Ok(())
}

/// The `Authorization` header for `request` (which must already carry `host` and `x-amz-date`,
/// and every header named in `signed_headers`), signed with `access_key_id` and `secret` for
/// `region` and `service`.
pub fn authorization_header(
    request: &Signable<'_>,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    signed_headers: &[&str],
) -> String {
    let mut signed: Vec<String> = signed_headers
        .iter()
        .map(|name| name.to_ascii_lowercase())
        .collect();
    signed.sort();
    signed.dedup();
    let amz_date = header_value(request.headers, "x-amz-date").unwrap_or_default();
    let authorization = Authorization {
        access_key_id: access_key_id.to_owned(),
        date: amz_date.chars().take(8).collect(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed,
        signature: String::new(),
    };
    let canonical = canonical_request(
        request,
        &authorization.signed_headers,
        &sha256_hex(request.body),
    );
    format!(
        "{ALGORITHM} Credential={access_key_id}/{}, SignedHeaders={}, Signature={}",
        authorization.scope(),
        authorization.signed_headers.join(";"),
        signature(secret, &authorization, &amz_date, &canonical)
    )
}

/// `YYYYMMDDTHHMMSSZ` for `time`, as `X-Amz-Date` carries it.
pub fn amz_date(time: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(time).to_string();
    // 2026-11-23T10:00:00Z → 20261123T100000Z
    stamp.chars().filter(|c| *c != '-' && *c != ':').collect()
}

fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[9..11],
        &text[11..13],
        &text[13..15]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

fn canonical_request(request: &Signable<'_>, signed: &[String], payload_hash: &str) -> String {
    let mut canonical = String::with_capacity(256);
    canonical.push_str(request.method);
    canonical.push('\n');
    canonical.push_str(&canonical_uri(request.path));
    canonical.push('\n');
    canonical.push_str(&canonical_query(request.query));
    canonical.push('\n');
    for name in signed {
        let values: Vec<String> = request
            .headers
            .iter()
            .filter(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| collapse_spaces(value))
            .collect();
        let _ = writeln!(canonical, "{name}:{}", values.join(","));
    }
    canonical.push('\n');
    canonical.push_str(&signed.join(";"));
    canonical.push('\n');
    canonical.push_str(payload_hash);
    canonical
}

/// Each path segment URI-encoded once more (services other than S3 sign the path encoded
/// twice); `.` and `..` segments are resolved first.
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut uri = String::with_capacity(path.len() + 1);
    for segment in &segments {
        uri.push('/');
        uri.push_str(&uri_encode(segment.as_bytes()));
    }
    if uri.is_empty() {
        uri.push('/');
    }
    uri
}

/// Parameters decoded, encoded strictly and sorted by name, then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(name)),
                uri_encode(&percent_decode(value)),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn uri_encode(bytes: &[u8]) -> String {
    let mut encoded = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex_pair = bytes
            .get(at + 1..at + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[at], hex_pair) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                at += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                at += 1;
            }
        }
    }
    decoded
}

/// Trimmed, with every run of spaces inside made one space.
fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn string_to_sign(authorization: &Authorization, amz_date: &str, canonical: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        authorization.scope(),
        sha256_hex(canonical.as_bytes())
    )
}

fn signature(
    secret: &str,
    authorization: &Authorization,
    amz_date: &str,
    canonical: &str,
) -> String {
    let mut key = hmac(
        format!("AWS4{secret}").as_bytes(),
        authorization.date.as_bytes(),
    );
    for part in [
        authorization.region.as_bytes(),
        authorization.service.as_bytes(),
        b"aws4_request",
    ] {
        key = hmac(&key, part);
    }
    hex(&hmac(
        &key,
        string_to_sign(authorization, amz_date, canonical).as_bytes(),
    ))
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The first value of header `name`, trimmed.
fn header_value(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim().to_owned())
}
