"""An SMTP client that connects to a loopback port but checks the server's certificate on
STARTTLS against a DNS name, as a client that had resolved that name would."""

from __future__ import annotations

import smtplib


class _NamedSMTP(smtplib.SMTP):
    # smtplib's own attribute, set by __init__ and given to STARTTLS as server_hostname;
    # typeshed does not declare it
    _host: str


def smtp_as(name: str, port: int, *, local_hostname: str | None = None,
            source_address: tuple[str, int] | None = None) -> smtplib.SMTP:
    """A connected client on 127.0.0.1:``port`` whose STARTTLS verifies ``name``."""
    smtp = _NamedSMTP("127.0.0.1", port, local_hostname=local_hostname, timeout=30,
                      source_address=source_address)
    smtp._host = name
    return smtp


def reply_text(error: smtplib.SMTPResponseException) -> bytes:
    """The text of the server's refusal: smtplib reads replies as bytes (typeshed allows
    str too)."""
    assert isinstance(error.smtp_error, bytes)
    return error.smtp_error
