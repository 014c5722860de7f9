"""Serving: which registered versions answer requests right now, and how that changes.

Plain classes, no HTTP (the app is `flows/serve.py`). `ModelSlot` holds the loaded arms as one
immutable `Arms`, replaced in a single assignment: a request reads the slot once and is scored by
the arms it read, whatever a swap does meanwhile. `route` sends a share of requests (sticky by
key) to the challenger for A/B. `AliasPoller` follows the registry's aliases and swaps a moved
one in once it is loaded and warmed up (`tasks/serve/native_scoring.py`) off the request path.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.core.config import PerennialConfig
from tasks.notify.alerts import alert_swap_failed
from tasks.registry.client import CHALLENGER, CHAMPION, version_by_alias
from tasks.serve.native_scoring import ServedModel, load_served
from tasks.serve.request import RequestSchema

log = logging.getLogger("perennial.serve")


# --- the slot and A/B routing ------------------------------------------------------------


@dataclass(frozen=True)
class Arms:
    """What serves right now: never mutated, only replaced."""

    champion: ServedModel | None = None
    challenger: ServedModel | None = None
    schema: RequestSchema | None = None  # the champion's


class ModelSlot:
    """The served arms behind one reference: `swap` is one assignment, atomic under the GIL,
    so a reader sees the old arms or the new ones, never half of each."""

    def __init__(self) -> None:
        self._arms = Arms()

    @property
    def arms(self) -> Arms:
        return self._arms

    def swap(self, arms: Arms) -> None:
        self._arms = arms


def key_fraction(key: str) -> float:
    """A request key's fixed place in [0, 1): the same key always lands in the same arm."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def route(arms: Arms, share: float, key: str | None) -> ServedModel | None:
    """The arm that scores a request: the challenger for a `share` of keys (of requests, when
    no key is given), else the champion."""
    if arms.challenger is None or share <= 0:
        return arms.champion
    place = key_fraction(key) if key is not None else random.random()
    return arms.challenger if place < share else arms.champion


# --- hot swap ----------------------------------------------------------------------------


Loader = Callable[[PerennialConfig, str, str], tuple[ServedModel, RequestSchema]]
AliasLookup = Callable[[PerennialConfig, str], Any]


class AliasPoller:
    """Checks the `champion` and `challenger` aliases every `serve.poll_seconds`; a moved alias
    is loaded and warmed up off the request path, then swapped in with the other arm in one
    step. A version that fails to load or warm up is not swapped in: logged at ERROR (and
    counted by `on_failure`), and the arm it was meant to replace keeps serving."""

    def __init__(
        self,
        config: PerennialConfig,
        slot: ModelSlot,
        loader: Loader = load_served,
        lookup: AliasLookup = version_by_alias,
        on_swap: Callable[[Arms], None] | None = None,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config, self.slot = config, slot
        self._loader, self._lookup = loader, lookup
        self._on_swap, self._on_failure = on_swap, on_failure
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _wanted(self) -> dict[str, str | None]:
        champion = self._lookup(self.config, CHAMPION)
        challenger = self._lookup(self.config, CHALLENGER)
        wanted = {CHAMPION: champion.version if champion else None, CHALLENGER: None}
        # A challenger that is the champion is no second arm (as in batch shadow scoring).
        if challenger is not None and challenger.version != wanted[CHAMPION]:
            wanted[CHALLENGER] = challenger.version
        return wanted

    def refresh(self) -> bool:
        """One check of the aliases; True when the served arms changed."""
        arms = self.slot.arms
        current = {CHAMPION: arms.champion, CHALLENGER: arms.challenger}
        schema = arms.schema
        chosen: dict[str, ServedModel | None] = dict(current)
        for alias, version in self._wanted().items():
            served = current[alias]
            if (served.version if served else None) == version:
                continue
            if version is None:
                if alias == CHALLENGER:  # the challenger alias is gone (e.g. it was promoted)
                    chosen[alias] = None
                continue  # a champion alias never disappears on purpose: keep serving
            try:
                model, model_schema = self._loader(self.config, alias, version)
            except Exception as exc:
                log.error(
                    "v%s of %s (%s) failed to load or warm up, not swapped in: %s",
                    version,
                    self.config.model_name,
                    alias,
                    exc,
                )
                if self._on_failure:
                    self._on_failure(alias, version)
                alert_swap_failed(self.config, alias, version, str(exc)[:300])
                continue
            chosen[alias] = model
            if alias == CHAMPION:
                schema = model_schema
        if chosen == current:
            return False
        new = Arms(chosen[CHAMPION], chosen[CHALLENGER], schema)
        self.slot.swap(new)
        log.info(
            "serving %s: champion v%s, challenger %s",
            self.config.model_name,
            new.champion.version if new.champion else "none",
            f"v{new.challenger.version}" if new.challenger else "none",
        )
        if self._on_swap:
            self._on_swap(new)
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.config.serve.poll_seconds):
            try:
                self.refresh()
            except Exception:  # a registry outage must not end polling; the arms keep serving
                log.exception("checking the aliases of %s failed", self.config.model_name)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="alias-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
