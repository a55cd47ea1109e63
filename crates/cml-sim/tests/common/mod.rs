//! Helpers shared by the integration tests: a blocking HTTP client, agent processes whose
//! output is collected line by line, and bounded waits.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const EXE: &str = env!("CARGO_BIN_EXE_cml-sim");

/// A blocking wrapper around an async reqwest client.
pub struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

/// Status, headers and JSON body (`Null` when empty or not JSON) of an answer.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

impl Http {
    pub fn new() -> Http {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        Http { rt, client }
    }

    pub fn call(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let auth = token.map(|t| format!("Bearer {t}"));
        self.call_auth(method, url, auth.as_deref(), body)
    }

    /// A call with `authorization` as the whole `Authorization` header value.
    pub fn call_auth(
        &self,
        method: &str,
        url: &str,
        authorization: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        self.rt.block_on(async {
            let mut req = self.client.request(method.parse().unwrap(), url);
            if let Some(a) = authorization {
                req = req.header("authorization", a);
            }
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.unwrap().to_vec();
            let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Answer {
                status,
                headers,
                json,
                bytes,
            }
        })
    }
}

/// Wait until `f` is true, polling every 50 ms for at most `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    for _ in 0..10_000 {
        if f() {
            return;
        }
        if start.elapsed() > timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A running agent process with its stdout/stderr lines collected.
pub struct Agent {
    pub child: Child,
    rx: Receiver<(bool, String)>,
    /// (stderr?, line) seen so far.
    pub lines: Vec<(bool, String)>,
}

impl Agent {
    /// Start `script` (run.sh) in `dir` with extra args and env.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Agent {
        let mut cmd = Command::new(dir.join("run.sh"));
        cmd.args(args).current_dir("/");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Agent::spawn(cmd)
    }

    /// Start `cmd` with its stdout and stderr collected.
    pub fn spawn(mut cmd: Command) -> Agent {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the agent");
        let (tx, rx) = channel();
        let so = child.stdout.take().unwrap();
        let se = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(so).lines().map_while(Result::ok) {
                let _ = tx.send((false, l));
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(se).lines().map_while(Result::ok) {
                let _ = tx2.send((true, l));
            }
        });
        Agent {
            child,
            rx,
            lines: Vec::new(),
        }
    }

    /// Wait for a line containing `needle`; returns it.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some((_, l)) = self.lines.iter().find(|(_, l)| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok((e, l)) => {
                    self.lines.push((e, l.clone()));
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line containing {needle:?} within {timeout:?}; got: {:#?}",
            self.lines
        );
    }

    /// Collect remaining output and the exit code (bounded).
    pub fn finish(&mut self, timeout: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.rx.recv_timeout(Duration::from_millis(200)) {
                    self.lines.push(l);
                }
                return st.code().unwrap_or(-1);
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "agent did not exit within {timeout:?}; output: {:#?}",
                    self.lines
                );
            }
            while let Ok(l) = self.rx.try_recv() {
                self.lines.push(l);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn has(&self, needle: &str) -> bool {
        self.lines.iter().any(|(_, l)| l.contains(needle))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `config.sh` in `dir` with `args`, the token in `ACTIONS_RUNNER_INPUT_TOKEN`.
pub fn configure(dir: &Path, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(dir.join("config.sh"))
        .args(args)
        .env("ACTIONS_RUNNER_INPUT_TOKEN", token)
        .current_dir("/")
        .output()
        .expect("config.sh")
}

/// An RSA key pair (private PEM, public PEM) made with the `openssl` CLI.
pub fn rsa_keys(dir: &std::path::Path) -> (String, String) {
    let key = dir.join("app.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .status()
        .expect("openssl");
    assert!(ok.success());
    let pubk = dir.join("app.pub.pem");
    assert!(std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&pubk)
        .status()
        .unwrap()
        .success());
    (
        std::fs::read_to_string(key).unwrap(),
        std::fs::read_to_string(pubk).unwrap(),
    )
}

/// An RS256 GitHub App JWT with `iss` and `exp = now + exp_in`.
pub fn jwt(private_pem: &str, iss: Value, exp_in: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({"iat": now - 60, "exp": now + exp_in, "iss": iss});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap()
}
