//! The `azure-sim` binary: addr file, listening line, demo seed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

#[tokio::test]
async fn binary_writes_addr_file_and_serves() {
    let addr_file = std::env::temp_dir().join(format!("azure-sim-addr-{}", uuid::Uuid::new_v4()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_azure-sim"))
        .args(["--port", "0", "--demo-seed", "--addr-file"])
        .arg(&addr_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let found = wait_until(Duration::from_secs(20), || addr_file.exists()).await;
    let result = async {
        assert!(found, "addr file not written");
        let addr = std::fs::read_to_string(&addr_file).unwrap();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        let line = line.await.unwrap().unwrap();
        assert_eq!(line.trim(), format!("azure-sim listening on http://{addr}"));
        let c = client();
        let health: Value = c
            .get(format!("http://{addr}/_sim/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["status"], "ok");
        let all: Vec<Value> = c
            .get(format!("http://{addr}/_sim/resources"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(all.len(), azure_sim::demo_seed("s", "r").len());
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&addr_file);
    result
}
