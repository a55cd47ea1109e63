//! HTTP calls from the agent to the simulator's `/_sim/agent/…` routes.

use std::time::Duration;

use serde_json::Value;

/// Outcome of a call that reached the server.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// Client bound to one server root (`http://127.0.0.1:PORT`).
pub struct Client {
    http: reqwest::Client,
    pub server: String,
}

impl Client {
    pub fn new(server: &str) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Client {
            http,
            server: server.trim_end_matches('/').to_string(),
        })
    }

    /// `POST {server}/_sim/agent/{action}` with a JSON body; `Err` when the server is unreachable.
    pub async fn call(&self, action: &str, body: &Value) -> Result<Answer, String> {
        let url = format!("{}/_sim/agent/{action}", self.server);
        let resp = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}
