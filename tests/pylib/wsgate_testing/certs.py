"""A self-signed certificate for 127.0.0.1 and localhost, made by `openssl
req` for each test that serves TLS."""

import ssl
import subprocess


def self_signed(dirpath):
    """Writes cert.pem and key.pem under dirpath (a pathlib.Path); returns
    (cert path, key path, ssl client context trusting exactly that cert)."""
    c, k = dirpath / "cert.pem", dirpath / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(k), "-out", str(c)], check=True, capture_output=True, timeout=60)
    return c, k, ssl.create_default_context(cafile=str(c))
