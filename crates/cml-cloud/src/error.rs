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
    #[error("no Google Cloud credentials: neither GOOGLE_APPLICATION_CREDENTIALS_DATA nor GOOGLE_APPLICATION_CREDENTIALS is set\nhint: set GOOGLE_APPLICATION_CREDENTIALS to the path of a service-account JSON key (or GOOGLE_APPLICATION_CREDENTIALS_DATA to its contents); nothing was created")]
    GcpCredentialsMissing,
    #[error("reading the service-account key file {path} named by {variable} failed: {reason}\nhint: check that the file exists and is readable, or set GOOGLE_APPLICATION_CREDENTIALS_DATA to its contents")]
    GcpCredentialsRead {
        variable: &'static str,
        path: String,
        reason: String,
    },
    #[error("the Google Cloud credentials in {variable} are not usable: {reason}\nhint: {variable} must hold a service-account JSON key (\"type\": \"service_account\"), as `gcloud iam service-accounts keys create` writes it")]
    GcpCredentialsFormat {
        variable: &'static str,
        reason: String,
    },
    #[error("the private key of the service-account key in {variable} cannot sign: {reason}\nhint: use the key file as Google issued it (its private_key is an RSA key in PEM form)")]
    GcpPrivateKey {
        variable: &'static str,
        reason: String,
    },
    #[error("no Google Cloud project: the key in {variable} names none and GOOGLE_CLOUD_PROJECT is not set\nhint: set GOOGLE_CLOUD_PROJECT to the project id")]
    GcpProject { variable: &'static str },
    #[error("Google's token endpoint {token_uri} refused the service-account key in {variable}: {reason}\nhint: {hint}")]
    GcpTokenRefused {
        variable: &'static str,
        token_uri: String,
        reason: String,
        hint: String,
    },
    #[error("Google's token endpoint {token_uri} could not be reached: {reason}\nhint: check the network connection to {token_uri}; nothing was created")]
    GcpTokenUnreachable { token_uri: String, reason: String },
    #[error("the access token of this machine's service account could not be read from the metadata server {url}: {reason}\nhint: the machine needs a service account (--cloud-permission-set EMAIL,scopes=https://www.googleapis.com/auth/compute)")]
    GcpMetadataToken { url: String, reason: String },
    #[error("Compute Engine refused {operation} for lack of the permission {permission}: {reason}\nhint: {hint}")]
    GcpPermission {
        operation: String,
        permission: String,
        reason: String,
        hint: String,
    },
    #[error("the quota {metric} of region {region} is exhausted: {reason}\nhint: delete machines you do not need, request a higher {metric} quota for {region} in the Cloud console (IAM & Admin > Quotas), or use another region or machine type; nothing was left behind")]
    GcpQuota {
        metric: String,
        region: String,
        reason: String,
    },
    #[error("no zone of {region} had capacity for {what} (tried {zones}): {reason}\nhint: {hint}; nothing was left behind")]
    GcpCapacity {
        region: String,
        /// The machine asked for (`a spot n1-standard-4 machine`).
        what: String,
        zones: String,
        reason: String,
        hint: String,
    },
    #[error("teardown in {zone} did not finish{why}; what may be left:\n{left}\nhint: run `cml runner cleanup --cloud=gcp --cloud-region={zone}` (with --delete to remove it), or delete it by hand: everything cml creates carries the label cml-id")]
    GcpIncomplete {
        zone: String,
        /// Why it stopped (`: ...`), or empty.
        why: String,
        /// One line per resource, indented.
        left: String,
    },
    #[error("the machine's metadata {what} is {bytes} bytes, over Compute Engine's limit of {limit} bytes{cause}\nhint: {hint}; nothing was created")]
    MetadataTooLarge {
        /// `item startup-script`, or `in total`.
        what: String,
        bytes: usize,
        limit: usize,
        /// What makes it big (`: ...`), or empty.
        cause: String,
        hint: String,
    },
    #[error("--cloud-permission-set {value:?} is not a service account for Compute Engine: {reason}\nhint: give EMAIL or EMAIL,scopes=SCOPE,SCOPE (for example runner@PROJECT.iam.gserviceaccount.com,scopes=https://www.googleapis.com/auth/compute); nothing was created")]
    GcpPermissionSet { value: String, reason: String },
    #[error("no Azure credentials: {missing} not set\nhint: set AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_TENANT_ID to a service principal's (an app registration with a client secret) and AZURE_SUBSCRIPTION_ID to the subscription to work in; nothing was created")]
    AzureCredentialsMissing {
        /// The variables not set, comma-separated.
        missing: String,
    },
    #[error("Microsoft Entra ID refused the credentials: {variable} is wrong: {reason}\nhint: {hint}; nothing was created")]
    AzureCredentialRejected {
        /// The variable at fault (`AZURE_CLIENT_SECRET`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`).
        variable: &'static str,
        reason: String,
        hint: String,
    },
    #[error("Microsoft Entra ID's token endpoint {url} could not be reached: {reason}\nhint: check the network connection, and AZURE_AUTHORITY_HOST if it is set; nothing was created")]
    AzureTokenUnreachable { url: String, reason: String },
    #[error("the managed identity's token could not be read from the instance metadata service {url}: {reason}\nhint: the machine needs a system-assigned managed identity (cml gives every runner machine one)")]
    AzureManagedIdentity { url: String, reason: String },
    #[error("Azure Resource Manager refused {operation} for lack of the permission {permission}: {reason}\nhint: {hint}")]
    AzurePermission {
        operation: String,
        permission: String,
        reason: String,
        hint: String,
    },
    #[error("the vCPU quota of {region} is exhausted: {reason}\nhint: delete machines you do not need, request a higher quota for {region} (Azure portal > Quotas > Compute), or use another region or size; nothing was left behind")]
    AzureQuota { region: String, reason: String },
    #[error("no zone of {region} had capacity for {what} (tried {zones}): {reason}\nhint: {hint}; nothing was left behind")]
    AzureCapacity {
        region: String,
        /// The machine asked for (`a spot Standard_F8s_v2 machine`).
        what: String,
        zones: String,
        reason: String,
        hint: String,
    },
    #[error("the resource group {name} already exists in the subscription\nhint: another runner of the same name may be running; pick another --name, or run `cml runner cleanup --cloud=azure --cloud-region={region}` if it is a leftover; nothing was created")]
    AzureResourceGroupExists { name: String, region: String },
    #[error(
        "--{option} {value:?} cannot be used on Azure: {reason}\nhint: {hint}; nothing was created"
    )]
    AzureOption {
        option: &'static str,
        value: String,
        reason: String,
        hint: String,
    },
    #[error("the machine's startup script is {chars} characters in base64, over Azure's limit of {limit} for customData{cause}\nhint: {hint}; nothing was created")]
    CustomDataTooLarge {
        chars: usize,
        limit: usize,
        /// What makes it big (`: ...`), or empty.
        cause: String,
        hint: String,
    },
    #[error("teardown in {region} did not finish{why}; what may be left:\n{left}\nhint: run `cml runner cleanup --cloud=azure --cloud-region={region}` (with --delete to remove it), or delete the resource group by hand: everything cml creates carries the tag cml:id")]
    AzureIncomplete {
        region: String,
        /// Why it stopped (`: ...`), or empty.
        why: String,
        /// One line per resource, indented.
        left: String,
    },
    #[error("the Kubernetes configuration from {origin} is not usable: {reason}\nhint: {hint}; nothing was created")]
    KubernetesConfig {
        origin: String,
        reason: String,
        hint: String,
    },
    #[error("Kubernetes refused {operation} in namespace {namespace}: {reason}\nhint: {hint}")]
    KubernetesRequest {
        /// What was asked (`creating Job cml-x`).
        operation: String,
        namespace: String,
        reason: String,
        hint: String,
    },
    #[error("the {kind} {name} already exists in namespace {namespace}\nhint: another runner of the same name may be running; pick another --name, or run `cml runner cleanup --cloud=kubernetes --cloud-kubernetes-namespace={namespace}` if it is a leftover")]
    KubernetesExists {
        kind: &'static str,
        name: String,
        namespace: String,
    },
    #[error("the pod of Job {job} in namespace {namespace} did not start within {seconds} s:\n{why}\nhint: {hint}")]
    KubernetesPodPending {
        job: String,
        namespace: String,
        seconds: u64,
        /// What the pod's status and events say, one line each.
        why: String,
        hint: String,
    },
    #[error(
        "the pod of Job {job} in namespace {namespace} ended before its runner came online: {why}"
    )]
    KubernetesPodEnded {
        job: String,
        namespace: String,
        why: String,
    },
    #[error("--{option} {value:?} cannot be used on Kubernetes: {reason}\nhint: {hint}; nothing was created")]
    KubernetesOption {
        option: &'static str,
        value: String,
        reason: String,
        hint: String,
    },
    #[error("teardown in namespace {namespace} did not finish{why}; what may be left:\n{left}\nhint: run `cml runner cleanup --cloud=kubernetes --cloud-kubernetes-namespace={namespace}` (with --delete to remove it), or delete it by hand: everything cml creates carries the label app.kubernetes.io/managed-by=cml")]
    KubernetesIncomplete {
        namespace: String,
        /// Why it stopped (`: ...`), or empty.
        why: String,
        /// One line per resource, indented.
        left: String,
    },
    #[error("--cloud={cloud} is not available in this build\nhint: nothing was created; use a build with the {cloud} feature")]
    NotInThisBuild { cloud: String },
}
