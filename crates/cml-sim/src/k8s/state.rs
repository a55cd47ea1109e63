//! The simulated cluster's objects and the controllers that move them (Job → Pod, scheduler,
//! kubelet, deadlines, TTL, garbage collector).

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use super::{K8sConfig, K8sFault, K8sRequest, SimNode};

/// Kind key of stored objects: `jobs`, `pods`, `secrets`, `leases`.
pub(crate) type Key = (&'static str, String, String);

pub(crate) struct Pending {
    pub since: Instant,
}

pub(crate) struct State {
    pub cfg: K8sConfig,
    pub objects: BTreeMap<Key, Value>,
    pub rv: u64,
    pub events: Vec<Value>,
    pub logs: BTreeMap<(String, String), String>,
    pub bad_images: Vec<String>,
    pub forbidden: Vec<(String, String, String)>,
    pub faults: Vec<(String, String, K8sFault)>,
    pub requests: Vec<K8sRequest>,
    pub pending: BTreeMap<(String, String), Pending>,
    pub job_started: BTreeMap<(String, String), Instant>,
    pub finished_at: BTreeMap<(String, String), Instant>,
    pub lost_nodes: Vec<String>,
}

pub(crate) fn ts() -> String {
    crate::util::rfc3339(SystemTime::now())
}

impl State {
    pub fn new(cfg: K8sConfig) -> State {
        State {
            cfg,
            objects: BTreeMap::new(),
            rv: 1000,
            events: Vec::new(),
            logs: BTreeMap::new(),
            bad_images: Vec::new(),
            forbidden: Vec::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            pending: BTreeMap::new(),
            job_started: BTreeMap::new(),
            finished_at: BTreeMap::new(),
            lost_nodes: Vec::new(),
        }
    }

    pub fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    /// Stamps server-set metadata on a new object and stores it.
    pub fn insert(&mut self, kind: &'static str, ns: &str, mut obj: Value) -> Value {
        let rv = self.next_rv();
        let m = &mut obj["metadata"];
        m["namespace"] = json!(ns);
        m["uid"] = json!(uuid());
        m["resourceVersion"] = json!(rv);
        m["creationTimestamp"] = json!(ts());
        let name = m["name"].as_str().unwrap_or_default().to_string();
        self.objects
            .insert((kind, ns.to_string(), name), obj.clone());
        obj
    }

    pub fn event(&mut self, ns: &str, kind: &str, name: &str, ty: &str, reason: &str, msg: &str) {
        let uid = self
            .objects
            .iter()
            .find(|((k, n, nm), _)| *n == ns && nm == name && kind_of(k) == kind)
            .map(|(_, o)| o["metadata"]["uid"].clone())
            .unwrap_or(Value::Null);
        let rv = self.next_rv();
        let now = ts();
        self.events.push(json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{name}.{}", crate::util::random_hex(16)), "namespace": ns,
                "uid": uuid(), "resourceVersion": rv, "creationTimestamp": now},
            "involvedObject": {"apiVersion": if kind == "Job" {"batch/v1"} else {"v1"}, "kind": kind,
                "name": name, "namespace": ns, "uid": uid},
            "reason": reason, "message": msg, "type": ty, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": if kind == "Job" {"job-controller"} else if reason == "FailedScheduling" || reason == "Scheduled" {"default-scheduler"} else {"kubelet"}},
            "reportingComponent": "", "reportingInstance": ""
        }));
    }

    /// A Job's one Pod, as the Job controller makes it.
    pub fn create_pod_for(&mut self, ns: &str, job: &Value) {
        let jname = job["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let tmpl = &job["spec"]["template"];
        let mut meta = tmpl["metadata"].clone();
        if !meta.is_object() {
            meta = json!({});
        }
        let pname = format!("{jname}-{}", &crate::util::random_hex(5)[..5]);
        meta["name"] = json!(pname);
        meta["generateName"] = json!(format!("{jname}-"));
        meta["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": jname,
            "uid": job["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);
        let mut spec = tmpl["spec"].clone();
        spec["schedulerName"] = json!("default-scheduler");
        if spec.get("terminationGracePeriodSeconds").is_none() {
            spec["terminationGracePeriodSeconds"] = json!(30);
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": {"phase": "Pending", "qosClass": "Burstable"}});
        self.insert("pods", ns, pod);
        self.pending.insert(
            (ns.to_string(), pname.clone()),
            Pending {
                since: Instant::now(),
            },
        );
        self.event(
            ns,
            "Job",
            &jname,
            "Normal",
            "SuccessfulCreate",
            &format!("Created pod: {pname}"),
        );
    }

    pub fn pod_mut(&mut self, ns: &str, name: &str) -> Option<&mut Value> {
        self.objects
            .get_mut(&("pods", ns.to_string(), name.to_string()))
    }

    /// Runs the controllers up to `now`.
    pub fn advance(&mut self, now: Instant) {
        // Scheduler and kubelet.
        let ready: Vec<(String, String)> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) >= self.cfg.schedule_delay)
            .map(|(k, _)| k.clone())
            .collect();
        for (ns, name) in ready {
            self.try_schedule(&ns, &name);
        }
        // Deadlines and TTL.
        let jobs: Vec<(String, String, Value)> = self
            .objects
            .iter()
            .filter(|((k, _, _), _)| *k == "jobs")
            .map(|((_, ns, n), v)| (ns.clone(), n.clone(), v.clone()))
            .collect();
        for (ns, name, job) in jobs {
            let key = (ns.clone(), name.clone());
            let finished = self.finished_at.get(&key).copied();
            if let Some(done) = finished {
                if let Some(ttl) = job["spec"]["ttlSecondsAfterFinished"].as_u64() {
                    if now.duration_since(done) >= self.cfg.second * ttl as u32 {
                        self.delete_job(&ns, &name, "Background");
                    }
                }
                continue;
            }
            if let (Some(d), Some(start)) = (
                job["spec"]["activeDeadlineSeconds"].as_u64(),
                self.job_started.get(&key).copied(),
            ) {
                if now.duration_since(start) >= self.cfg.second * d as u32 {
                    for p in self.pods_of(&ns, &job) {
                        if let Some(pod) = self.pod_mut(&ns, &p) {
                            if matches!(
                                pod["status"]["phase"].as_str(),
                                Some("Pending" | "Running")
                            ) {
                                pod["status"]["phase"] = json!("Failed");
                                pod["status"]["reason"] = json!("DeadlineExceeded");
                                pod["status"]["message"] = json!(
                                    "Pod was active on the node longer than the specified deadline"
                                );
                            }
                        }
                        self.pending.remove(&(ns.clone(), p));
                    }
                    self.finish_job(
                        &ns,
                        &name,
                        false,
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline",
                    );
                }
            }
        }
        self.collect_garbage();
    }

    pub fn pods_of(&self, ns: &str, job: &Value) -> Vec<String> {
        let uid = &job["metadata"]["uid"];
        self.objects
            .iter()
            .filter(|((k, n, _), v)| {
                *k == "pods"
                    && n == ns
                    && v["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|r| &r["uid"] == uid))
            })
            .map(|((_, _, n), _)| n.clone())
            .collect()
    }

    fn try_schedule(&mut self, ns: &str, name: &str) {
        let Some(pod) = self.objects.get(&("pods", ns.into(), name.into())).cloned() else {
            self.pending.remove(&(ns.into(), name.into()));
            return;
        };
        if pod["spec"]["nodeName"].is_string() {
            // Scheduled: the image pull.
            self.pending.remove(&(ns.into(), name.into()));
            let c = &pod["spec"]["containers"][0];
            let image = c["image"].as_str().unwrap_or_default().to_string();
            let cname = c["name"].as_str().unwrap_or_default().to_string();
            if self.bad_images.contains(&image) {
                let msg = format!("Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found");
                self.event(ns, "Pod", name, "Warning", "Failed", &msg);
                self.event(ns, "Pod", name, "Warning", "Failed", "Error: ErrImagePull");
                self.event(
                    ns,
                    "Pod",
                    name,
                    "Normal",
                    "BackOff",
                    &format!("Back-off pulling image \"{image}\""),
                );
                self.event(
                    ns,
                    "Pod",
                    name,
                    "Warning",
                    "Failed",
                    "Error: ImagePullBackOff",
                );
                if let Some(p) = self.pod_mut(ns, name) {
                    p["status"]["containerStatuses"] = json!([{"name": cname, "image": image, "imageID": "",
                        "ready": false, "restartCount": 0, "started": false,
                        "state": {"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image \"{image}\"")}},
                        "lastState": {}}]);
                }
                return;
            }
            self.event(
                ns,
                "Pod",
                name,
                "Normal",
                "Pulled",
                &format!("Container image \"{image}\" already present on machine"),
            );
            self.event(
                ns,
                "Pod",
                name,
                "Normal",
                "Created",
                &format!("Created container {cname}"),
            );
            self.event(
                ns,
                "Pod",
                name,
                "Normal",
                "Started",
                &format!("Started container {cname}"),
            );
            let now = ts();
            if let Some(p) = self.pod_mut(ns, name) {
                p["status"]["phase"] = json!("Running");
                p["status"]["startTime"] = json!(now);
                p["status"]["containerStatuses"] = json!([{"name": cname, "image": image,
                    "imageID": format!("docker.io/{image}@sha256:{}", "0".repeat(64)),
                    "containerID": format!("containerd://{}", crate::util::random_hex(64)),
                    "ready": true, "restartCount": 0, "started": true,
                    "state": {"running": {"startedAt": now}}, "lastState": {}}]);
            }
            return;
        }
        match self.fit(&pod) {
            Ok(node) => {
                if let Some(p) = self.pod_mut(ns, name) {
                    p["spec"]["nodeName"] = json!(node);
                    p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True",
                        "lastProbeTime": null, "lastTransitionTime": ts()}]);
                    p["status"]["hostIP"] = json!("10.0.0.10");
                    p["status"]["podIP"] = json!("10.244.0.10");
                }
                self.event(
                    ns,
                    "Pod",
                    name,
                    "Normal",
                    "Scheduled",
                    &format!("Successfully assigned {ns}/{name} to {node}"),
                );
                // The kubelet acts at the next step.
                self.pending.insert(
                    (ns.into(), name.into()),
                    Pending {
                        since: Instant::now(),
                    },
                );
            }
            Err(msg) => {
                let already = self.events.iter().any(|e| {
                    e["involvedObject"]["name"] == name && e["reason"] == "FailedScheduling"
                });
                if !already {
                    self.event(ns, "Pod", name, "Warning", "FailedScheduling", &msg);
                    if let Some(p) = self.pod_mut(ns, name) {
                        p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
                            "lastProbeTime": null, "lastTransitionTime": ts(),
                            "reason": "Unschedulable", "message": msg}]);
                    }
                }
            }
        }
    }

    /// The node the scheduler picks for `pod`, or the scheduler's message why none fits.
    fn fit(&self, pod: &Value) -> Result<String, String> {
        let want = requests(pod);
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let nodes: Vec<&SimNode> = self
            .cfg
            .nodes
            .iter()
            .filter(|n| !self.lost_nodes.contains(&n.name))
            .collect();
        for n in &nodes {
            let selector_ok = pod["spec"]["nodeSelector"]
                .as_object()
                .into_iter()
                .flatten()
                .all(|(k, v)| n.labels.get(k).map(String::as_str) == v.as_str())
                && affinity_matches(pod, &n.labels);
            if !selector_ok {
                *reasons
                    .entry("node(s) didn't match Pod's node affinity/selector".into())
                    .or_default() += 1;
                continue;
            }
            let tolerations = pod["spec"]["tolerations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if let Some(t) = n.taints.iter().find(|t| {
                t.2 != "PreferNoSchedule" && !tolerations.iter().any(|tol| tolerates(tol, t))
            }) {
                *reasons
                    .entry(format!(
                        "node(s) had untolerated taint {{{}: {}}}",
                        t.0, t.1
                    ))
                    .or_default() += 1;
                continue;
            }
            let used = self.used_on(&n.name);
            let mut short = false;
            for (res, cap) in [
                ("cpu", n.cpu),
                ("memory", n.memory),
                ("nvidia.com/gpu", n.gpu),
            ] {
                let w = want.get(res).copied().unwrap_or(0.0);
                if w > 0.0 && used.get(res).copied().unwrap_or(0.0) + w > cap {
                    *reasons.entry(format!("Insufficient {res}")).or_default() += 1;
                    short = true;
                }
            }
            if !short {
                return Ok(n.name.clone());
            }
        }
        let mut parts: Vec<String> = reasons.iter().map(|(r, c)| format!("{c} {r}")).collect();
        parts.sort();
        Err(format!(
            "0/{} nodes are available: {}. preemption: 0/{} nodes are available: {} Preemption is not helpful for scheduling.",
            nodes.len(),
            parts.join(", "),
            nodes.len(),
            nodes.len()
        ))
    }

    fn used_on(&self, node: &str) -> BTreeMap<String, f64> {
        let mut used = BTreeMap::new();
        for ((k, _, _), p) in &self.objects {
            if *k == "pods"
                && p["spec"]["nodeName"] == node
                && matches!(p["status"]["phase"].as_str(), Some("Pending" | "Running"))
            {
                for (r, q) in requests(p) {
                    *used.entry(r).or_insert(0.0) += q;
                }
            }
        }
        used
    }

    /// The container exited with `code` (the kubelet's report).
    pub fn finish_pod(&mut self, ns: &str, name: &str, code: i32) -> bool {
        let now = ts();
        let Some(p) = self.pod_mut(ns, name) else {
            return false;
        };
        if p["status"]["phase"] != "Running" {
            return false;
        }
        let phase = if code == 0 { "Succeeded" } else { "Failed" };
        p["status"]["phase"] = json!(phase);
        let started = p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"].clone();
        p["status"]["containerStatuses"][0]["ready"] = json!(false);
        p["status"]["containerStatuses"][0]["started"] = json!(false);
        p["status"]["containerStatuses"][0]["state"] = json!({"terminated": {"exitCode": code,
            "reason": if code == 0 {"Completed"} else {"Error"}, "startedAt": started, "finishedAt": now,
            "containerID": p["status"]["containerStatuses"][0]["containerID"].clone()}});
        let job = owner_name(p);
        if let Some(j) = job {
            if code == 0 {
                self.finish_job(ns, &j, true, "Completed", "Job completed");
            } else {
                self.finish_job(
                    ns,
                    &j,
                    false,
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                );
            }
        }
        true
    }

    /// A node lost under its pods: they fail as the node lifecycle controller fails them.
    pub fn lose_node(&mut self, node: &str) -> Vec<(String, String)> {
        self.lost_nodes.push(node.to_string());
        let victims: Vec<(String, String)> = self
            .objects
            .iter()
            .filter(|((k, _, _), p)| {
                *k == "pods"
                    && p["spec"]["nodeName"] == node
                    && matches!(p["status"]["phase"].as_str(), Some("Pending" | "Running"))
            })
            .map(|((_, ns, n), _)| (ns.clone(), n.clone()))
            .collect();
        for (ns, name) in &victims {
            let now = ts();
            let mut job = None;
            if let Some(p) = self.pod_mut(ns, name) {
                p["status"]["phase"] = json!("Failed");
                p["status"]["reason"] = json!("NodeLost");
                p["status"]["message"] = json!(format!(
                    "Node {node} which was running pod {name} is unresponsive"
                ));
                let mut conds = p["status"]["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                conds.push(
                    json!({"type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
                    "lastTransitionTime": now, "reason": "DeletionByPodGC",
                    "message": "PodGC: node no longer exists"}),
                );
                p["status"]["conditions"] = json!(conds);
                p["status"]["containerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 137,
                    "reason": "ContainerStatusUnknown", "message": "The container could not be located when the pod was terminated",
                    "finishedAt": now}});
                job = owner_name(p);
            }
            self.pending.remove(&(ns.clone(), name.clone()));
            self.event(
                ns,
                "Pod",
                name,
                "Normal",
                "NodeNotReady",
                &format!("Node {node} is not ready"),
            );
            if let Some(j) = job {
                self.finish_job(
                    ns,
                    &j,
                    false,
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                );
            }
        }
        victims
    }

    pub fn finish_job(&mut self, ns: &str, name: &str, ok: bool, reason: &str, msg: &str) {
        let key = (ns.to_string(), name.to_string());
        if self.finished_at.contains_key(&key) {
            return;
        }
        let now = ts();
        let Some(j) = self.objects.get_mut(&("jobs", ns.into(), name.into())) else {
            return;
        };
        let cond = |t: &str| {
            json!({"type": t, "status": "True", "lastProbeTime": now,
            "lastTransitionTime": now, "reason": reason, "message": msg})
        };
        let st = &mut j["status"];
        st["active"] = json!(0);
        st["ready"] = json!(0);
        if ok {
            st["succeeded"] = json!(1);
            st["completionTime"] = json!(now);
            st["conditions"] = json!([cond("SuccessCriteriaMet"), cond("Complete")]);
        } else {
            st["failed"] = json!(1);
            st["conditions"] = json!([cond("FailureTarget"), cond("Failed")]);
        }
        self.finished_at.insert(key, Instant::now());
        let (ty, r) = if ok {
            ("Normal", "Completed")
        } else {
            ("Warning", reason)
        };
        self.event(ns, "Job", name, ty, r, msg);
    }

    /// Deletes a Job; `Orphan` (the batch/v1 default over the REST API) strips the Job from its
    /// dependents' ownerReferences, `Background`/`Foreground` leave them to the collector.
    pub fn delete_job(&mut self, ns: &str, name: &str, policy: &str) -> Option<Value> {
        let job = self.objects.remove(&("jobs", ns.into(), name.into()))?;
        let key = (ns.to_string(), name.to_string());
        self.finished_at.remove(&key);
        self.job_started.remove(&key);
        if policy == "Orphan" {
            let uid = job["metadata"]["uid"].clone();
            for ((_, n, _), o) in self.objects.iter_mut() {
                if n != ns {
                    continue;
                }
                if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"] != uid);
                }
            }
        }
        self.collect_garbage();
        Some(job)
    }

    /// Deletes every object whose owner references all point at objects that are gone.
    pub fn collect_garbage(&mut self) {
        loop {
            let uids: Vec<Value> = self
                .objects
                .values()
                .map(|o| o["metadata"]["uid"].clone())
                .collect();
            let dead: Vec<Key> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|r| {
                            !r.is_empty() && r.iter().all(|r| !uids.contains(&r["uid"]))
                        })
                })
                .map(|(k, _)| k.clone())
                .collect();
            if dead.is_empty() {
                return;
            }
            for k in dead {
                self.pending.remove(&(k.1.clone(), k.2.clone()));
                self.objects.remove(&k);
            }
        }
    }
}

