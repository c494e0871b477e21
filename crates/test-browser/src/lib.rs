//! Headless Chromium for tests, in one place: Debian's `chromium` (or `KEYGUARD_TEST_CHROMIUM`),
//! started with the flags this machine needs (no sandbox as root, no background networking on a
//! closed network) and a fresh profile, bounded in time, its pipes drained so it cannot block.
//! Test-only: failures panic with the fix in the message.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(90);

/// The Chromium binary; panics with the install command when there is none.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("KEYGUARD_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "Chromium not found at {}: install Debian's package with `apt-get update && apt-get install -y chromium` \
         (or point KEYGUARD_TEST_CHROMIUM at a chromium binary); scripts/test.sh does",
        path.display()
    );
    path
}

/// Where screenshots and rendered pages are kept for people to look at after a run:
/// `$CARGO_TARGET_DIR/artifacts`, else the target dir the running test binary was built into
/// (`target/debug/deps/<test>` -> `target`).
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| std::env::temp_dir().join("keyguard-target"));
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Opens `page` headless with `extra` flags (`--screenshot=…`, `--dump-dom`, `--window-size=…`)
/// and returns what Chromium printed.
pub fn run(page: &Path, extra: &[String]) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let chromium = chromium();
    let profile = std::env::temp_dir().join(format!(
        "keyguard-chromium-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&profile).unwrap_or_else(|e| panic!("cannot create {}: {e}", profile.display()));
    let mut child = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--allow-file-access-from-files",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chromium {extra:?} did not finish within {TIMEOUT:?}; stderr: {}",
                    err.join().unwrap_or_default()
                );
            }
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(status.success(), "chromium {extra:?} failed ({status}); stderr:\n{err}");
    out
}

/// A screenshot of `page` at `window` (`1280,1600`) saved to `png`; returns its bytes after
/// checking that Chromium really wrote a PNG.
pub fn screenshot(page: &Path, png: &Path, window: &str) -> Vec<u8> {
    let _ = std::fs::remove_file(png);
    run(
        page,
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={window}"),
        ],
    );
    let bytes = std::fs::read(png).unwrap_or_else(|e| panic!("chromium wrote no screenshot at {}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        png.display()
    );
    bytes
}
