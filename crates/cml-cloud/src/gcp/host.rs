//! The machine side on Compute Engine: the instance deletes itself with its own service
//! account's token, read from the metadata server.

use super::api::{self, Api, ApiError};
use super::auth::{TokenSource, Tokens};
use crate::interruption::GCP_METADATA_URL;
use crate::machine::Host;
use crate::CloudError;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// The metadata server every Compute Engine machine reaches.
pub const DEFAULT_METADATA_URL: &str = "http://metadata.google.internal";
/// The permission an instance needs to delete itself.
pub const DELETE_PERMISSION: &str = "compute.instances.delete";

/// A Compute Engine instance, from its own side.
#[derive(Debug, Clone)]
pub struct GcpHost {
    metadata_url: String,
    compute_endpoint: String,
}

impl GcpHost {
    /// The metadata server from [`GCP_METADATA_URL`] (else [`DEFAULT_METADATA_URL`]) and the
    /// API endpoint from [`api::COMPUTE_ENDPOINT`] (else Compute Engine's).
    pub fn from_env() -> GcpHost {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        GcpHost::new(
            &env(GCP_METADATA_URL).unwrap_or_else(|| DEFAULT_METADATA_URL.into()),
            &api::endpoint(env(api::COMPUTE_ENDPOINT).as_deref()),
        )
    }

    /// The host whose metadata server is `metadata_url` and API `compute_endpoint`.
    pub fn new(metadata_url: &str, compute_endpoint: &str) -> GcpHost {
        GcpHost {
            metadata_url: metadata_url.trim_end_matches('/').to_string(),
            compute_endpoint: api::endpoint(Some(compute_endpoint)),
        }
    }

    /// The project this machine is in, when a metadata server answers within `within` (so:
    /// when this process runs on a GCP machine); `None` elsewhere.
    pub async fn project(&self, within: Duration) -> Option<String> {
        let http = reqwest::Client::builder()
            .connect_timeout(within)
            .timeout(within)
            .build()
            .ok()?;
        self.read(&http, "project/project-id")
            .await
            .ok()
            .filter(|p| !p.is_empty())
    }

    /// The metadata server's base URL.
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    async fn read(&self, http: &reqwest::Client, path: &str) -> Result<String, CloudError> {
        let fail = |reason: String| CloudError::Metadata {
            path: path.to_string(),
            reason,
        };
        let resp = http
            .get(format!("{}/computeMetadata/v1/{path}", self.metadata_url))
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| fail(super::auth::transport_reason(&e)))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| fail(super::auth::transport_reason(&e)))?;
        if !status.is_success() {
            return Err(fail(format!("HTTP {}", status.as_u16())));
        }
        Ok(text.trim().to_string())
    }
}

#[async_trait]
impl Host for GcpHost {
    fn cloud(&self) -> &'static str {
        "gcp"
    }

    /// Reads the instance's name, zone and project and its service account's token from the
    /// metadata server, then asks Compute Engine to delete the instance (its boot disk goes
    /// with it). Returns `ZONE/NAME`. An instance already gone counts as deleted. Needs the
    /// `compute` (or `cloud-platform`) scope and [`DELETE_PERMISSION`]; without them the
    /// error names the permission and how to grant it.
    async fn delete_self(&self) -> Result<String, CloudError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let name = self.read(&http, "instance/name").await?;
        let zone_path = self.read(&http, "instance/zone").await?;
        let zone = zone_path.rsplit('/').next().unwrap_or_default().to_string();
        let project = self.read(&http, "project/project-id").await?;
        let id = format!("{zone}/{name}");
        let tokens = Arc::new(Tokens::new(TokenSource::Metadata(
            self.metadata_url.clone(),
        )));
        let api = Api::new(&self.compute_endpoint, &project, tokens);
        match api.delete_instance(&zone, &name).await {
            Ok(_) => Ok(id),
            Err(e) if e.is_not_found() => Ok(id),
            Err(e @ ApiError::Status { status: 403, .. }) => Err(CloudError::GcpPermission {
                operation: format!("deleting this instance ({id})"),
                permission: DELETE_PERMISSION.into(),
                reason: e.to_string(),
                hint: format!(
                    "give the machine's service account a role with {DELETE_PERMISSION} (such as roles/compute.instanceAdmin.v1) and the compute scope, with --cloud-permission-set EMAIL,scopes=https://www.googleapis.com/auth/compute; meanwhile the machine powers itself off"
                ),
            }),
            Err(e) => Err(e.into_cloud(|reason| CloudError::Destroy {
                resource: format!("this instance ({id})"),
                reason,
            })),
        }
    }
}
