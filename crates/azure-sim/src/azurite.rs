//! Azurite, Microsoft's Azure Storage emulator, for tests of the Table Storage state store: the
//! real service stand-in rather than a fake of our own. Installed from npm into
//! `tools/azurite` (`npm ci --prefix tools/azurite`); `KEYGUARD_TEST_AZURITE` points tests at one
//! already running (e.g. started by CI) instead.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's documented development account and key.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    /// The table endpoint, path-style: `http://127.0.0.1:PORT/devstoreaccount1`.
    pub table_endpoint: String,
    child: Option<Child>,
}

impl Azurite {
    /// A connection string for the emulator's development account.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};TableEndpoint={};",
            self.table_endpoint
        )
    }

    /// Where `npm ci --prefix tools/azurite` puts the table service's launcher: found from the
    /// working directory upwards (cargo runs tests in their package's folder), so a build shared
    /// between checkouts never points at another checkout's copy.
    pub fn binary() -> PathBuf {
        const LAUNCHER: &str = "tools/azurite/node_modules/.bin/azurite-table";
        std::env::current_dir()
            .ok()
            .and_then(|dir| dir.ancestors().map(|d| d.join(LAUNCHER)).find(|p| p.exists()))
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(LAUNCHER))
    }

    /// The instance named by `KEYGUARD_TEST_AZURITE` (a table endpoint URL), or a new one on a free
    /// loopback port, in memory, stopped on drop. It also stops if this process dies without
    /// dropping it (a watchdog shell waits on our pid), so no emulator outlives a killed test run.
    pub fn start() -> Result<Self, String> {
        if let Ok(endpoint) = std::env::var("KEYGUARD_TEST_AZURITE")
            && !endpoint.is_empty()
        {
            return Ok(Self {
                table_endpoint: endpoint.trim_end_matches('/').to_string(),
                child: None,
            });
        }
        let binary = Self::binary();
        if !binary.exists() {
            return Err(format!(
                "Azurite is not installed at {}: run `npm ci --prefix tools/azurite` (scripts/test.sh does)",
                binary.display()
            ));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let script = format!(
            "\"$0\" --tableHost 127.0.0.1 --tablePort {port} --inMemoryPersistence --skipApiVersionCheck \
             --disableProductStyleUrl --disableTelemetry --silent & child=$!; \
             while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; kill $child 2>/dev/null",
            parent = std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&binary)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start Azurite: {e}"))?;
        let mut azurite = Self {
            table_endpoint: format!("http://127.0.0.1:{port}/{DEV_ACCOUNT}"),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(child) = azurite.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "Azurite exited before listening ({status}); its error is above"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("Azurite did not listen on port {port} within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(azurite)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // The shell's `kill -0 $parent` loop notices within a second; killing the shell's
            // child directly is quicker, via its process group.
            let _ = Command::new("pkill").arg("-P").arg(child.id().to_string()).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
