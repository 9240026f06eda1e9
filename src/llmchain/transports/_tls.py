"""TLS and proxy settings of an HTTP transport, resolved once when it is built.

A CA bundle or client certificate that cannot be loaded is a ``ConfigError`` at build time
(``llmchain check-config`` reports it); ``verify = false`` works but warns loudly, every time a
transport is built with it. A certificate that fails verification at call time is a
``CertificateError`` (not retried) whose hint says how to trust it.
"""

from __future__ import annotations

import logging
import ssl
import warnings
from pathlib import Path

from .._exceptions import CertificateError, ConfigError
from ._http_options import HTTPOptions

log = logging.getLogger("llmchain.transports")

CERT_HINT = ("the server's certificate is not trusted: if it is signed by a private or corporate CA, "
             "set the transport's ca_bundle to that CA's PEM file (or export SSL_CERT_FILE); check "
             "that base_url names the host the certificate was issued for. verify = false turns "
             "verification off (testing only)")


def ssl_context(o: HTTPOptions, where: str) -> ssl.SSLContext | None:
    """The SSL context the options ask for, or None for the engine's default."""
    if o.client_key is not None and o.client_cert is None:
        raise ConfigError(f"{where}: client_key is set without client_cert")
    if o.verify and o.ca_bundle is None and o.client_cert is None:
        return None
    for field in ("ca_bundle", "client_cert", "client_key"):
        path = getattr(o, field)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{where}: {field} {path!r} is not a readable file")
    try:
        context = ssl.create_default_context(cafile=o.ca_bundle)
        if o.client_cert is not None:
            context.load_cert_chain(o.client_cert, o.client_key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{where}: cannot load the TLS files (ca_bundle / client_cert / "
                          f"client_key): {exc}") from None
    if not o.verify:
        message = (f"{where}: verify = false: TLS certificates are NOT checked, so anyone on the "
                   "network path can read and change these calls (API key included). Use "
                   "ca_bundle instead outside of testing.")
        warnings.warn(message, UserWarning, stacklevel=4)
        log.warning(message)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def certificate_error(where: str, url: str, detail: object) -> CertificateError:
    return CertificateError(f"{where}: TLS certificate verification failed for {url}: {detail}",
                            hint=CERT_HINT)


def is_cert_failure(exc: BaseException | None) -> bool:
    """Whether ``exc`` or one of its causes is a certificate verification failure."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
