//! The Kinesis Agent's endpoint keys (`kinesis.endpoint` and the like) as kinship writes them:
//! a region for a standard AWS endpoint, a URL for any other.

/// An endpoint as the Kinesis Agent takes it (`kinesis.us-east-1.amazonaws.com`, with or
/// without scheme): the region of a standard AWS endpoint (no endpoint URL is needed then), or
/// the URL of any other.
pub(super) fn endpoint_parts(endpoint: &str, service: &str) -> (Option<String>, Option<String>) {
    let url = with_scheme(endpoint);
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    let prefix = format!("{service}.");
    if let Some(rest) = host.strip_prefix(&prefix) {
        if let Some(region) = rest
            .strip_suffix(".amazonaws.com")
            .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))
        {
            if !region.contains('.') {
                return (Some(region.to_owned()), None);
            }
        }
    }
    (None, Some(url))
}

/// `endpoint` as a URL: `https://` unless it names its scheme.
pub(super) fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    }
}
