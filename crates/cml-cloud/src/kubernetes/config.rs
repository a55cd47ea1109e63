//! Where the Kubernetes credentials come from, in CML's order: [`CONFIGURATION`] (the
//! contents of a kubeconfig), else kube-rs's inference: the files `KUBECONFIG` names,
//! `~/.kube/config`, then the in-cluster service account (so a launcher running in a pod
//! works). Whatever the kubeconfig's user uses works: a token, a client certificate, or an
//! exec plugin (`aws eks get-token`, `gke-gcloud-auth-plugin`), which kube-rs runs when a
//! request needs a token.
//!
//! Contract: an error here names where the configuration came from and never quotes a value
//! of it (a kubeconfig holds tokens and keys).

use crate::CloudError;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Holds the contents of a kubeconfig (CML's variable).
pub const CONFIGURATION: &str = "KUBERNETES_CONFIGURATION";

/// A client configuration and where it came from (for messages).
pub struct Loaded {
    pub config: kube::Config,
    /// `KUBERNETES_CONFIGURATION`, `KUBECONFIG (path)`, ...
    pub origin: String,
}

/// Reads the configuration as the module says. `namespace` overrides the context's.
pub async fn load(namespace: Option<&str>) -> Result<Loaded, CloudError> {
    let inline = std::env::var(CONFIGURATION)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let mut loaded = match inline {
        Some(text) => from_yaml(&text, CONFIGURATION).await?,
        None => {
            let origin = match std::env::var("KUBECONFIG") {
                Ok(p) if !p.trim().is_empty() => format!("KUBECONFIG ({p})"),
                _ => "~/.kube/config or the in-cluster service account".into(),
            };
            let config = kube::Config::infer()
                .await
                .map_err(|e| CloudError::KubernetesConfig {
                    origin: origin.clone(),
                    reason: unquoted(&e.to_string()),
                    hint: format!("set {CONFIGURATION} to the contents of a kubeconfig, point KUBECONFIG at one, or run in a pod with a service account"),
                })?;
            Loaded { config, origin }
        }
    };
    if let Some(ns) = namespace {
        loaded.config.default_namespace = ns.to_string();
    }
    Ok(loaded)
}

/// The configuration in kubeconfig `text` (its current context), `origin` naming where it came
/// from.
pub async fn from_yaml(text: &str, origin: &str) -> Result<Loaded, CloudError> {
    let origin = origin.to_string();
    let parsed = Kubeconfig::from_yaml(text).map_err(|e| CloudError::KubernetesConfig {
        origin: origin.clone(),
        reason: unquoted(&e.to_string()),
        hint: format!("{CONFIGURATION} must hold the contents of a kubeconfig file (as `kubectl config view --raw --minify` prints it), not its path"),
    })?;
    let config = kube::Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
        .await
        .map_err(|e| CloudError::KubernetesConfig {
            origin: origin.clone(),
            reason: unquoted(&e.to_string()),
            hint: "check its current-context, and that the context names a cluster and a user defined in it".into(),
        })?;
    Ok(Loaded { config, origin })
}

/// `message` with every double-quoted part elided: parser errors quote the offending value,
/// which in a kubeconfig may be a token or a key.
pub fn unquoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            if !inside {
                out.push_str("\"…\"");
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_elided() {
        assert_eq!(
            unquoted(r#"invalid type: string "s3cr3t-token", expected a map at line 3"#),
            r#"invalid type: string "…", expected a map at line 3"#
        );
        assert_eq!(unquoted("no quotes"), "no quotes");
    }
}
