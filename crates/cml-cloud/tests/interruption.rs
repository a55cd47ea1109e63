//! GCP and Azure interruption notices, read from stand-in metadata servers that check the
//! headers the real ones require.

use cml_cloud::interruption::{AzureWatch, GcpWatch, Notice, Watch, Watcher};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A metadata server answering `body()` (at the time of each request) to requests carrying
/// `header`, 400 to the others.
fn server(header: &'static str, body: Arc<Mutex<String>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20).flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut ok = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                ok |= line
                    .to_ascii_lowercase()
                    .starts_with(&header.to_ascii_lowercase());
            }
            let (status, text) = if ok {
                ("200 OK", body.lock().unwrap().clone())
            } else {
                ("400 Bad Request", String::new())
            };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    url
}

#[tokio::test]
async fn gcp_preemption_is_a_notice() {
    let body = Arc::new(Mutex::new("FALSE".to_string()));
    let url = server("metadata-flavor: google", body.clone());
    let mut w = GcpWatch::new(&url);
    assert_eq!(w.poll().await.unwrap(), None);
    *body.lock().unwrap() = "TRUE".into();
    assert!(matches!(
        w.poll().await.unwrap(),
        Some(Notice::Interruption(_))
    ));
}

#[tokio::test]
async fn azure_preempt_events_are_notices_and_others_are_not() {
    let body = Arc::new(Mutex::new(
        r#"{"DocumentIncarnation":1,"Events":[{"EventId":"e1","EventType":"Reboot","NotBefore":"x"}]}"#
            .to_string(),
    ));
    let url = server("metadata: true", body.clone());
    let mut w = AzureWatch::new(&url);
    assert_eq!(w.poll().await.unwrap(), None);
    *body.lock().unwrap() = r#"{"DocumentIncarnation":2,"Events":[{"EventId":"e2","EventType":"Preempt","NotBefore":"Mon, 30 Nov 2026 10:00:00 GMT"}]}"#.into();
    match w.poll().await.unwrap() {
        Some(Notice::Interruption(d)) => assert!(d.contains("e2"), "{d}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_metadata_service_is_an_error_not_a_notice() {
    let mut w = GcpWatch::new("http://127.0.0.1:9");
    let e = w.poll().await.unwrap_err().to_string();
    assert!(e.contains("instance/preempted"), "{e}");
}

/// A GCP metadata server that answers 500 to its first `failures` requests and `TRUE` (a
/// preemption notice) afterwards; the times of the requests are recorded.
fn flaky_gcp_server(failures: usize) -> (String, Arc<Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50).flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let n = {
                let mut log = log.lock().unwrap();
                log.push(Instant::now());
                log.len()
            };
            let (status, text) = if n <= failures {
                ("500 Internal Server Error", "")
            } else {
                ("200 OK", "TRUE")
            };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_flaky_metadata_service_is_retried_with_backoff_until_the_notice_comes() {
    let (url, seen) = flaky_gcp_server(4);
    let first = Duration::from_millis(40);
    let max = Duration::from_millis(160);
    let mut w = Watcher::with_backoff(Watch::Gcp(GcpWatch::new(&url)), first, max);
    let started = Instant::now();
    let mut notice = None;
    let mut checks = 0;
    while notice.is_none() && started.elapsed() < Duration::from_secs(10) {
        notice = w.check().await;
        checks += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        matches!(notice, Some(Notice::Interruption(_))),
        "no notice after {checks} checks: {notice:?}"
    );
    assert_eq!(w.failures(), 0, "a good answer ends the streak");
    // Four failures, then the notice: five requests, however often it was checked meanwhile.
    let times = seen.lock().unwrap().clone();
    assert_eq!(times.len(), 5, "{checks} checks");
    assert!(checks > 5, "checks during pauses ask nothing");
    // The pauses double (40, 80, 160 ms) and stop growing at the maximum (160 ms).
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, least) in gaps.iter().zip([40u64, 80, 160, 160]) {
        assert!(
            *gap >= Duration::from_millis(least),
            "{gaps:?}: a pause shorter than {least} ms"
        );
    }
    assert!(
        gaps[3] < Duration::from_millis(160 * 2 + 150),
        "the pause stays at the maximum: {gaps:?}"
    );
}

#[tokio::test]
async fn an_unreachable_metadata_service_is_watched_on_never_giving_up() {
    let mut w = Watcher::with_backoff(
        Watch::Gcp(GcpWatch::new("http://127.0.0.1:9")),
        Duration::from_millis(1),
        Duration::from_millis(4),
    );
    for _ in 0..30 {
        assert_eq!(w.check().await, None);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(w.failures() >= 10, "{} failed looks", w.failures());
}
