"""Seeded, per-image dataset splits: ``--split val=0.2`` -> which split each image goes to."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from ..errors import ExportError

__all__ = ["parse_split", "assign_splits", "train_never_empty"]


def parse_split(text: str | None) -> dict[str, float]:
    """``"val=0.2"`` or ``"val=0.1,test=0.1"`` -> ``{"val": 0.2, ...}``; None or ``""`` -> ``{}``."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            frac = float(value)
        except ValueError:
            frac = -1.0
        if not sep or not name or not 0 < frac < 1:
            raise ExportError(f"split {part.strip()!r}: expected NAME=FRACTION with 0 < FRACTION < 1, "
                              "e.g. val=0.2")
        if name == "train" or name in out or not name.replace("-", "").replace("_", "").isalnum():
            raise ExportError(f"split {part.strip()!r}: the name must be a new word other than 'train' "
                              "(train takes the images left over)")
        out[name] = frac
    if sum(out.values()) >= 1:
        raise ExportError(f"split fractions {out} add up to 1 or more; train would be empty")
    return out


def assign_splits(names: Sequence[str], split: Mapping[str, float], seed: int = 0) -> dict[str, str]:
    """``name -> split`` for every name, each image on its own: same name + same seed = same split.

    An image's place is ``u``, the first 8 bytes of ``sha256(f"{seed}:{name}")`` as a fraction in
    ``[0, 1)``; the named splits take consecutive ranges of ``u`` in the order given (``val=0.2`` is
    ``u < 0.2``) and ``train`` takes the rest. So adding or removing images never moves the others (a run
    that grows keeps its val images in val), raising a fraction only moves images from ``train`` into that
    split, and the input order does not matter. The sizes are ``n * fraction`` on average, not exactly
    (for 100 images at 0.2 the val split holds 20 +- 4, one standard deviation).
    """
    out = {}
    for name in names:
        u = _place(name, seed)
        edge, where = 0.0, "train"
        for split_name, frac in split.items():
            edge += frac
            if u < edge:
                where = split_name
                break
        out[name] = where
    return out


def _place(name: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{name}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def train_never_empty(where: dict[str, str], seed: int) -> str | None:
    """When no image fell into train, move the one whose place is nearest to train's range (the largest
    ``u``: train takes the top of ``[0, 1)``) there, in ``where``; return its name, or None."""
    if not where or "train" in where.values():
        return None
    name = max(where, key=lambda n: (_place(n, seed), n))
    where[name] = "train"
    return name
