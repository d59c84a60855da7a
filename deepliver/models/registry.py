"""The model registry: the bundled models (read-only) plus the user's, one folder per model.

The user folder (``$DEEPLIVER_USER_MODELS``, default ``~/.deepliver/models``) holds one
sub-folder per model, named ``<name>-<version>``; the card inside decides both. Models are added
only after their card, sha256 and weights have been checked, and appear at once (copied into a
hidden sibling, then renamed), so a reader never sees half a model. Bundled models are searched
first, so a user model never silently replaces what the checkout ships.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from deepliver.errors import DeepLiverError
from deepliver.models.card import (
    CARD_FILE,
    MODELS_ENV,
    ModelCard,
    bundled_models_dir,
    load_card,
    load_model,
    verify_weights,
)

USER_MODELS_ENV = "DEEPLIVER_USER_MODELS"
BUNDLED = "bundled"
USER = "user"


@dataclass(frozen=True)
class RegistryEntry:
    """One model folder: its card, or why the card could not be read (``problem``)."""

    folder: Path
    where: str  # BUNDLED | USER
    card: ModelCard | None = None
    problem: str = ""

    def matches(self, name: str) -> bool:
        """Named by its folder, or (when readable) by its card."""
        return self.folder.name == name or (self.card is not None and self.card.name == name)


@dataclass(frozen=True)
class Registry:
    """Every model folder found, bundled first; ``problems`` are folders that cannot be
    searched at all (a missing bundled folder)."""

    entries: tuple[RegistryEntry, ...]
    problems: tuple[tuple[Path, str], ...] = ()

    @property
    def models(self) -> list[RegistryEntry]:
        return [entry for entry in self.entries if entry.card is not None]

    @property
    def broken(self) -> list[RegistryEntry]:
        return [entry for entry in self.entries if entry.card is None]


def user_models_dir() -> Path:
    """``$DEEPLIVER_USER_MODELS``, or ``~/.deepliver/models``; it need not exist yet."""
    override = os.environ.get(USER_MODELS_ENV)
    return Path(override) if override else Path.home() / ".deepliver" / "models"


def scan(root: Path, where: str) -> list[RegistryEntry]:
    """The model folders under ``root`` (hidden ones are half-written adds and skipped)."""
    if not root.is_dir():
        return []
    entries = []
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not (folder / CARD_FILE).is_file():
            continue
        try:
            entries.append(RegistryEntry(folder, where, card=load_card(folder)))
        except DeepLiverError as error:
            entries.append(RegistryEntry(folder, where, problem=str(error)))
    return entries


def load_registry() -> Registry:
    """The bundled models, then the user's; a missing bundled folder is a problem, not fatal."""
    entries: list[RegistryEntry] = []
    problems: list[tuple[Path, str]] = []
    try:
        entries += scan(bundled_models_dir(), BUNDLED)
    except DeepLiverError as error:
        problems.append((_bundled_path(), str(error)))
    entries += scan(user_models_dir(), USER)
    return Registry(tuple(entries), tuple(problems))


def _bundled_path() -> Path:
    """Where the bundled models were looked for (for a problem record; the error says why)."""
    override = os.environ.get(MODELS_ENV)
    return (
        Path(override) if override else Path(__file__).resolve().parents[2] / "Resources" / "Models"
    )


def version_key(version: str) -> tuple:
    """Sort key for versions: PEP 440 when it parses (``0.10.0`` > ``0.9.1``), else the numbers
    in it; PEP 440 versions sort above the others."""
    try:
        return (1, Version(version), version)
    except InvalidVersion:
        return (0, tuple(int(part) for part in re.findall(r"\d+", version)), version)


# --- the searches card.find_model and card.list_models use -----------------------------------


def registered_cards() -> list[ModelCard]:
    """Every readable card, bundled first. A missing bundled folder or a broken bundled card
    raises (the checkout is broken); a broken user card is skipped (``deepliver models list``
    shows it) so one bad download does not hide every other model."""
    bundled = scan(bundled_models_dir(), BUNDLED)
    for entry in bundled:
        if entry.card is None:
            raise DeepLiverError(entry.problem)
    users = [entry for entry in scan(user_models_dir(), USER) if entry.card is not None]
    return [entry.card for entry in bundled + users]


def find_registered(name: str) -> Path:
    """The folder of model ``name`` (folder or card name): bundled first, then the user's, where
    the highest version wins when several have that name."""
    registry = load_registry()
    for entry in registry.models:
        if entry.where == BUNDLED and entry.matches(name):
            return entry.folder
    users = [entry for entry in registry.models if entry.where == USER]
    exact = [entry for entry in users if entry.folder.name == name]
    if exact:
        return exact[0].folder
    named = [entry for entry in users if entry.card.name == name]
    if named:
        return max(named, key=lambda entry: version_key(entry.card.version)).folder
    raise DeepLiverError(_not_found(name, registry))


