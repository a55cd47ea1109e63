//! The machine side on Azure: the VM deletes its own resource group with its system-assigned
//! managed identity's token, read from the instance metadata service.

use super::api::{self, ApiError, Arm, RESOURCES_API};
use super::auth::{transport_reason, TokenSource, Tokens};
use crate::interruption::AZURE_METADATA_URL;
use crate::machine::Host;
use crate::CloudError;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The instance metadata service every Azure VM reaches.
pub const DEFAULT_METADATA_URL: &str = "http://169.254.169.254";
/// The api-version of the metadata service's instance document.
pub const IMDS_INSTANCE_API_VERSION: &str = "2021-02-01";
/// The permission the machine's identity needs to delete itself.
pub const DELETE_PERMISSION: &str = "Microsoft.Resources/subscriptions/resourceGroups/delete";

/// An Azure VM, from its own side.
#[derive(Debug, Clone)]
pub struct AzureHost {
    metadata_url: String,
    resource_manager: String,
    /// The launcher's service principal, when it was put on the machine; else the machine's
    /// managed identity.
    client: Option<super::auth::ClientSecret>,
}

impl AzureHost {
    /// The metadata service from [`AZURE_METADATA_URL`] (else [`DEFAULT_METADATA_URL`]) and
    /// Resource Manager from [`api::RESOURCE_MANAGER_URL`] (else Azure's).
    pub fn from_env() -> AzureHost {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        AzureHost::new(
            &env(AZURE_METADATA_URL).unwrap_or_else(|| DEFAULT_METADATA_URL.into()),
            &api::endpoint(env(api::RESOURCE_MANAGER_URL).as_deref()),
        )
    }

    /// The host whose metadata service is `metadata_url` and Resource Manager
    /// `resource_manager`.
    pub fn new(metadata_url: &str, resource_manager: &str) -> AzureHost {
        AzureHost {
            metadata_url: metadata_url.trim_end_matches('/').to_string(),
            resource_manager: api::endpoint(Some(resource_manager)),
            client: None,
        }
    }

    /// Deletes with this service principal's token instead of the managed identity's
    /// (`--cloud-azure-credentials-on-machine`).
    pub fn with_client_secret(mut self, client: super::auth::ClientSecret) -> AzureHost {
        self.client = Some(client);
        self
    }

    /// The metadata service's instance document's `compute` part.
    async fn compute(&self) -> Result<Value, CloudError> {
        let path = "/metadata/instance";
        let fail = |reason: String| CloudError::Metadata {
            path: path.to_string(),
            reason,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let resp = http
            .get(format!("{}{path}", self.metadata_url))
            .query(&[("api-version", IMDS_INSTANCE_API_VERSION)])
            .header("Metadata", "true")
            .send()
            .await
            .map_err(|e| fail(transport_reason(&e)))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| fail(transport_reason(&e)))?;
        if !status.is_success() {
            return Err(fail(format!("HTTP {}", status.as_u16())));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| fail(format!("not JSON ({e})")))?;
        Ok(v["compute"].clone())
    }
}

#[async_trait]
impl Host for AzureHost {
    fn cloud(&self) -> &'static str {
        "azure"
    }

    /// Reads the subscription, resource group and VM name from the metadata service and the
    /// managed identity's token, then asks Resource Manager to delete the resource group
    /// (the VM, its disk, network and address with it). Does not wait for the deletion to
    /// end: the machine goes with it. Returns `RESOURCE_GROUP/VM`. A group already gone
    /// counts as deleted. A refusal (403) names [`DELETE_PERMISSION`] and the role the
    /// launcher assigns.
    async fn delete_self(&self) -> Result<String, CloudError> {
        let compute = self.compute().await?;
        let field = |k: &str| {
            compute[k]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| CloudError::Metadata {
                    path: format!("/metadata/instance compute.{k}"),
                    reason: "missing from the answer".into(),
                })
        };
        let subscription = field("subscriptionId")?;
        let rg = field("resourceGroupName")?;
        let name = field("name")?;
        let id = format!("{rg}/{name}");
        let tokens = Arc::new(Tokens::new(match &self.client {
            Some(client) => TokenSource::ClientSecret(client.clone()),
            None => TokenSource::ManagedIdentity(self.metadata_url.clone()),
        }));
        let arm = Arm::new(&self.resource_manager, &subscription, tokens);
        match arm.delete(&arm.group_id(&rg), RESOURCES_API).await {
            Ok(_) => {
                tracing::info!(resource_group = %rg, "deletion of this machine's resource group accepted");
                Ok(id)
            }
            Err(e) if e.is_not_found() => Ok(id),
            Err(e @ ApiError::Status { status: 403, .. }) => Err(CloudError::AzurePermission {
                operation: format!("deleting this machine's resource group {rg}"),
                permission: DELETE_PERMISSION.into(),
                reason: e.to_string(),
                hint: format!(
                    "the launcher gives the machine's system-assigned identity the Contributor role on {rg}; check that the role assignment exists (`az role assignment list --resource-group {rg}`); meanwhile the machine powers itself off"
                ),
            }),
            Err(e) => Err(e.into_cloud(|reason| CloudError::Destroy {
                resource: format!("this machine's resource group {rg}"),
                reason,
            })),
        }
    }
}
