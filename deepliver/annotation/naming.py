"""Folder names in the annotation store, made only from UIDs and the scan's stand-in keys.

Nothing a person typed or a scanner wrote as free text (descriptions, patient IDs, reader
names) ever becomes part of a path. A path part is one of:

- a DICOM UID (VR UI): digits in dot-separated components, at most 64 characters;
- the scan's stand-in key for files without a Series Instance UID, ``NO-SERIES-UID-<hex>``;
- either of those with the scan's split suffix ``#n`` (extra stacks under one UID), written
  ``_n`` on disk since ``#`` is awkward in paths and URLs (``_`` never occurs in the others);
- ``NO-STUDY-UID`` for a series whose files carry no Study Instance UID.

Anything else is refused with a :class:`~deepliver.errors.DeepLiverError`, so ``..``, ``/``,
NUL and over-long strings cannot reach the file system through the store.
"""

from __future__ import annotations

import re

from deepliver.errors import DeepLiverError

UID_MAX_LENGTH = 64
NO_STUDY_UID = "NO-STUDY-UID"

_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_STAND_IN = re.compile(r"NO-SERIES-UID-[0-9a-f]{6,64}")
_SPLIT = re.compile(r"(?P<base>.+)#(?P<number>[1-9][0-9]{0,5})")


def is_uid(value: str) -> bool:
    """A syntactically valid DICOM UID: digits and single dots, 64 characters at most."""
    return (
        isinstance(value, str)
        and len(value) <= UID_MAX_LENGTH
        and _UID.fullmatch(value) is not None
    )


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def study_part(study_uid: str) -> str:
    """The folder name of a study: its UID, or ``NO-STUDY-UID`` when the files lack one."""
    if study_uid == "":
        return NO_STUDY_UID
    if not is_uid(study_uid):
        raise DeepLiverError(
            f"Study Instance UID {_shown(study_uid)} is not a valid DICOM UID (digits and dots, "
            f"at most {UID_MAX_LENGTH} characters); the store will not use it as a folder name"
        )
    return study_uid


def series_part(series_key: str) -> str:
    """The folder name of a series key: ``1.2.3`` -> ``1.2.3``, ``1.2.3#2`` -> ``1.2.3_2``."""
    if not isinstance(series_key, str):
        raise DeepLiverError(f"a series key must be text, got {_shown(series_key)}")
    split = _SPLIT.fullmatch(series_key)
    base, suffix = (split["base"], "_" + split["number"]) if split else (series_key, "")
    if not (is_uid(base) or _STAND_IN.fullmatch(base)):
        raise DeepLiverError(
            f"series key {_shown(series_key)} is neither a DICOM UID (digits and dots, at most "
            f"{UID_MAX_LENGTH} characters) nor a stand-in key of the scan (NO-SERIES-UID-<hex>, "
            "optionally #n); the store will not use it as a folder name"
        )
    return base + suffix


def key_matches_uid(series_key: str, series_uid: str) -> bool:
    """Whether ``series_key`` (from the scan) can name a series with this Series Instance UID."""
    split = _SPLIT.fullmatch(series_key)
    base = split["base"] if split else series_key
    if series_uid:
        return base == series_uid
    return _STAND_IN.fullmatch(base) is not None


def revision_stem(number: int) -> str:
    """``0001``, ``0002``, ... (wider past 9999, still sorting by number)."""
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise DeepLiverError(f"revision numbers start at 1, got {_shown(number)}")
    return f"{number:04d}"


REVISION_NAME = re.compile(r"(?P<number>[0-9]{4,9})\.(?P<kind>json|seg\.nrrd)")
