//! Helpers of the Azure simulator tests: a blocking HTTP client, a simulator with one
//! launcher app, ARM paths and bodies, and long-running-operation polling.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use cml_sim::azure::contract::Contract;
use cml_sim::azure::{AzureConfig, AzureSim};
use serde_json::{json, Value};

pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const SECRET: &str = "launcher-secret-value";
pub const LOCATION: &str = "eastus";

/// An answer: status, headers, text and JSON (`Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// A blocking HTTP client.
pub struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Client {
    pub fn new() -> Client {
        Client::with_timeout(Duration::from_secs(30))
    }

    pub fn with_timeout(timeout: Duration) -> Client {
        Client {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(timeout)
                .build()
                .unwrap(),
        }
    }

    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Answer, String> {
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.body(b);
            }
            let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp.text().await.map_err(|e| format!("{e:?}"))?;
            let json = serde_json::from_str(&text).unwrap_or(Value::Null);
            Ok(Answer {
                status,
                headers,
                text,
                json,
            })
        })
    }
}

/// A simulator, its launcher app's object id and a token of it, and a client.
pub struct Env {
    pub sim: AzureSim,
    pub launcher: String,
    pub token: String,
    pub http: Client,
}

pub fn env() -> Env {
    env_with(AzureConfig::default())
}

pub fn env_with(cfg: AzureConfig) -> Env {
    let sim = AzureSim::start(cfg).unwrap();
    let launcher = sim.add_client(CLIENT_ID, SECRET);
    let token = sim.issue_token(&launcher);
    Env {
        sim,
        launcher,
        token,
        http: Client::new(),
    }
}

pub fn version(op: &str) -> String {
    Contract::bundled().api_version(op).to_string()
}

impl Env {
    pub fn sub(&self) -> String {
        format!("/subscriptions/{}", self.sim.subscription())
    }

    pub fn rg_path(&self, rg: &str) -> String {
        format!("{}/resourcegroups/{rg}", self.sub())
    }

    pub fn res_path(&self, rg: &str, rtype: &str, name: &str) -> String {
        format!(
            "{}/resourceGroups/{rg}/providers/{rtype}/{name}",
            self.sub()
        )
    }

    /// `method path?api-version=<op's pinned version>` with `token`.
    pub fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        op: &str,
        body: Option<Value>,
    ) -> Answer {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{}{path}{sep}api-version={}", self.sim.url(), version(op));
        let auth = format!("Bearer {token}");
        self.http
            .send(
                method,
                &url,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.map(|b| b.to_string()),
            )
            .unwrap()
    }

    pub fn call(&self, method: &str, path: &str, op: &str, body: Option<Value>) -> Answer {
        self.call_as(&self.token, method, path, op, body)
    }

    /// GET an absolute URL the simulator gave (an operation's) with `token`.
    pub fn get_url(&self, token: &str, url: &str) -> Answer {
        let auth = format!("Bearer {token}");
        self.http
            .send("GET", url, &[("authorization", &auth)], None)
            .unwrap()
    }

    /// Polls an `Azure-AsyncOperation` URL until it is no longer `InProgress` (bounded).
    pub fn wait_async(&self, url: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let a = self.get_url(&self.token, url);
            assert_eq!(a.status, 200, "{}", a.text);
            if a.json["status"] != "InProgress" || Instant::now() > deadline {
                return a.json;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Polls a `Location` URL until it answers other than 202 (bounded); its last status.
    pub fn wait_location(&self, token: &str, url: &str) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let a = self.get_url(token, url);
            if a.status != 202 || Instant::now() > deadline {
                return a.status;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    pub fn put_group(&self, rg: &str) -> Answer {
        self.call(
            "PUT",
            &self.rg_path(rg),
            "resourceGroups.createOrUpdate",
            Some(json!({"location": LOCATION, "tags": {"cml:id": "runner-1", "owner": "cml"}})),
        )
    }

    /// The network of one runner (VNet with subnet, NSG, public IP, NIC), each PUT waited on.
    pub fn put_network(&self, rg: &str) {
        let nsg = self.res_path(rg, "Microsoft.Network/networkSecurityGroups", "nsg");
        let a = self.call(
            "PUT",
            &nsg,
            "networkSecurityGroups.createOrUpdate",
            Some(json!({"location": LOCATION, "properties": {"securityRules": []}})),
        );
        assert_eq!(a.status, 201, "{}", a.text);
        self.wait_async(&a.header("azure-asyncoperation").unwrap());
        let nsg_id = a.json["id"].as_str().unwrap().to_string();
        let vnet = self.res_path(rg, "Microsoft.Network/virtualNetworks", "vnet");
        let a = self.call("PUT", &vnet, "virtualNetworks.createOrUpdate", Some(json!({"location": LOCATION, "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/24", "networkSecurityGroup": {"id": nsg_id}}}]}})));
        assert_eq!(a.status, 201, "{}", a.text);
        self.wait_async(&a.header("azure-asyncoperation").unwrap());
        let subnet_id = a.json["properties"]["subnets"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let pip = self.res_path(rg, "Microsoft.Network/publicIPAddresses", "ip");
        let a = self.call("PUT", &pip, "publicIPAddresses.createOrUpdate", Some(json!({"location": LOCATION, "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"}})));
        assert_eq!(a.status, 201, "{}", a.text);
        self.wait_async(&a.header("azure-asyncoperation").unwrap());
        let pip_id = a.json["id"].as_str().unwrap().to_string();
        let nic = self.res_path(rg, "Microsoft.Network/networkInterfaces", "nic");
        let a = self.call("PUT", &nic, "networkInterfaces.createOrUpdate", Some(json!({"location": LOCATION, "properties": {"networkSecurityGroup": {"id": nsg_id}, "ipConfigurations": [{"name": "ipconfig1", "properties": {"subnet": {"id": subnet_id}, "publicIPAddress": {"id": pip_id}}}]}})));
        assert_eq!(a.status, 201, "{}", a.text);
        self.wait_async(&a.header("azure-asyncoperation").unwrap());
    }

    pub fn nic_id(&self, rg: &str) -> String {
        self.res_path(rg, "Microsoft.Network/networkInterfaces", "nic")
    }
}

/// A runner VM body: spot or not, a zone, a system-assigned identity, cloud-init customData.
pub fn vm_body(nic_id: &str, spot: bool, zone: Option<&str>, custom_data: &str) -> Value {
    use base64::Engine;
    let mut b = json!({
        "location": LOCATION,
        "tags": {"cml:id": "runner-1"},
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_F2s_v2"},
            "storageProfile": {
                "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                "osDisk": {"createOption": "FromImage", "diskSizeGB": 40, "deleteOption": "Delete", "managedDisk": {"storageAccountType": "Premium_LRS"}},
            },
            "osProfile": {
                "computerName": "runner-1",
                "adminUsername": "ubuntu",
                "customData": base64::engine::general_purpose::STANDARD.encode(custom_data),
                "linuxConfiguration": {"disablePasswordAuthentication": true, "ssh": {"publicKeys": [{"path": "/home/ubuntu/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAA test"}]}},
            },
            "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": true, "deleteOption": "Delete"}}]},
            "diagnosticsProfile": {"bootDiagnostics": {"enabled": true}},
        },
    });
    if spot {
        b["properties"]["priority"] = json!("Spot");
        b["properties"]["evictionPolicy"] = json!("Delete");
        b["properties"]["billingProfile"] = json!({"maxPrice": -1});
    }
    if let Some(z) = zone {
        b["zones"] = json!([z]);
    }
    b
}
