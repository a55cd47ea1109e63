//! A simulated Azure Resource Manager (`cml_sim::azure`) on 127.0.0.1, one per test, with a
//! service principal the launcher authenticates as.

use cml_sim::azure::{AzureConfig, AzureSim};
use std::time::Duration;

/// The launcher's service principal.
pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const CLIENT_SECRET: &str = "azure-launcher-secret-value-0123456789";

pub struct Azure {
    pub sim: AzureSim,
    /// The launcher's object id (the principal its requests carry).
    pub launcher: String,
}

impl Azure {
    /// A simulator whose operations move every 50 ms.
    pub fn start() -> Azure {
        Azure::start_with(|_| {})
    }

    pub fn start_with(f: impl FnOnce(&mut AzureConfig)) -> Azure {
        let mut cfg = AzureConfig {
            operation_step: Duration::from_millis(50),
            ..AzureConfig::default()
        };
        f(&mut cfg);
        let sim = AzureSim::start(cfg).unwrap();
        let launcher = sim.add_client(CLIENT_ID, CLIENT_SECRET);
        Azure { sim, launcher }
    }

    /// The variables a launcher needs to use this simulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_CLIENT_ID", CLIENT_ID.into()),
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET.into()),
            ("AZURE_TENANT_ID", self.sim.tenant()),
            ("AZURE_SUBSCRIPTION_ID", self.sim.subscription()),
            ("AZURE_AUTHORITY_HOST", self.sim.url()),
            ("CML_AZURE_RESOURCE_MANAGER_URL", self.sim.url()),
        ]
    }
}
