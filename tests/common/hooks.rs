//! A webhook receiver for tests: an HTTP/1.1 server on loopback that records what it gets.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the receiver got, and the status it answered.
#[derive(Clone, Debug)]
pub struct Received {
    pub event: String,
    pub signature: String,
    pub body: Vec<u8>,
    pub answered: u16,
}

/// An HTTP/1.1 receiver on 127.0.0.1: answers 500 to its first request, 200 to the others.
pub fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut headers = BTreeMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(line.starts_with("POST /hook "), "{line}");
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
            }
            let len: usize = headers["content-length"].parse().unwrap();
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let mut all = seen.lock().unwrap();
            let answered = if all.is_empty() { 500 } else { 200 };
            all.push(Received {
                event: headers["x-datarun-event"].clone(),
                signature: headers["x-datarun-signature"].clone(),
                body,
                answered,
            });
            drop(all);
            let reason = if answered == 200 {
                "OK"
            } else {
                "Internal Server Error"
            };
            let answer = format!("HTTP/1.1 {answered} {reason}\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope");
            let mut conn = conn;
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    (url, got)
}
