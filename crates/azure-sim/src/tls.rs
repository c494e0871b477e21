//! The simulator over TLS, as tools that cannot be pointed at a plain-HTTP ARM meet it.
//!
//! Peers such as Cloud Custodian and Prowler call `https://management.azure.com` and
//! `https://graph.microsoft.com` with no setting for another host, and azure-core refuses to send
//! a bearer token over plain HTTP. So the stand-in offers:
//!
//! * a throw-away certificate authority, generated at start (nothing on disk but its public
//!   certificate, written for the clients to trust), and a server certificate it signs for the
//!   Azure host names and `127.0.0.1`;
//! * the same router as the plain listener, served over TLS on its own loopback port;
//! * an HTTP `CONNECT` proxy (see [`crate::proxy`]) that tunnels only those Azure host names to
//!   the TLS port, so an unmodified SDK reaches the stand-in through `HTTPS_PROXY`.
//!
//! Handshakes run in their own tasks: one slow or failed handshake never holds up the accept
//! loop (clients such as c7n open a fresh connection per event).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;

/// Host names the server certificate covers (and the proxy tunnels): ARM, Microsoft Graph and
/// the Entra token endpoint, the hosts the peers' SDKs hard-code.
pub const AZURE_HOSTS: [&str; 3] = [
    "management.azure.com",
    "graph.microsoft.com",
    "login.microsoftonline.com",
];

/// Marks a request that arrived over the TLS listener, so answers that carry absolute URLs
/// (`nextLink`, long-running operation headers) say `https`.
#[derive(Clone, Copy, Debug)]
pub struct ServedOverTls;

/// A generated CA and the server identity it signed.
pub struct Identity {
    /// PEM of the CA certificate: what clients add to their trust store.
    pub ca_pem: String,
    config: Arc<ServerConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("building the TLS configuration: {0}")]
    Config(#[from] tokio_rustls::rustls::Error),
}

impl Identity {
    /// A fresh CA (never written out: its key lives only in this process) and a server
    /// certificate for [`AZURE_HOSTS`], `localhost` and `127.0.0.1`.
    pub fn generate() -> Result<Identity, TlsError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "azure-sim throw-away CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut names: Vec<String> = AZURE_HOSTS.iter().map(|h| (*h).to_owned()).collect();
        names.extend(["localhost".to_owned(), "127.0.0.1".to_owned()]);
        let mut server_params = CertificateParams::new(names)?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, AZURE_HOSTS[0]);
        server_params.use_authority_key_identifier_extension = true;
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server_params.signed_by(&server_key, &issuer)?;

        let chain = vec![server_cert.der().clone(), CertificateDer::from(ca_cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        // HTTP/1.1 only: what every client here speaks, and what the CONNECT tunnel carries.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Identity {
            ca_pem: ca_cert.pem(),
            config: Arc::new(config),
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }
}

/// A loopback TLS listener for `axum::serve`: accepts TCP, completes handshakes concurrently
/// and hands over finished TLS streams in the order they complete.
pub struct TlsListener {
    addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub async fn bind(addr: SocketAddr, acceptor: TlsAcceptor) -> io::Result<TlsListener> {
        let tcp = TcpListener::bind(addr).await?;
        let addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "azure-sim TLS accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if tx.is_closed() {
                    break;
                }
                let acceptor = acceptor.clone();
                let handed_over = tx.clone();
                tokio::spawn(async move {
                    match acceptor.accept(stream).await {
                        Ok(tls) => {
                            let _ = handed_over.send((tls, peer)).await;
                        }
                        Err(e) => tracing::debug!(error = %e, %peer, "azure-sim TLS handshake failed"),
                    }
                });
            }
        });
        Ok(TlsListener { addr, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends once this receiver is gone; never resolve otherwise.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
