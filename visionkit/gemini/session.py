"""The ``requests.Session`` a :class:`~visionkit.gemini.client.GeminiClient` builds for itself.

``requests`` reads the environment again for every request it sends: the proxy variables (each request
walks ``os.environ`` twice, in ``get_environ_proxies`` and ``should_bypass_proxies``), the CA bundle
variables and the ``~/.netrc`` file. Profiled against the local fake server at concurrency 16 that was
about a sixth of the online path's client CPU. This session reads them once per scheme and host, with
the same functions ``requests`` calls (``Session.merge_environment_settings`` and
``requests.utils.get_netrc_auth``), so the requests it sends are the same. The environment is read when
a host is first asked; a client made before the environment changed keeps what it read (make a new one).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.utils import get_netrc_auth

__all__ = ["EnvOnceSession"]


def _no_auth(request: Any) -> Any:
    """The auth of a host that ``~/.netrc`` does not name: the request as it is."""
    return request


class EnvOnceSession(requests.Session):
    """A session that reads the proxy, CA and netrc environment once per scheme and host."""

    def __init__(self) -> None:
        super().__init__()
        self._env: dict[tuple, dict] = {}
        self._netrc: dict[tuple, Any] = {}
        self._env_lock = threading.Lock()

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict:
        if proxies or not self.trust_env:  # per-request proxies: as requests does it
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        key = (*urlsplit(url)[:2], stream, verify, cert)
        with self._env_lock:
            settings = self._env.get(key)
            if settings is None:
                settings = self._env[key] = super().merge_environment_settings(url, {}, stream, verify, cert)
        return {**settings, "proxies": dict(settings["proxies"])}

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if self.trust_env and not request.auth and not self.auth:
            key = tuple(urlsplit(request.url)[:2])
            with self._env_lock:
                if key not in self._netrc:
                    self._netrc[key] = get_netrc_auth(request.url) or _no_auth
            request.auth = self._netrc[key]
        return super().prepare_request(request)
