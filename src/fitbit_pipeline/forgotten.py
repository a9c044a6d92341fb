"""The participants forgotten on consent withdrawal, as a run needs them: salted hashes, never the ids.

Light on purpose (no lake or warehouse import): the transform's workers use it to skip the slices of whole
exports that belong to a forgotten participant. ``fitbit_pipeline.forget`` does the removal.
"""

from __future__ import annotations

import hashlib
import posixpath
from typing import TYPE_CHECKING

from .sources import filesystem

if TYPE_CHECKING:
    from .warehouse import Warehouse

SALT_FILE = "_forget_salt"


class Forgetting:
    """The salt of a lake and the hashes of its forgotten participants (what a run needs to skip their files)."""

    def __init__(self, salt: bytes | None, hashes: set[str]) -> None:
        self.salt, self.hashes = salt, frozenset(hashes)

    def __bool__(self) -> bool:
        return bool(self.salt and self.hashes)

    def forgotten(self, participant: str | None) -> bool:
        return bool(participant) and bool(self) and participant_hash(self.salt, participant) in self.hashes  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        return {"salt": self.salt.hex() if self.salt else None, "hashes": sorted(self.hashes)}

    @classmethod
    def from_dict(cls, data: dict[str, object] | None) -> Forgetting:
        if not data or not data.get("salt"):
            return cls(None, set())
        return cls(bytes.fromhex(str(data["salt"])), set(data.get("hashes") or ()))  # type: ignore[arg-type]

    @classmethod
    def of(cls, lake_uri: str, wh: Warehouse) -> Forgetting:
        hashes = wh.forgotten()
        return cls(read_salt(lake_uri) if hashes else None, hashes)


def participant_hash(salt: bytes, participant: str) -> str:
    return hashlib.sha256(salt + b"\0" + participant.strip().encode()).hexdigest()


def read_salt(lake_uri: str) -> bytes | None:
    fs, path = filesystem(posixpath.join(lake_uri, SALT_FILE))
    try:
        with fs.open(path, "rb") as fh:
            return bytes.fromhex(fh.read().decode().strip())
    except FileNotFoundError:
        return None
