"""llmchain-otel: OpenTelemetry spans and metrics for every llmchain call.

Installed, it registers an observer through llmchain's ``register_observers`` hook (entry
point ``otel`` in group ``llmchain``) that uses the *global* OpenTelemetry providers. The hook
runs once, when the first chain is built: if no OpenTelemetry SDK provider is installed
globally by then, it registers nothing, so an app that does not use OpenTelemetry pays nothing
per call (set ``LLMCHAIN_OTEL=always`` to register regardless). For explicit providers, pass
``OtelObserver(tracer_provider, meter_provider)`` to ``Chain(observers=[...])``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from opentelemetry import metrics, trace

from llmchain import hookimpl

from ._observer import OtelObserver, provider_of

__all__ = ["OtelObserver", "otel_configured", "provider_of", "register_observers"]

logger = logging.getLogger("llmchain.otel")


def otel_configured() -> bool:
    """Whether a real (SDK) tracer or meter provider is installed globally."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return True
    # the API's default meter provider is a private proxy class: recognise it by name
    return type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider"


@hookimpl
def register_observers(register: Callable[[Callable[[Any], None]], None]) -> None:
    if os.environ.get("LLMCHAIN_OTEL", "").lower() == "always" or otel_configured():
        register(OtelObserver())
        return
    logger.info(
        "llmchain-otel: no OpenTelemetry SDK provider was installed when llmchain loaded its "
        "plugins, so nothing is recorded. Configure OpenTelemetry before building the first "
        "chain, set LLMCHAIN_OTEL=always, or pass OtelObserver() to Chain(observers=[...]).")
