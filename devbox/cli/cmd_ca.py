"""``devbox ca``: devbox's local certificate authority (HTTPS mocks and interception).

``devbox ca`` creates it once (or shows it), ``devbox ca path`` prints where the
certificate is (for ``--cacert``), ``devbox ca trust-hints`` says how each system and
client is made to trust it. docs/tls.md."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from devbox.cli import output

EPILOG = """\
examples:
  devbox ca                         create the CA (once) and show where it is
  curl --cacert "$(devbox ca path)" https://127.0.0.1:8081/ping
  devbox ca path --bundle           the system's CAs + devbox's, for SSL_CERT_FILE
  devbox ca trust-hints             Debian/Ubuntu, Fedora, macOS, Node, Python, Java, Go

The CA lives in $XDG_DATA_HOME/devbox/ca (default ~/.local/share/devbox/ca); its key is
0600 and never leaves this machine. devbox up and devbox record point the service's
SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS and CURL_CA_BUNDLE at it.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ca",
        help="devbox's local CA for HTTPS mocks and recording: create, path, trust-hints",
        description="Create (once) and show devbox's local certificate authority, which "
        "signs the certificates of HTTPS mocks and of the recording proxy's interception.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "action",
        nargs="?",
        default="show",
        choices=("show", "path", "trust-hints"),
        help="show (default: create if missing, print the paths and fingerprint), path "
        "(the certificate's path only), trust-hints (how to trust it, per platform)",
    )
    p.add_argument(
        "--bundle",
        action="store_true",
        help="with `path`: the bundle (system CAs + devbox's) instead of the certificate",
    )
    p.set_defaults(func=run_ca)


def run_ca(args: argparse.Namespace) -> int:
    from devbox.wire.ca import ensure_ca, trust_hints

    ca, f, new = ensure_ca()
    if args.action == "path":
        sys.stdout.write(f"{f.bundle if args.bundle else f.cert}\n")
        return 0
    if args.action == "trust-hints":
        sys.stdout.write(trust_hints(f.cert, f.bundle))
        return 0
    con = output.console()
    con.print(("created" if new else "existing") + f" devbox CA in {output.escape(f.dir)}")
    con.print(f"  certificate  {output.escape(f.cert)}")
    con.print(f"  key          {output.escape(f.key)} (0600)")
    con.print(f"  bundle       {output.escape(f.bundle)} (system CAs + devbox's)")
    con.print(f"  SHA-256      {ca.fingerprint()}", soft_wrap=True)
    con.print("trust it: devbox ca trust-hints")
    return 0
