"""The Python packages DeepLiver needs inside Slicer, installed on first use after asking.

``Resources/requirements-slicer.txt`` lists them. :func:`plan_install` decides, without Slicer,
what to do with each line: torch and torchvision go to the PyTorch extension's
``PyTorchUtilsLogic.installTorch`` (it picks the build that fits the GPU driver); packages that
Slicer ships (numpy, scipy, SimpleITK, pydicom, ...) are never installed or replaced, a version
that does not fit is only reported; the rest go to ``slicer.util.pip_install``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from DeepLiverSlicer import RESOURCES

REQUIREMENTS_FILE = RESOURCES / "requirements-slicer.txt"

# Packages that come with Slicer itself (SuperBuild/External_python-*.cmake, SimpleITK): pip
# must not replace them, or Slicer's own modules may break.
SLICER_OWNED = frozenset(
    {"numpy", "scipy", "simpleitk", "pydicom", "vtk", "pillow", "packaging", "requests", "pip"}
)
# Installed through the PyTorch extension, which picks the CUDA build that fits the driver.
TORCH_PACKAGES = frozenset({"torch", "torchvision"})

# Where an import name differs from the distribution name (to find what is already imported).
IMPORT_NAMES = {"pylibjpeg-openjpeg": "openjpeg", "simpleitk": "SimpleITK"}


def canonical_name(name: str) -> str:
    """PEP 503 normalised name: 'pylibjpeg_OpenJPEG' -> 'pylibjpeg-openjpeg'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """The requirement lines of a requirements file, without comments and pip options."""
    lines = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            lines.append(line)
    return lines


@dataclass
class InstallPlan:
    """What to do so that the requirements are met."""

    pip: list[str] = field(default_factory=list)  # requirement lines for slicer.util.pip_install
    torch: dict[str, str] = field(default_factory=dict)  # name -> version specifier, PyTorchUtils
    slicer_owned: list[str] = field(default_factory=list)  # Slicer's packages that do not fit

    @property
    def installs(self) -> bool:
        return bool(self.pip or self.torch)

    def describe(self) -> str:
        parts = []
        if self.pip:
            parts.append("Python packages: " + ", ".join(self.pip))
        if self.torch:
            parts.append(
                "PyTorch (through the PyTorch extension): "
                + ", ".join(f"{name}{spec}" for name, spec in self.torch.items())
            )
        return "\n".join(parts)


def plan_install(
    requirements: Iterable[str],
    installed: Mapping[str, str | None],
    need_torch: bool = True,
) -> InstallPlan:
    """Sort unmet requirements into pip installs, PyTorch installs and Slicer-owned conflicts.

    ``installed`` maps canonical names to installed versions (None or absent: not installed).
    Lines whose environment marker does not apply are skipped; torch lines are skipped unless
    ``need_torch``.
    """
    from packaging.requirements import Requirement

    installed = {canonical_name(k): v for k, v in installed.items()}
    plan = InstallPlan()
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonical_name(requirement.name)
        version = installed.get(name)
        satisfied = version is not None and requirement.specifier.contains(
            version, prereleases=True
        )
        if satisfied:
            continue
        if name in SLICER_OWNED:
            have = f"{version}" if version else "missing"
            plan.slicer_owned.append(f"{requirement.name} {have} (DeepLiver needs {line})")
        elif name in TORCH_PACKAGES:
            if need_torch:
                plan.torch[name] = str(requirement.specifier)
        else:
            plan.pip.append(line)
    return plan


def already_imported(names: Iterable[str], modules: Mapping[str, object]) -> list[str]:
    """Which of these distributions are imported already (an update then needs a restart)."""
    found = []
    for name in names:
        canonical = canonical_name(name)
        module = IMPORT_NAMES.get(canonical, canonical.replace("-", "_"))
        if module in modules:
            found.append(name)
    return found


def installed_versions(requirements: Iterable[str]) -> dict[str, str | None]:
    """Installed versions of the requirements' distributions in this Python."""
    import contextlib
    import importlib
    from importlib import metadata

    from packaging.requirements import Requirement

    versions: dict[str, str | None] = {}
    for line in requirements:
        name = canonical_name(Requirement(line).name)
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
            # Slicer builds some packages itself (SimpleITK) without pip metadata.
            module = IMPORT_NAMES.get(name, name.replace("-", "_"))
            with contextlib.suppress(ImportError, AttributeError):
                versions[name] = str(importlib.import_module(module).__version__)
    return versions


# --- Slicer ------------------------------------------------------------------------------


def ensure_dependencies(need_torch: bool = False, ask: bool = True) -> bool:
    """Install what is missing (asking first); True when everything needed is there.

    In Slicer's testing mode nothing is asked (as PyTorchUtils does): the self-tests need the
    packages of the core's background commands.
    """
    import slicer

    requirements = read_requirements()
    plan = plan_install(requirements, installed_versions(requirements), need_torch)
    if plan.slicer_owned:
        slicer.util.warningDisplay(
            "These packages come with Slicer and are not replaced by DeepLiver, but their "
            "version does not fit:\n\n"
            + "\n".join(plan.slicer_owned)
            + "\n\nSome DeepLiver features may fail; a newer Slicer may ship fitting versions.",
            windowTitle="DeepLiver",
        )
    if not plan.installs:
        return True
    ask = ask and not slicer.app.testingEnabled()
    if plan.pip:
        if ask and not slicer.util.confirmOkCancelDisplay(
            "DeepLiver needs to download and install these Python packages into Slicer "
            f"(a few minutes):\n\n{plan.describe()}\n\nInstall now?",
            windowTitle="DeepLiver",
        ):
            return False
        import qt

        slicer.app.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            slicer.util.pip_install(plan.pip)
        except Exception as error:  # noqa: BLE001 - pip's failure shown to the user
            slicer.util.errorDisplay(
                f"Installing {', '.join(plan.pip)} failed: {error}", windowTitle="DeepLiver"
            )
            return False
        finally:
            slicer.app.restoreOverrideCursor()
    if plan.torch and not _install_torch(plan.torch, ask):
        return False
    _offer_restart(list(plan.pip) + list(plan.torch))
    return True


def _install_torch(torch_requirements: dict[str, str], ask: bool) -> bool:
    import slicer

    try:
        import PyTorchUtils  # the PyTorch extension's module (EXTENSION_DEPENDS PyTorch)
    except ImportError:
        slicer.util.errorDisplay(
            "DeepLiver needs PyTorch, installed through the PyTorch extension. Install the "
            "'PyTorch' extension from the Extensions Manager, restart Slicer and try again.",
            windowTitle="DeepLiver",
        )
        return False
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=ask,
        torchVersionRequirement=torch_requirements.get("torch") or None,
        torchvisionVersionRequirement=torch_requirements.get("torchvision") or None,
    )
    return torch is not None


def _offer_restart(installed_names: list[str]) -> None:
    import slicer

    stale = already_imported(installed_names, sys.modules)
    if not stale:
        return
    if slicer.app.testingEnabled():
        return
    if slicer.util.confirmYesNoDisplay(
        "These packages were updated while an older version was already loaded: "
        + ", ".join(stale)
        + ". Slicer must restart before DeepLiver can use them. Restart now?",
        windowTitle="DeepLiver",
    ):
        slicer.util.restart()
