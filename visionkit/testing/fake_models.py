"""The Models API of :class:`~visionkit.testing.FakeGemini`: ``GET /v1beta/models/{id}`` and
``GET /v1beta/models`` (paged with ``pageSize`` and ``pageToken``), as ai.google.dev/api/models describes
them: a Model resource holds ``name``, ``baseModelId``, ``version``, ``displayName``, ``inputTokenLimit``,
``outputTokenLimit``, ``supportedGenerationMethods`` and ``thinking``.

With ``dialects``, each id is described from its dialect (:mod:`visionkit.testing.dialects`): a retired
one is 404, a model that does not think says ``thinking: false``, an embedding model offers no
``generateContent``; the list holds :data:`~visionkit.testing.dialects.LISTED`. Without dialects every id
exists and says ``thinking: false`` (so a bare fake asks for no learning). ``server.models`` overrides
any id: ``server.models["x"] = None`` makes it 404, a dict is sent as its resource, and a
:class:`~visionkit.testing.faults.Fault` (``status``, ``reset`` or ``slow``) is what every ``GET`` of that id
gets, before the key is checked (an outage, or a front end that refuses the key itself).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .fake_http import reset
from .fake_responses import error_body, model_resource
from .faults import Fault

if TYPE_CHECKING:
    from .dialects import Dialects
    from .fake_http import Handler

__all__ = ["MODEL_GET", "ModelsEndpoints", "model_resource"]

MODEL_GET = re.compile(r"^/v1beta/models/([^/:]+)$")


class ModelsEndpoints:
    """Mixed into FakeGemini: it provides ``dialects``, ``models``, ``_send_json``."""

    dialects: Dialects | None
    models: dict[str, dict | Fault | None]
    _send_json: Any
    _send_fault_status: Any
    _stopping: Any
    #: what ``GET /v1beta/models`` (the list) answers instead of the list, e.g. ``Fault.status(404)`` for a
    #: proxy that forwards only generateContent; None: the list
    list_fault: Fault | None = None

    def _describe(self, model: str) -> dict | Fault | None:
        if model in self.models:
            return self.models[model]
        if self.dialects is None:
            return model_resource(model)
        return self.dialects.resource(model)

    def _model_get(self, h: Handler, model: str) -> None:
        resource = self._describe(model)
        if isinstance(resource, Fault):
            if resource.kind == "status":
                return self._send_fault_status(h, resource)
            if resource.kind == "reset" or self._stopping.wait(resource.seconds):
                return reset(h)
            resource = model_resource(model)
        if resource is None:
            return self._send_json(h, 404, error_body(404, f"models/{model} is not found for API version "
                                                           "v1beta, or is not supported for generateContent. "
                                                           "Call ListModels to see the list of available "
                                                           "models and their supported methods."))
        return self._send_json(h, 200, resource)

    def _model_list(self, h: Handler, query: Mapping[str, list[str]]) -> None:
        if self.list_fault is not None:
            if self.list_fault.kind == "status":
                return self._send_fault_status(h, self.list_fault)
            return reset(h)
        listed = self.dialects.listed if self.dialects is not None else ()
        ids = list(dict.fromkeys([*listed, *(m for m, r in self.models.items() if isinstance(r, dict))]))
        resources = [r for r in (self._describe(m) for m in ids) if isinstance(r, dict)]
        try:
            size = max(1, min(int(query.get("pageSize", ["50"])[0]), 1000))
            start = int(query.get("pageToken", ["0"])[0] or 0)
        except ValueError:
            return self._send_json(h, 400, error_body(400, "Invalid page size or token."))
        body: dict[str, Any] = {"models": resources[start:start + size]}
        if start + size < len(resources):
            body["nextPageToken"] = str(start + size)
        return self._send_json(h, 200, body)
