"""The Slicer modules' files, checked without Slicer: they compile, their .ui files name the
widgets the code looks up, their CMake lists name files that exist, their icons are there."""

import ast
import py_compile
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("DeepLiverReview", "DeepLiverInference", "DeepLiverTraining")
SLICER_PYTHON = sorted(
    path
    for folder in (*MODULES, "DeepLiverSlicer", "Utilities")
    for path in (ROOT / folder).rglob("*.py")
)
# Widgets, their slots and the self-test; the logic lives in deepliver/ and DeepLiverSlicer/.
# 400: the Review module wires some twenty widgets (worklist, structures, embedded Segment
# Editor, save) and its self-test runs the whole review flow on a temporary DICOM database.
MAX_MODULE_LINES = 400


@pytest.mark.parametrize("path", SLICER_PYTHON, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_files_compile(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


def _module_tree(module: str) -> ast.Module:
    return ast.parse((ROOT / module / f"{module}.py").read_text(encoding="utf-8"))


def _ui_widgets(module: str) -> dict[str, ET.Element]:
    root = ET.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui").getroot()
    return {w.get("name"): w for w in root.iter("widget")}


@pytest.mark.parametrize("module", MODULES)
def test_module_has_the_template_classes(module):
    classes = {
        node.name: node for node in _module_tree(module).body if isinstance(node, ast.ClassDef)
    }
    expected = {
        module: "ScriptedLoadableModule",
        f"{module}Widget": "ScriptedLoadableModuleWidget",
        f"{module}Logic": "ScriptedLoadableModuleLogic",
        f"{module}Test": "ScriptedLoadableModuleTest",
    }
    for name, base in expected.items():
        assert name in classes, f"{module}.py lacks class {name}"
        assert base in [ast.unparse(b) for b in classes[name].bases]
    wrapped = [
        c for c in classes.values() if "parameterNodeWrapper" in map(ast.unparse, c.decorator_list)
    ]
    assert len(wrapped) == 1, "one @parameterNodeWrapper class per module"
    source = (ROOT / module / f"{module}.py").read_text(encoding="utf-8")
    assert f'self.loadModuleUI("{module}")' in source  # Resources/UI/<module>.ui
    assert 'self.parent.categories = ["DeepLiver"]' in source
    assert len(source.splitlines()) <= MAX_MODULE_LINES, "move logic into the core or the glue"


@pytest.mark.parametrize("module", MODULES)
def test_ui_file_names_the_widgets_the_module_uses(module):
    widgets = _ui_widgets(module)
    root = ET.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui").getroot()
    top = root.find("widget")
    assert (top.get("class"), top.get("name")) == ("qMRMLWidget", module)
    source = (ROOT / module / f"{module}.py").read_text(encoding="utf-8")
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    assert used, "the module looks up no widget"
    assert used <= set(widgets), f"not in {module}.ui: {sorted(used - set(widgets))}"
    # Every widget bound to the parameter node names a parameter of the wrapper class.
    tree = _module_tree(module)
    wrapper = next(
        c
        for c in tree.body
        if isinstance(c, ast.ClassDef)
        and "parameterNodeWrapper" in map(ast.unparse, c.decorator_list)
    )
    parameters = {s.target.id for s in wrapper.body if isinstance(s, ast.AnnAssign)}
    bound = {
        p.find("string").text
        for w in widgets.values()
        for p in w.findall("property")
        if p.get("name") == "SlicerParameterName"
    }
    assert bound and bound <= parameters, f"unknown parameters {sorted(bound - parameters)}"
    # Node selectors get the scene from the module widget.
    declared = {c.find("class").text for c in root.iter("customwidget")}
    used_classes = {w.get("class") for w in widgets.values()}
    assert {c for c in used_classes if c.startswith(("qMRML", "ctk"))} <= declared
    receivers = {c.find("receiver").text for c in root.iter("connection")}
    combos = {n for n, w in widgets.items() if w.get("class") == "qMRMLNodeComboBox"}
    assert combos <= receivers


def _cmake_list(text: str, variable: str, module: str) -> list[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"no set({variable} ...)"
    return [item.replace("${MODULE_NAME}", module) for item in match.group(1).split()]


@pytest.mark.parametrize("module", MODULES)
def test_module_cmake_lists_existing_files(module):
    text = (ROOT / module / "CMakeLists.txt").read_text(encoding="utf-8")
    assert f"set(MODULE_NAME {module})" in text
    for variable in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"):
        for item in _cmake_list(text, variable, module):
            assert (ROOT / module / item).is_file(), f"{module}/CMakeLists.txt: {item} missing"
    assert "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_extension_cmake():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "project(DeepLiver)" in text
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in text
    for line in (
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
        "include(${Slicer_EXTENSION_CPACK})",
    ):
        assert line in text
    for module in MODULES:
        assert f"add_subdirectory({module})" in text
    for item in _cmake_list(text, "DeepLiver_PACKAGE_RESOURCES", ""):
        if item.startswith("${"):  # a globbed list, e.g. the bundled models
            continue
        assert (ROOT / item).is_file(), f"CMakeLists.txt: {item} missing"
    # The installed packages find their resources where the source checkout keeps them.
    installed = set(_cmake_list(text, "DeepLiver_PACKAGE_RESOURCES", ""))
    for schema in (ROOT / "deepliver" / "resources").glob("*.json"):
        assert str(schema.relative_to(ROOT)) in installed, f"{schema.name} is not installed"
    assert "Resources/Models/*/weights.pt" in text and "Resources/Models/*/model.json" in text


@pytest.mark.parametrize(
    "path", ["DeepLiver.png", *(f"{m}/Resources/Icons/{m}.png" for m in MODULES)]
)
def test_icons_are_128_pixel_pngs(path):
    image = sitk.ReadImage(str(ROOT / path))
    assert image.GetSize() == (128, 128)
    assert image.GetNumberOfComponentsPerPixel() == 4
