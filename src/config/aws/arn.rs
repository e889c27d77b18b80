//! AWS names as kinship checks them: region names, account ids, and the ARNs of roles and
//! streams (with the stream's name and region read from them).

use super::destination::DestinationKind;

/// Lowercase letters, digits and dashes, such as `us-east-1`.
pub(super) fn is_region_name(region: &str) -> bool {
    !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_account_id(account: &str) -> bool {
    account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
pub(super) fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws") && is_account_id(account) && resource.starts_with("role/") && resource.len() > 5)
}

/// The parts of a stream ARN: `arn:PARTITION:SERVICE:REGION:ACCOUNT:TYPE/NAME`.
fn stream_arn_parts(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, service, region, account, resource]
            if partition.starts_with("aws") && is_region_name(region) && is_account_id(account) =>
        {
            Some((service, region, account, resource))
        }
        _ => None,
    }
}

/// The stream name in a Kinesis or Firehose stream ARN.
pub(super) fn stream_arn_name(arn: &str, kind: DestinationKind) -> Option<&str> {
    let (service, _, _, resource) = stream_arn_parts(arn)?;
    let prefix = match kind {
        DestinationKind::Kinesis if service == "kinesis" => "stream/",
        DestinationKind::Firehose if service == "firehose" => "deliverystream/",
        _ => return None,
    };
    resource.strip_prefix(prefix)
}

/// The region of a stream ARN.
pub fn arn_region(arn: &str) -> Option<&str> {
    stream_arn_parts(arn).map(|(_, region, _, _)| region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_arns_give_name_and_region() {
        let arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/logs";
        assert_eq!(stream_arn_name(arn, DestinationKind::Kinesis), Some("logs"));
        assert_eq!(stream_arn_name(arn, DestinationKind::Firehose), None);
        assert_eq!(arn_region(arn), Some("eu-west-1"));
        let firehose = "arn:aws-cn:firehose:cn-north-1:123456789012:deliverystream/s3-logs";
        assert_eq!(
            stream_arn_name(firehose, DestinationKind::Firehose),
            Some("s3-logs")
        );
        assert_eq!(
            stream_arn_parts("arn:aws:kinesis:eu-west-1:12345:stream/x"),
            None
        );
        assert!(is_role_arn("arn:aws:iam::123456789012:role/path/kinship"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:user/kinship"));
        assert!(!is_role_arn("kinship"));
    }
}
