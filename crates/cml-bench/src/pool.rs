//! `cml runner pool` on this machine against the GitHub simulator: how long a queued job waits
//! for a runner of the pool, for a burst of 10 jobs (each runner launched for its job, single
//! use) and for a job that a warm idle runner takes (`--min-idle=1`); and the pool's own
//! resident memory and CPU while it idles with a warm runner. Both ways a GitHub pool learns of
//! its jobs are measured: the runner scale-set protocol (the listener long-polls the simulated
//! Actions service) and the queue (polled every 2 s, the default round).

use cml_sim::{JobState, SimConfig, SimServer, DEFAULT_PAT};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BURST: usize = 10;

fn start_pool(
    cml: &Path,
    sim: &SimServer,
    tmp: &Path,
    protocol: &str,
    name: &str,
    extra: &[&str],
) -> Child {
    Command::new(cml)
        .args(["runner", "pool", "--driver=github", "--labels=bench"])
        .arg(format!("--repo={}/octo/bench", sim.url()))
        .arg(format!("--name={name}"))
        .arg(format!("--workdir={}", tmp.join(name).display()))
        .args(extra)
        .env("HOME", tmp)
        .env("REPO_TOKEN", DEFAULT_PAT)
        .env("CML_POOL_GITHUB_PROTOCOL", protocol)
        .env(
            "CML_GITHUB_RUNNER_RELEASES_URL",
            format!("{}/repos/actions/runner/releases", sim.url()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cml starts")
}

/// Waits until `f` holds, at most `limit`; false if it never did.
fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on our own child's pid, not yet reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// User + system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command's closing parenthesis, utime and stime are the 12th and 13th fields.
    let n = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    n(11) + n(12)
}

pub fn run(cml: &Path, sim_exe: &Path) {
    for protocol in ["scale-set", "queue"] {
        run_with(cml, sim_exe, protocol);
    }
}

fn run_with(cml: &Path, sim_exe: &Path, protocol: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimServer::start(SimConfig::new(sim_exe)).expect("simulator starts");

    // A burst of 10 queued jobs, no warm runner.
    let pool = start_pool(
        cml,
        &sim,
        tmp.path(),
        protocol,
        "bench-burst",
        &["--max=10", "--idle-timeout=never"],
    );
    let t0 = Instant::now();
    let jobs: Vec<String> = (0..BURST)
        .map(|i| sim.github_queue_job("octo/bench", &format!("burst-{i}"), &["bench"], "true"))
        .collect();
    let mut started: Vec<Option<Duration>> = vec![None; BURST];
    let done = wait(Duration::from_secs(180), || {
        for (i, id) in jobs.iter().enumerate() {
            if started[i].is_none()
                && sim
                    .github_job(id)
                    .is_some_and(|j| !matches!(j.state, JobState::Queued))
            {
                started[i] = Some(t0.elapsed());
            }
        }
        started.iter().all(Option::is_some)
    });
    stop(pool);
    if !done {
        println!("pool ({protocol}): the burst of {BURST} did not start within 180 s");
        return;
    }
    let mut waits: Vec<Duration> = started.into_iter().flatten().collect();
    waits.sort();
    println!(
        "pool ({protocol}) on this machine, burst of {BURST} queued jobs (a single-use runner each, --max=10): queued -> job started median {:.0} ms, max {:.0} ms",
        crate::ms(waits[BURST / 2]),
        crate::ms(waits[BURST - 1])
    );

    // A warm floor of one: the job goes to the idle runner.
    let pool = start_pool(
        cml,
        &sim,
        tmp.path(),
        protocol,
        "bench-warm",
        &["--max=3", "--min-idle=1", "--idle-timeout=never"],
    );
    let pid = pool.id();
    let warm = wait(Duration::from_secs(60), || {
        sim.runners()
            .iter()
            .any(|r| r.name.starts_with("bench-warm-") && r.status == "online")
    });
    if !warm {
        println!("pool ({protocol}): no warm runner came online within 60 s");
        stop(pool);
        return;
    }
    // The pool idles with its warm runner: memory and CPU over 10 s.
    let ticks0 = cpu_ticks(pid);
    let idle_for = Duration::from_secs(10);
    std::thread::sleep(idle_for);
    let ticks = cpu_ticks(pid) - ticks0;
    // SAFETY: sysconf(3) reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let (rss, _) = crate::proc_rss(pid);
    let t0 = Instant::now();
    let id = sim.github_queue_job("octo/bench", "warm", &["bench"], "true");
    let took = wait(Duration::from_secs(60), || {
        sim.github_job(&id)
            .is_some_and(|j| !matches!(j.state, JobState::Queued))
    })
    .then(|| t0.elapsed());
    stop(pool);
    match took {
        Some(d) => println!(
            "pool ({protocol}) on this machine, warm floor of 1: queued -> job started {:.0} ms",
            crate::ms(d)
        ),
        None => println!("pool ({protocol}): the warm runner did not take the job within 60 s"),
    }
    println!(
        "pool ({protocol}) idle with one warm runner: RSS {:.1} MiB, CPU {:.2}% over {} s",
        rss as f64 / 1024.0,
        ticks as f64 / hz / idle_for.as_secs_f64() * 100.0,
        idle_for.as_secs()
    );
}
