//! Errors of cloud operations: one variant per operation, naming the resource and the fix.

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("AWS credentials or region are not usable: {reason}\nhint: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile), and check --cloud-region")]
    Credentials { reason: String },
    #[error("finding the machine image {image} in {region} failed: {reason}\nhint: pass --cloud-image with an AMI id (ami-...) available in {region}")]
    Image {
        image: String,
        region: String,
        reason: String,
    },
    #[error("creating the key pair {name} failed: {reason}")]
    KeyPair { name: String, reason: String },
    #[error("--cloud-ssh-private could not be used: {reason}\nhint: pass an RSA or Ed25519 private key in PEM or OpenSSH format")]
    SshKey { reason: String },
    #[error("preparing the security group {name} failed: {reason}\nhint: pass --cloud-aws-security-group with an existing group id")]
    SecurityGroup { name: String, reason: String },
    #[error("launching a {machine_type} instance in {region} failed: {reason}")]
    Launch {
        machine_type: String,
        region: String,
        reason: String,
    },
    #[error("the spot request for {machine_type} in {region} was not fulfilled: {reason}\nhint: raise --cloud-spot-price, try another region, pass --cloud-spot-fallback to accept an on-demand machine, or leave out --cloud-spot")]
    Spot {
        machine_type: String,
        region: String,
        reason: String,
    },
    #[error("waiting for instance {id} to run failed: {reason}")]
    Wait { id: String, reason: String },
    #[error(
        "instance {id} did not reach the running state within {seconds} s (last state: {state})"
    )]
    WaitTimeout {
        id: String,
        seconds: u64,
        state: String,
    },
    #[error("deleting {resource} failed: {reason}\nhint: delete it by hand; everything cml creates carries the tag cml:id")]
    Destroy { resource: String, reason: String },
    #[error("teardown in {region} did not finish{why}; what may be left:\n{left}\nhint: run `cml runner cleanup --cloud=aws --cloud-region={region}` (with --delete to remove it), or delete it by hand: everything cml creates carries the tag cml:id")]
    Incomplete {
        region: String,
        /// Why it stopped (`: ...`), or empty.
        why: String,
        /// One line per resource, indented.
        left: String,
    },
    #[error("the machine's startup script is {bytes} bytes, over EC2's limit of {limit} bytes for user-data{cause}\nhint: {hint}; nothing was created")]
    UserDataTooLarge {
        bytes: usize,
        limit: usize,
        /// What makes it big (`: ...`), or empty.
        cause: String,
        hint: String,
    },
    #[error("reading instance metadata {path} failed: {reason}\nhint: this check only works on a cloud machine")]
    Metadata { path: String, reason: String },
    #[error("listing resources tagged cml:id in {region} failed: {reason}")]
    List { region: String, reason: String },
    #[error("reading the console output of {id} failed: {reason}")]
    Console { id: String, reason: String },
    #[error("--cloud={cloud} is not available in this build\nhint: nothing was created; use a build with the {cloud} feature")]
    NotInThisBuild { cloud: String },
}