def _not_found(name: str, registry: Registry) -> str:
    names = ", ".join(sorted({entry.card.name for entry in registry.models})) or "none"
    searched = f"{_describe_bundled(registry)} or {user_models_dir()}"
    message = f"model {name!r} not found in {searched} (available: {names})"
    unreadable = [str(entry.folder) for entry in registry.broken]
    unreadable += [text for _, text in registry.problems]
    if unreadable:
        message += f"; could not read: {'; '.join(unreadable)}"
    return message


def _describe_bundled(registry: Registry) -> str:
    try:
        return str(bundled_models_dir())
    except DeepLiverError:
        return "the bundled models"


# --- add, verify, remove ---------------------------------------------------------------------


def check_model(folder: Path | str) -> ModelCard:
    """The card of ``folder`` after every check a model must pass: the card validates, the
    weights match its sha256, and they load into the network the card describes."""
    folder = Path(folder)
    card = load_card(folder)
    verify_weights(folder, card)
    load_model(folder)
    return card


def add_model(source: Path | str) -> RegistryEntry:
    """Copy the checked model folder ``source`` into the user folder as ``<name>-<version>``.
    Refused when a model with the same name and version is registered already."""
    source = Path(source)
    card = check_model(source)
    target = user_models_dir() / _folder_name(card)
    _refuse_duplicate(card, source, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _copy_atomically(source, target, card)
    return RegistryEntry(target, USER, card=card)


def _folder_name(card: ModelCard) -> str:
    name = f"{card.name}-{card.version}"
    if name.startswith(".") or any(sep and sep in name for sep in (os.sep, os.altsep, "\0")):
        raise DeepLiverError(
            f"model name {card.name!r} / version {card.version!r} cannot name a folder"
        )
    return name


def _refuse_duplicate(card: ModelCard, source: Path, target: Path) -> None:
    for entry in load_registry().models:
        if entry.card.name == card.name and entry.card.version == card.version:
            raise DeepLiverError(
                f"model {card.name} version {card.version} is already registered "
                f"({entry.where}: {entry.folder}); refusing to add {source} (change the card's "
                "version to add it as a new one)"
            )
    if target.exists():
        raise DeepLiverError(f"refusing to add model {card.name}: {target} already exists")


def _copy_atomically(source: Path, target: Path, card: ModelCard) -> None:
    """Copy into a hidden sibling of ``target``, check the copy, then rename it into place."""
    temporary = Path(
        tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    )
    try:
        shutil.copytree(source, temporary, dirs_exist_ok=True)
        verify_weights(temporary, card)  # the source did not change while it was copied
        os.rename(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def verify_entry(entry: RegistryEntry) -> str:
    """Why ``entry`` fails (sha256, then loadability), or "" when it is sound."""
    if entry.card is None:
        return entry.problem
    try:
        check_model(entry.folder)
    except DeepLiverError as error:
        return str(error)
    return ""


def select(registry: Registry, name: str, version: str | None = None) -> list[RegistryEntry]:
    """Entries named ``name`` (folder or card name), of ``version`` when given."""
    return [
        entry
        for entry in registry.entries
        if entry.matches(name)
        and (version is None or (entry.card is not None and entry.card.version == version))
    ]


def remove_model(name: str, version: str | None = None) -> RegistryEntry:
    """Delete the user model ``name``; bundled models are read-only, and with several versions
    ``version`` must say which."""
    registry = load_registry()
    matches = select(registry, name, version)
    users = [entry for entry in matches if entry.where == USER]
    if not users:
        raise DeepLiverError(_nothing_to_remove(name, version, matches))
    if len(users) > 1:
        versions = ", ".join(_version_of(entry) for entry in users)
        raise DeepLiverError(
            f"several user models are called {name!r} (versions {versions}); "
            "say which with --version"
        )
    _delete(users[0].folder)
    return users[0]


def _nothing_to_remove(name: str, version: str | None, matches: list[RegistryEntry]) -> str:
    what = f"{name!r}" + (f" version {version}" if version else "")
    if matches:
        return f"model {what} is bundled and read-only ({matches[0].folder}); refusing to remove it"
    return f"no user model {what} in {user_models_dir()}"


def _version_of(entry: RegistryEntry) -> str:
    return entry.card.version if entry.card is not None else f"unreadable {entry.folder.name}"


def _delete(folder: Path) -> None:
    """Rename out of sight first, so a half-deleted folder is never listed as a model."""
    hidden = folder.with_name(f".{folder.name}.removing")
    shutil.rmtree(hidden, ignore_errors=True)
    os.rename(folder, hidden)
    shutil.rmtree(hidden)
