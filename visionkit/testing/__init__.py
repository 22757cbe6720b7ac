"""Test helpers shipped with visionkit. Nothing is imported until used.

* :mod:`visionkit.testing.fake_gemini`: :class:`FakeGemini`, a real local HTTP server that speaks the Gemini
  REST API (generateContent, Files API) with fault injection and request recording.
* :mod:`visionkit.testing.recipe`: a slow reference implementation of Google's segmentation recipe.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FakeGemini", "Fault", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import fake_gemini

        return getattr(fake_gemini, name)
    raise AttributeError(f"module 'visionkit.testing' has no attribute {name!r}")
