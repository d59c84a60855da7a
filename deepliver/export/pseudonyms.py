"""Keyed pseudonyms: a series always gets the same name, which reveals nothing without the key.

A pseudonym is ``HMAC-SHA256(key, text)`` as hex, truncated to 12 characters (48 bits): a case
is ``liver_<HMAC of its Series Instance UID>``, a patient ``<HMAC of the Patient ID>``. Anyone
with the key can recompute them (``hmac.new(key, uid.encode(), "sha256").hexdigest()[:12]``);
without it, guessing a UID or an ID and checking it against the dataset is not possible. The
key lives outside the dataset, by default in ``~/.deepliver/export-key`` (32 random bytes,
mode 0600), so exports made on one machine keep their names from one run to the next.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from deepliver.errors import DeepLiverError

DEFAULT_KEY_FILE = Path("~/.deepliver/export-key")
KEY_BYTES = 32
# A shorter key file is a mistake (an empty or truncated file), not a key.
MIN_KEY_BYTES = 16
PSEUDONYM_HEX = 12
CASE_PREFIX = "liver_"


def load_or_create_key(path: Path | str = DEFAULT_KEY_FILE) -> tuple[bytes, bool]:
    """(the secret key in ``path``, whether it was created now).

    A missing key is created with 32 random bytes, readable by its owner only; creation is
    exclusive, so two exports started together end up with the same key.
    """
    path = Path(path).expanduser()
    if not path.exists():
        _create_key(path)
        created = True
    else:
        created = False
    try:
        key = path.read_bytes()
    except OSError as error:
        raise DeepLiverError(f"{path}: cannot read the export key ({error.strerror})") from None
    if len(key) < MIN_KEY_BYTES:
        raise DeepLiverError(
            f"{path}: an export key needs at least {MIN_KEY_BYTES} bytes, it holds {len(key)}; "
            "restore the right key file (or remove it to make a new one: all pseudonyms change)"
        )
    return key, created


def _create_key(path: Path) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # another export made it first: use theirs
    except OSError as error:
        raise DeepLiverError(f"{path}: cannot create the export key ({error.strerror})") from None
    try:
        os.write(handle, os.urandom(KEY_BYTES))
        os.fsync(handle)
    finally:
        os.close(handle)


class Pseudonyms:
    """Every name and digest an export derives from original identifiers, under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise DeepLiverError(f"an export key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def of(self, text: str) -> str:
        """The 12-hex-character pseudonym of ``text``."""
        return hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]

    def case(self, series_uid: str) -> str:
        """``liver_<pseudonym>``: the case name of a series."""
        return CASE_PREFIX + self.of(series_uid)

    def patient(self, patient_id: str) -> str:
        return self.of(patient_id)

    def record(self, series_key: str, revision: int) -> str:
        """Which store revision a case came from, without naming the series."""
        return "rev-" + self.of(f"{series_key}/revision/{revision}")

    def digest(self, inputs: dict) -> str:
        """Keyed sha256 of the inputs of a case: equal inputs, equal digest, no UID revealed."""
        text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
        return hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()
