//! A network namespace for a sandboxed cloud machine.
//!
//! Inside it: its own loopback, the instance metadata service's real address
//! (169.254.169.254, and fd00:ec2::254 when IPv6 is available) with a listener on port 80,
//! and forwarders that make services on the host's 127.0.0.1 (the forge simulator, moto)
//! reachable at the same addresses. A firewall rule the machine's startup script installs
//! there (nft) applies to the machine's processes only, never to the host or other tests.
//!
//! How: a helper thread `unshare`s its network namespace (a thread can hold its own), sets
//! the addresses up and binds the listeners there; a socket stays in the namespace it was
//! created in, whichever thread uses it later. Processes join the namespace with `setns`
//! before `exec` ([`MachineNet::enter`]). Forwarding connections are opened by threads of the
//! host's namespace, so they reach the host's services.

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub const METADATA_V4: &str = "169.254.169.254";

pub struct MachineNet {
    ns: std::fs::File,
    stop: Arc<AtomicBool>,
    forwarders: Vec<JoinHandle<()>>,
}

impl MachineNet {
    /// A namespace where the host's `127.0.0.1:PORT` answers for each of `ports`; also
    /// returns a listener on 169.254.169.254:80 inside it.
    pub fn new(ports: &[u16]) -> (MachineNet, TcpListener) {
        let ports = ports.to_vec();
        let made = std::thread::spawn(move || -> std::io::Result<_> {
            // SAFETY: unshare(2) with CLONE_NEWNET changes this helper thread's network
            // namespace only; no memory is involved.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Processes started from this thread start in its namespace.
            ip(&["link", "set", "lo", "up"])?;
            ip(&["addr", "add", &format!("{METADATA_V4}/32"), "dev", "lo"])?;
            let _ = ip(&["-6", "addr", "add", "fd00:ec2::254/128", "dev", "lo"]);
            let ns = std::fs::File::open("/proc/thread-self/ns/net")?;
            let metadata = TcpListener::bind((METADATA_V4, 80))?;
            let mut listeners = Vec::new();
            for port in ports {
                listeners.push((port, TcpListener::bind(("127.0.0.1", port))?));
            }
            Ok((ns, metadata, listeners))
        })
        .join()
        .expect("the namespace thread does not panic")
        .unwrap_or_else(|e| panic!("cannot make a network namespace for the machine: {e}"));
        let (ns, metadata, listeners) = made;
        let stop = Arc::new(AtomicBool::new(false));
        let forwarders = listeners
            .into_iter()
            .map(|(port, listener)| {
                let stop = stop.clone();
                std::thread::spawn(move || forward(listener, port, &stop))
            })
            .collect();
        (
            MachineNet {
                ns,
                stop,
                forwarders,
            },
            metadata,
        )
    }

    /// Makes `cmd` start inside the namespace.
    pub fn enter(&self, cmd: &mut std::process::Command) {
        let fd = self.ns.as_raw_fd();
        // SAFETY: runs in the forked child before exec; setns(2) is async-signal-safe and
        // only reads the descriptor, which this `MachineNet` keeps open while it exists.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for MachineNet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for f in self.forwarders.drain(..) {
            let _ = f.join();
        }
    }
}

fn ip(args: &[&str]) -> std::io::Result<()> {
    let status = std::process::Command::new("ip")
        .args(args)
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("ip {args:?}: {status}")))
    }
}

/// Accepts connections on `listener` (in the namespace) and relays each to the host's
/// `127.0.0.1:port`, until `stop`.
fn forward(listener: TcpListener, port: u16, stop: &AtomicBool) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((inside, _)) => {
                let _ = inside.set_nonblocking(false);
                if let Ok(outside) = TcpStream::connect(("127.0.0.1", port)) {
                    relay(inside, outside);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Copies both ways between `a` and `b` until each side has finished sending.
fn relay(a: TcpStream, b: TcpStream) {
    let pipe = |mut from: TcpStream, to: TcpStream| {
        std::thread::spawn(move || {
            let mut to = to;
            let mut buf = [0u8; 16384];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    };
    if let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) {
        pipe(a, b2);
        pipe(b, a2);
    }
}
