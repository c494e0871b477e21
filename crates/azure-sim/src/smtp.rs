//! A local SMTP sink, standing in for the mail relay alerts go through (Azure Communication
//! Services' SMTP endpoint or a corporate relay): it speaks enough SMTP for a real client
//! (EHLO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT), accepts every message and keeps
//! it, optionally writing each one to a `.eml` file so people can open what keyguard sent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug, serde::Serialize)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-unstuffed.
    pub data: String,
}

#[derive(Clone, Default)]
pub struct SmtpSink {
    messages: Arc<Mutex<Vec<ReceivedMail>>>,
}

impl SmtpSink {
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.messages.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Largest message accepted; a sink for alerts has no business buffering more.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Binds `addr` (loopback) and serves until the runtime ends. `save_to`: folder for `mail-N.eml`.
pub async fn start_smtp_sink(addr: SocketAddr, save_to: Option<PathBuf>) -> std::io::Result<(SmtpSink, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let sink = SmtpSink::default();
    let serving = sink.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = serving.clone();
            let save_to = save_to.clone();
            tokio::spawn(async move {
                if let Err(e) = session(stream, &sink, save_to.as_deref()).await {
                    tracing::debug!(error = %e, "smtp sink session ended");
                }
            });
        }
    });
    Ok((sink, bound))
}

async fn session(stream: TcpStream, sink: &SmtpSink, save_to: Option<&std::path::Path>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 azure-sim smtp sink ready\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-azure-sim\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE 4194304\r\n",
            "HELO" => b"250 azure-sim\r\n",
            "AUTH" => {
                // AUTH LOGIN asks for user and password in two more lines; PLAIN may send them inline.
                let mechanism = command
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                let inline = command.split_whitespace().nth(2).is_some();
                if mechanism == "LOGIN" {
                    for prompt in [&b"334 VXNlcm5hbWU6\r\n"[..], &b"334 UGFzc3dvcmQ6\r\n"[..]] {
                        write.write_all(prompt).await?;
                        line.clear();
                        lines.read_line(&mut line).await?;
                    }
                } else if !inline {
                    write.write_all(b"334 \r\n").await?;
                    line.clear();
                    lines.read_line(&mut line).await?;
                }
                b"235 2.7.0 accepted\r\n"
            }
            "MAIL" => {
                from = address_in(&command);
                to.clear();
                b"250 2.1.0 ok\r\n"
            }
            "RCPT" => {
                to.push(address_in(&command));
                b"250 2.1.5 ok\r\n"
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 4.5.2).
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                    if data.len() > MAX_MESSAGE_BYTES {
                        write.write_all(b"552 5.3.4 message too big\r\n").await?;
                        return Ok(());
                    }
                }
                let mail = ReceivedMail {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                };
                let n = {
                    let mut messages = sink.messages.lock().unwrap_or_else(|p| p.into_inner());
                    messages.push(mail.clone());
                    messages.len()
                };
                if let Some(dir) = save_to {
                    let _ = std::fs::write(dir.join(format!("mail-{n}.eml")), &mail.data);
                }
                b"250 2.0.0 queued\r\n"
            }
            "RSET" => {
                from.clear();
                to.clear();
                b"250 2.0.0 ok\r\n"
            }
            "NOOP" => b"250 2.0.0 ok\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

fn address_in(command: &str) -> String {
    let start = command.find('<').map(|i| i + 1).unwrap_or(0);
    let end = command[start..].find('>').map(|i| start + i).unwrap_or(command.len());
    command[start..end].trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn say(stream: &mut TcpStream, text: &str) -> String {
        stream.write_all(text.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    }

    #[tokio::test]
    async fn a_message_is_received_unstuffed_and_saved() {
        let dir = std::env::temp_dir().join(format!("smtp-sink-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let (sink, addr) = start_smtp_sink("127.0.0.1:0".parse().unwrap(), Some(dir.clone()))
            .await
            .unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut greeting = vec![0u8; 128];
        let n = s.read(&mut greeting).await.unwrap();
        assert!(String::from_utf8_lossy(&greeting[..n]).starts_with("220"));
        assert!(say(&mut s, "EHLO test\r\n").await.contains("AUTH PLAIN LOGIN"));
        assert!(say(&mut s, "AUTH PLAIN AGtnAHB3\r\n").await.starts_with("235"));
        assert!(
            say(&mut s, "MAIL FROM:<kg@contoso.example>\r\n")
                .await
                .starts_with("250")
        );
        assert!(say(&mut s, "RCPT TO:<a@contoso.example>\r\n").await.starts_with("250"));
        assert!(say(&mut s, "RCPT TO:<b@contoso.example>\r\n").await.starts_with("250"));
        assert!(say(&mut s, "DATA\r\n").await.starts_with("354"));
        assert!(
            say(&mut s, "Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\n")
                .await
                .starts_with("250")
        );
        assert!(say(&mut s, "QUIT\r\n").await.starts_with("221"));
        let mail = &sink.messages()[0];
        assert_eq!(mail.from, "kg@contoso.example");
        assert_eq!(mail.to, vec!["a@contoso.example", "b@contoso.example"]);
        assert!(
            mail.data.contains("\r\n.leading dot\r\n"),
            "dot-unstuffed: {:?}",
            mail.data
        );
        assert!(
            std::fs::read_to_string(dir.join("mail-1.eml"))
                .unwrap()
                .contains("Subject: hi")
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
