//! An HTTP `CONNECT` proxy for clients whose Azure host names are fixed (see [`crate::tls`]):
//! `CONNECT management.azure.com:443` (or another of [`AZURE_HOSTS`]) is tunnelled to the
//! simulator's TLS port; anything else is refused, so nothing a client sends leaves loopback.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::tls::AZURE_HOSTS;

/// The largest request head accepted; a CONNECT request is a line and a few headers.
const MAX_HEAD: usize = 16 * 1024;

/// What a request head asks the proxy to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Tunnel to the TLS port.
    Tunnel,
    /// Answer with this status line and close.
    Refuse(&'static str),
    /// The head is not complete yet.
    Partial,
}

/// Parses a request head with `httparse` and decides: only `CONNECT` to an Azure host on
/// port 443 is tunnelled.
pub(crate) fn decide(head: &[u8]) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Partial) => Verdict::Partial,
        Err(_) => Verdict::Refuse("400 Bad Request"),
        Ok(httparse::Status::Complete(_)) => {
            if req.method != Some("CONNECT") {
                return Verdict::Refuse("405 Method Not Allowed");
            }
            // A CONNECT target is an authority (`host:port`); parse it as one.
            let target = req.path.and_then(|p| url::Url::parse(&format!("https://{p}/")).ok());
            let allowed = target.as_ref().is_some_and(|u| {
                u.port_or_known_default() == Some(443)
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.host_str()
                        .is_some_and(|h| AZURE_HOSTS.iter().any(|a| a.eq_ignore_ascii_case(h)))
                    && u.path() == "/"
            });
            if allowed {
                Verdict::Tunnel
            } else {
                Verdict::Refuse("403 Forbidden")
            }
        }
    }
}

/// Binds a loopback port (0 = any) and tunnels allowed `CONNECT`s to `tls_addr`.
pub async fn start(addr: SocketAddr, tls_addr: SocketAddr) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    tokio::spawn(async move {
                        if let Err(e) = tunnel(client, tls_addr).await {
                            tracing::debug!(error = %e, "azure-sim proxy connection ended");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "azure-sim proxy accept failed"),
            }
        }
    });
    Ok(local)
}

async fn tunnel(mut client: TcpStream, tls_addr: SocketAddr) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 2048];
    let verdict = loop {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        match decide(&head) {
            Verdict::Partial if head.len() < MAX_HEAD => continue,
            Verdict::Partial => break Verdict::Refuse("431 Request Header Fields Too Large"),
            done => break done,
        }
    };
    if let Verdict::Refuse(status) = verdict {
        tracing::warn!(status, "azure-sim proxy refused a request");
        let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return client.write_all(reply.as_bytes()).await;
    }
    // Bytes after the head belong to the tunnel (a client may start its handshake at once).
    let rest = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| head.split_off(i + 4))
        .unwrap_or_default();
    let mut upstream = TcpStream::connect(tls_addr).await?;
    upstream.set_nodelay(true)?;
    client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await?;
    if !rest.is_empty() {
        upstream.write_all(&rest).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connect_to_an_azure_host_on_443_is_tunnelled() {
        let ok = b"CONNECT management.azure.com:443 HTTP/1.1\r\nHost: management.azure.com:443\r\n\r\n";
        assert_eq!(decide(ok), Verdict::Tunnel);
        assert_eq!(
            decide(b"CONNECT GRAPH.microsoft.com:443 HTTP/1.1\r\n\r\n"),
            Verdict::Tunnel
        );
        assert_eq!(
            decide(b"CONNECT management.azure.com:443 HTTP/1.1\r\n"),
            Verdict::Partial
        );
        for refused in [
            &b"CONNECT example.com:443 HTTP/1.1\r\n\r\n"[..],
            b"CONNECT management.azure.com:22 HTTP/1.1\r\n\r\n",
            b"CONNECT management.azure.com.evil.test:443 HTTP/1.1\r\n\r\n",
            b"CONNECT user@management.azure.com:443 HTTP/1.1\r\n\r\n",
            b"CONNECT management.azure.com:443/x HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                decide(refused),
                Verdict::Refuse("403 Forbidden"),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
        assert_eq!(
            decide(b"GET http://management.azure.com/ HTTP/1.1\r\n\r\n"),
            Verdict::Refuse("405 Method Not Allowed")
        );
        assert_eq!(decide(b"\x00\x01garbage\r\n\r\n"), Verdict::Refuse("400 Bad Request"));
    }
}
