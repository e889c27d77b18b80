//! Reads from the EC2 instance metadata service (IMDSv2, through the AWS SDK's client): the
//! instance identity document, and the instance's tags where the instance allows them in its
//! metadata.

use std::time::Duration;

use aws_config::imds::client::Client as ImdsClient;

/// The instance identity document's fields the processor adds, by the document's names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceIdentity {
    pub private_ip: Option<String>,
    pub availability_zone: Option<String>,
    pub instance_id: Option<String>,
    pub instance_type: Option<String>,
    pub account_id: Option<String>,
    pub image_id: Option<String>,
    pub region: Option<String>,
}

/// A client of the metadata service at `endpoint`, else the SDK's default (or
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT`).
pub fn client(endpoint: Option<&str>) -> Result<ImdsClient, String> {
    let mut builder = ImdsClient::builder()
        .max_attempts(2)
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(2));
    if let Some(endpoint) = endpoint {
        builder = builder
            .endpoint(endpoint)
            .map_err(|error| error.to_string())?;
    }
    Ok(builder.build())
}

/// The instance identity document.
pub async fn identity(client: &ImdsClient) -> Result<InstanceIdentity, String> {
    let document = client
        .get("/latest/dynamic/instance-identity/document")
        .await
        .map_err(|error| error.to_string())?;
    parse_identity(document.as_ref())
}

fn parse_identity(text: &str) -> Result<InstanceIdentity, String> {
    let document: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| format!("the instance identity document is not JSON: {error}"))?;
    let field = |name: &str| {
        document
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    Ok(InstanceIdentity {
        private_ip: field("privateIp"),
        availability_zone: field("availabilityZone"),
        instance_id: field("instanceId"),
        instance_type: field("instanceType"),
        account_id: field("accountId"),
        image_id: field("imageId"),
        region: field("region"),
    })
}

/// The instance's tags from its metadata (tags must be allowed there), in the service's order.
pub async fn tags(client: &ImdsClient) -> Result<Vec<(String, String)>, String> {
    let keys = client
        .get("/latest/meta-data/tags/instance")
        .await
        .map_err(|error| error.to_string())?;
    let mut tags = Vec::new();
    for key in keys.as_ref().lines().filter(|key| !key.is_empty()) {
        let value = client
            .get(format!("/latest/meta-data/tags/instance/{key}"))
            .await
            .map_err(|error| format!("tag {key}: {error}"))?;
        tags.push((key.to_owned(), value.as_ref().to_owned()));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_document_is_read_by_its_names() {
        let identity = parse_identity(r#"{"accountId":"123456789012","architecture":"x86_64","availabilityZone":"eu-west-1b","imageId":"ami-0abc","instanceId":"i-0123","instanceType":"m7g.large","privateIp":"10.0.1.5","region":"eu-west-1"}"#).expect("document");
        assert_eq!(identity.instance_id.as_deref(), Some("i-0123"));
        assert_eq!(identity.image_id.as_deref(), Some("ami-0abc"));
        assert_eq!(identity.region.as_deref(), Some("eu-west-1"));
        let partial = parse_identity(r#"{"instanceId":"i-1","region":7}"#).expect("document");
        assert_eq!(partial.region, None);
        assert!(parse_identity("<html>").is_err());
    }
}
