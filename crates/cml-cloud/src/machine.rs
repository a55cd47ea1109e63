//! The machine side: a runner machine removing itself when its runner has ended.

use crate::CloudError;

/// Terminates the EC2 instance this process runs on.
///
/// The instance id and region come from the instance metadata service (IMDSv2; its address
/// can be overridden with `AWS_EC2_METADATA_SERVICE_ENDPOINT`, as for every AWS SDK), and
/// `TerminateInstances` uses the machine's own credentials (its instance profile, or the
/// standard AWS variables). When that is not possible, the caller falls back to an OS
/// shutdown: instances are launched with shutdown behaviour `terminate`, so that removes
/// the machine too.
#[cfg(feature = "aws")]
pub async fn terminate_self_on_aws() -> Result<String, CloudError> {
    use aws_config::imds;
    let fail = |reason: String| CloudError::Destroy {
        resource: "this instance".into(),
        reason,
    };
    let client = imds::Client::builder().build();
    let read = |path: &'static str| {
        let client = client.clone();
        async move {
            client.get(path).await.map(String::from).map_err(|e| {
                format!(
                    "instance metadata {path}: {}",
                    aws_sdk_ec2::error::DisplayErrorContext(e)
                )
            })
        }
    };
    let id = read("/latest/meta-data/instance-id").await.map_err(fail)?;
    let region = read("/latest/meta-data/placement/region")
        .await
        .map_err(fail)?;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .load()
        .await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    ec2.terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .map_err(|e| fail(format!("{}", aws_sdk_ec2::error::DisplayErrorContext(e))))?;
    Ok(id)
}
