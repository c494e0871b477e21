//! The rows of the hostile input table where the socket matters: oversized and deeply nested bodies
//! sent over real TCP (port 0) to `keyguard serve`'s and `keyguard webhook`'s routers, served the
//! way the binary serves them (`functions_runtime::serve_listener`, a multi-threaded runtime). A
//! refusal only counts if the sender receives it: an answer sent while the sender is still
//! writing, then a closed connection, reaches Event Grid as a reset, which it retries instead of
//! dead-lettering. Written by hand over a `TcpStream` so the framing (declared length, chunked)
//! is the test's to choose.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::hostile_env::Routers;
use super::hostile_rows::{nested_arrays, ten_mib_of_json};
use super::test_env::{API_KEY, Env, WEBHOOK_KEY};
use super::*;

const CHUNK: usize = 64 * 1024;
const HANG: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
enum Framing {
    ContentLength,
    Chunked,
}

/// Serves `router` on 127.0.0.1:0 until the returned sender is dropped or fired.
async fn serve(
    router: Router,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        functions_runtime::serve_listener(router, listener, shutdown)
            .await
            .unwrap();
    });
    (addr, stop, server)
}

/// Sends `body` with `framing` while reading the answer; returns its status and text. The write
/// may fail once the server has answered (it need not read the rest); the answer must still arrive.
async fn exchange(
    addr: SocketAddr,
    target: &str,
    extra_headers: &str,
    body: Vec<u8>,
    framing: Framing,
) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let length = match framing {
        Framing::ContentLength => format!("content-length: {}\r\n", body.len()),
        Framing::Chunked => "transfer-encoding: chunked\r\n".to_string(),
    };
    let head = format!(
        "POST {target} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\nconnection: close\r\n{extra_headers}{length}\r\n"
    );
    // The write half is handed back, not dropped, when the body is sent: dropping it half-closes
    // the connection, and hyper drops a request whose client half-closed (Event Grid and the
    // Functions host never do).
    let write = tokio::spawn(async move {
        let sent = send(&mut writer, head, body, framing).await;
        (writer, sent)
    });
    let mut answer = Vec::new();
    // Not a timing assertion: a bound so that a server that never answers fails the test instead
    // of hanging it.
    let read = tokio::time::timeout(HANG, reader.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("{target} ({framing:?}): no answer within {HANG:?}"));
    // A write refused after the answer is expected; the answer is what counts.
    let _ = write.await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        read.is_ok() || !answer.is_empty(),
        "{target} ({framing:?}): no answer, the connection failed: {read:?}"
    );
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{target} ({framing:?}): not an HTTP answer: {text:?}"));
    (status, text)
}

async fn send(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    head: String,
    body: Vec<u8>,
    framing: Framing,
) -> std::io::Result<()> {
    writer.write_all(head.as_bytes()).await?;
    for chunk in body.chunks(CHUNK) {
        match framing {
            Framing::ContentLength => writer.write_all(chunk).await?,
            Framing::Chunked => {
                writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                writer.write_all(chunk).await?;
                writer.write_all(b"\r\n").await?;
            }
        }
    }
    if let Framing::Chunked = framing {
        writer.write_all(b"0\r\n\r\n").await?;
    }
    writer.flush().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_deeply_nested_bodies_are_answered_over_a_real_socket() {
    let env = Env::start().await;
    let routers = Routers::keyed(env.context.clone());
    let (functions, stop_functions, functions_server) = serve(routers.functions).await;
    let (webhook, stop_webhook, webhook_server) = serve(routers.webhook).await;
    let events = format!("/api/events?code={WEBHOOK_KEY}");
    let api_key = format!("x-api-key: {API_KEY}\r\n");
    let nested = nested_arrays().into_bytes();
    let ten_mib = ten_mib_of_json();
    let (refused_413, refused_400) = ((413, "exceeds the limit"), (400, "recursion limit exceeded"));
    let cases = [
        (
            "serve's event function",
            functions,
            "/EncryptionDrift",
            "",
            &ten_mib,
            refused_413,
        ),
        (
            "serve's timer function",
            functions,
            "/Reconcile",
            "",
            &ten_mib,
            refused_413,
        ),
        (
            "the webhook's events",
            webhook,
            events.as_str(),
            "",
            &ten_mib,
            (413, "length limit exceeded"),
        ),
        (
            "the webhook's /api/check",
            webhook,
            "/api/check",
            api_key.as_str(),
            &ten_mib,
            (413, "length limit exceeded"),
        ),
        (
            "serve's event function",
            functions,
            "/EncryptionDrift",
            "",
            &nested,
            refused_400,
        ),
        (
            "the webhook's events",
            webhook,
            events.as_str(),
            "",
            &nested,
            refused_400,
        ),
    ];
    let mut failures = Vec::new();
    for (what, addr, target, headers, body, (status, says)) in cases {
        for framing in [Framing::ContentLength, Framing::Chunked] {
            let (got, text) = exchange(addr, target, headers, body.clone(), framing).await;
            if got != status || !text.contains(says) {
                let shown: String = text.chars().take(300).collect();
                failures.push(format!(
                    "{what} ({framing:?}): expected {status} saying {says:?}, got {shown}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Still serving after all that: the answers above were not the last thing it did.
    let (status, _) = exchange(
        functions,
        "/EncryptionDrift",
        "",
        b"{}".to_vec(),
        Framing::ContentLength,
    )
    .await;
    assert_eq!(status, 400);
    let _ = (stop_functions.send(()), stop_webhook.send(()));
    functions_server.await.unwrap();
    webhook_server.await.unwrap();
    env.sim.shutdown().await;
}
