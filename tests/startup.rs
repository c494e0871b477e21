//! Cold start (issue 14, item 4): `keyguard serve` listens before anything slow is ready, so the
//! Functions host, which waits for the port, is never held up by the store, the token or ARM.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use azure_sim::azurite::{DEV_ACCOUNT, DEV_KEY};
use keyguard_e2e::keyguard_bin;

#[test]
fn serve_listens_while_its_store_has_not_answered_yet() {
    // A Table Storage endpoint that accepts connections and never answers: opening the store
    // (which creates keyguard's tables) cannot finish while the test runs.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let store = format!(
        "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};TableEndpoint=http://{}/{DEV_ACCOUNT};",
        silent.local_addr().unwrap()
    );
    // The Functions host names the port the handler must bind, so one has to be picked first.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(keyguard_bin())
        .args(["--log-format", "json", "serve"])
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("KEYGUARD_STATE_STORE", "table")
        .env("KEYGUARD_STORAGE", store)
        .env("KEYGUARD_AUTH", "managed-identity")
        .env(
            "IDENTITY_ENDPOINT",
            format!("http://{}/msi/token", silent.local_addr().unwrap()),
        )
        .env("IDENTITY_HEADER", "unused")
        .env("RUST_LOG", "info")
        .env_remove("FUNCTIONS_WORKER_RUNTIME")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (said, listening) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("custom handler listening") {
                let _ = said.send(());
            }
        }
    });
    let listened = listening.recv_timeout(Duration::from_secs(20)).is_ok();
    let connected = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok();
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(listened, "no 'listening' line while the store was opening");
    assert!(connected, "the port refused connections while the store was opening");
    assert!(still_running, "keyguard serve exited instead of waiting for its store");
}
