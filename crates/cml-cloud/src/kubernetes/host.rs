//! The pod side: a runner pod removes itself by ending.

use crate::machine::Host;
use crate::CloudError;
use async_trait::async_trait;

/// A runner's pod. It needs no API access of its own (its pod spec mounts no service-account
/// token unless `--cloud-permission-set` names one): when `cml` exits, the container ends,
/// the Job is finished (it never restarts nor retries its pod) and Kubernetes deletes it,
/// its pod and its Secret [`super::manifest::TTL_AFTER_FINISHED`] seconds later.
///
/// Interruptions: Kubernetes stops a Job's pod only to take it away (a node drained, shut
/// down or reclaimed as spot capacity, an eviction, a preemption, the Job's deadline or
/// deletion), and always by SIGTERM first, which `cml` already treats on a cloud machine as
/// the loss of the running job (re-run once, unless `--no-retry`). So there is no notice to
/// watch.
pub struct KubernetesHost;

#[async_trait]
impl Host for KubernetesHost {
    fn cloud(&self) -> &'static str {
        "kubernetes"
    }

    async fn delete_self(&self) -> Result<String, CloudError> {
        let pod = std::env::var("HOSTNAME").unwrap_or_else(|_| "this pod".into());
        Ok(format!(
            "{pod} (its container ends now, and Kubernetes removes its finished Job {} s later)",
            super::manifest::TTL_AFTER_FINISHED
        ))
    }

    fn interruption_watcher(&self) -> Option<crate::interruption::Watcher> {
        None
    }
}
