#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) for keyguard-notify's email tests.

Usage: smtp_sink.py PORT OUTFILE [--user U --password P] [--reject "451 4.3.0 try later"]

Each accepted message is appended to OUTFILE as one JSON line:
  {"mail_from", "rcpt_tos", "auth_login", "raw", "headers": {...}, "parts": [{"content_type", "body"}]}
"parts" comes from Python's own MIME parser, an implementation independent of lettre, so the Rust
test checks what a real mail client would see rather than what lettre meant to write.
With --user/--password, AUTH LOGIN/PLAIN is offered (over plain TCP: auth_require_tls=False) and
required; wrong credentials get 535. With --reject, every DATA is answered with that reply.
"""

import argparse
import email
import email.policy
import json
import signal
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("outfile")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--reject")
    args = ap.parse_args()

    lock = threading.Lock()

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            if args.reject:
                return args.reject
            raw = envelope.original_content or envelope.content
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            parts = []
            for part in msg.walk():
                if part.is_multipart():
                    continue
                parts.append(
                    {"content_type": part.get_content_type(), "body": part.get_content()}
                )
            record = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "auth_login": (
                    session.auth_data.login.decode("utf-8", "replace")
                    if isinstance(session.auth_data, LoginPassword)
                    else None
                ),
                "raw": raw.decode("utf-8", "replace"),
                "content_type": msg.get_content_type(),
                "headers": {k: str(v) for k, v in msg.items()},
                "parts": parts,
            }
            with lock, open(args.outfile, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            return "250 2.0.0 Message accepted for delivery"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == args.password
        )
        # handled=False lets aiosmtpd send the 535 itself (the default means "I replied already").
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    kwargs = {}
    if args.user is not None:
        kwargs = dict(
            authenticator=authenticator, auth_required=True, auth_require_tls=False
        )
    controller = Controller(Handler(), hostname="127.0.0.1", port=args.port, **kwargs)
    controller.start()
    print(f"listening on 127.0.0.1:{args.port}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
