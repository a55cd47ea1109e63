//! GCP and Azure interruption notices, read from stand-in metadata servers that check the
//! headers the real ones require.

use cml_cloud::interruption::{AzureWatch, GcpWatch, Notice};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

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