fn owner_name(p: &Value) -> Option<String> {
    p["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == "Job")?["name"]
        .as_str()
        .map(String::from)
}

pub(crate) fn kind_of(resource: &str) -> &'static str {
    match resource {
        "jobs" => "Job",
        "pods" => "Pod",
        "secrets" => "Secret",
        "leases" => "Lease",
        _ => "Event",
    }
}

fn tolerates(tol: &Value, taint: &(String, String, String)) -> bool {
    let key_ok = match tol["key"].as_str() {
        None | Some("") => tol["operator"] == "Exists",
        Some(k) => k == taint.0,
    };
    let value_ok = tol["operator"] == "Exists" || tol["value"].as_str().unwrap_or("") == taint.1;
    let effect_ok = match tol["effect"].as_str() {
        None | Some("") => true,
        Some(e) => e == taint.2,
    };
    key_ok && value_ok && effect_ok
}

/// Whether the node's labels satisfy the pod's required node affinity: any one of its
/// `nodeSelectorTerms`, each a conjunction of `matchExpressions` (`In`, `NotIn`, `Exists`,
/// `DoesNotExist`). No required affinity matches every node.
fn affinity_matches(pod: &Value, labels: &BTreeMap<String, String>) -> bool {
    let terms = &pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    let Some(terms) = terms.as_array() else {
        return true;
    };
    terms.iter().any(|term| {
        term["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| {
                let key = e["key"].as_str().unwrap_or("");
                let values: Vec<&str> = e["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let have = labels.get(key).map(String::as_str);
                match e["operator"].as_str() {
                    Some("In") => have.is_some_and(|v| values.contains(&v)),
                    Some("NotIn") => have.is_none_or(|v| !values.contains(&v)),
                    Some("Exists") => have.is_some(),
                    Some("DoesNotExist") => have.is_none(),
                    _ => false,
                }
            })
    })
}

/// A pod's requests (limits where no request is given), in cores, bytes and devices.
fn requests(pod: &Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let r = &c["resources"];
        for res in ["cpu", "memory", "nvidia.com/gpu"] {
            let q = r["requests"].get(res).or_else(|| r["limits"].get(res));
            if let Some(q) = q.and_then(parse_quantity) {
                *out.entry(res.to_string()).or_insert(0.0) += q;
            }
        }
    }
    out
}

/// A Kubernetes quantity (`500m`, `2`, `1Gi`, `1G`, `1e3`) in base units; None when malformed.
pub fn parse_quantity(v: &Value) -> Option<f64> {
    if let Some(n) = v.as_f64() {
        return Some(n);
    }
    let s = v.as_str()?;
    let suffixes: &[(&str, f64)] = &[
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suf, mul) in suffixes {
        if let Some(num) = s.strip_suffix(suf) {
            return plain_number(num).map(|n| n * mul);
        }
    }
    plain_number(s)
}

fn plain_number(s: &str) -> Option<f64> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E'))
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '+' || c == '-' || c == '.');
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

pub(crate) fn uuid() -> String {
    let h = crate::util::random_hex(32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}
