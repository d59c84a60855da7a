"""`deepliver slices`: tumor boxes, VOC/YOLO files, the patient split and the exported dataset."""

import hashlib
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import deepliver
from geometry_helpers import stored_as
from PIL import Image

from deepliver.datasets import Case
from deepliver.detection.boxes import Box2D, boxes_from_mask
from deepliver.detection.formats import read_voc, read_yolo, write_voc, write_yolo
from deepliver.detection.slices import export_slices, split_cases
from deepliver.errors import DeepLiverError
from deepliver.io.image_files import write_image
from deepliver.volume import Volume


def round_trip(tmp_path: Path, boxes, width: int, height: int) -> tuple[list, list]:
    voc, yolo = tmp_path / "a.xml", tmp_path / "a.txt"
    write_voc(voc, "a.png", width, height, 1, boxes)
    write_yolo(yolo, boxes, width, height)
    filename, read_width, read_height, voc_boxes = read_voc(voc)
    assert (filename, read_width, read_height) == ("a.png", width, height)
    return voc_boxes, read_yolo(yolo, width, height)


def volumes(shape=(6, 17, 21), tumor_slices=(2, 3)) -> tuple[Volume, Volume]:
    """CT (z, y, x) of 40 HU with a liver block on slices 1..4 and tumor squares on some."""
    ct = np.full(shape, -1000, dtype=np.int16)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[1:5, 3:14, 4:18] = 1
    ct[1:5, 3:14, 4:18] = 40
    for z in tumor_slices:
        labels[z, 5:8, 6:10] = 2
    return Volume.from_array(ct), Volume.from_array(labels)


def memory_case(name: str, **kwargs) -> Case:
    return Case(name, lambda: volumes(**kwargs))


def write_case_folder(folder: Path, name: str, **kwargs) -> None:
    ct, labels = volumes(**kwargs)
    write_image(ct, folder / name / "ct.nii.gz")
    write_image(labels, folder / name / "labels.nii.gz")


def voc_objects(path: Path) -> int:
    return len(ElementTree.parse(path).getroot().findall("object"))


# --- boxes and formats ---------------------------------------------------------------------


def test_one_pixel_lesion_gives_a_1x1_box_in_voc_and_yolo(tmp_path):
    mask = np.zeros((9, 11), dtype=bool)
    mask[4, 7] = True
    boxes = boxes_from_mask(mask)
    assert boxes == [Box2D(7, 4, 8, 5)]
    assert (boxes[0].width, boxes[0].height, boxes[0].area) == (1, 1, 1)
    voc_boxes, yolo_boxes = round_trip(tmp_path, boxes, 11, 9)
    assert voc_boxes == yolo_boxes == boxes
    cx, cy, w, h = map(float, (tmp_path / "a.txt").read_text().split()[1:])
    assert w == pytest.approx(1 / 11, abs=1e-6) and h == pytest.approx(1 / 9, abs=1e-6)
    assert (cx, cy) == (pytest.approx(7.5 / 11, abs=1e-6), pytest.approx(4.5 / 9, abs=1e-6))


def test_boxes_at_the_image_border_are_exact_and_inside(tmp_path):
    mask = np.zeros((13, 15), dtype=np.uint8)
    mask[2:6, 0:3] = 1  # touches column 0
    mask[10:13, 9:15] = 1  # touches the last row and the last column
    boxes = boxes_from_mask(mask)
    assert boxes == [Box2D(0, 2, 3, 6), Box2D(9, 10, 15, 13)]
    for box in boxes:
        assert 0 <= box.xmin < box.xmax <= 15 and 0 <= box.ymin < box.ymax <= 13
    voc_boxes, yolo_boxes = round_trip(tmp_path, boxes, 15, 13)
    assert voc_boxes == yolo_boxes == boxes
    for line in (tmp_path / "a.txt").read_text().splitlines():
        cx, cy, w, h = map(float, line.split()[1:])
        assert cx - w / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6
        assert cy - h / 2 >= -1e-6 and cy + h / 2 <= 1 + 1e-6


def test_two_lesions_give_two_boxes_and_one_component_one_box():
    two = np.zeros((20, 20), dtype=bool)
    two[2:5, 2:5] = True
    two[10:12, 14:18] = True
    assert boxes_from_mask(two) == [Box2D(2, 2, 5, 5), Box2D(14, 10, 18, 12)]
    one = np.zeros((20, 20), dtype=bool)
    one[2:12, 3] = True  # an L shape: one component
    one[11, 3:9] = True
    one[12, 9] = True  # touching diagonally: still the same component
    assert boxes_from_mask(one) == [Box2D(3, 2, 10, 13)]
    assert boxes_from_mask(np.zeros((5, 5), dtype=bool)) == []


def test_voc_and_yolo_round_trip_on_odd_image_sizes(tmp_path):
    rng = np.random.default_rng(3)
    for height, width in ((37, 23), (101, 255), (511, 333)):
        mask = rng.random((height, width)) > 0.97
        boxes = boxes_from_mask(mask)
        assert len(boxes) > 3
        voc_boxes, yolo_boxes = round_trip(tmp_path, boxes, width, height)
        assert voc_boxes == boxes
        assert yolo_boxes == boxes


# --- split ---------------------------------------------------------------------------------


def test_split_is_by_patient_reproducible_and_seeded():
    names = [f"case-{n:02d}" for n in range(20)]
    first = split_cases(names, (0.7, 0.15, 0.15), seed=5)
    assert first == split_cases(names, (0.7, 0.15, 0.15), seed=5)
    assert first != split_cases(names, (0.7, 0.15, 0.15), seed=6)
    assert [len(first[s]) for s in ("train", "valid", "test")] == [14, 3, 3]
    together = first["train"] + first["valid"] + first["test"]
    assert sorted(together) == names  # every case once, none in two splits


def test_split_of_few_patients_and_refusal_of_one():
    assert [len(p) for p in split_cases(["a", "b"], (0.7, 0.15, 0.15), 0).values()] == [1, 0, 1]
    assert [len(p) for p in split_cases(["a", "b", "c"], (0.7, 0.15, 0.15), 0).values()] == [
        1,
        1,
        1,
    ]
    with pytest.raises(DeepLiverError, match="cannot split 1 patient.*train and test"):
        split_cases(["only"], (0.7, 0.15, 0.15), 0)
    with pytest.raises(DeepLiverError, match="cannot split 0 patient"):
        split_cases([], (0.7, 0.15, 0.15), 0)


# --- export --------------------------------------------------------------------------------


def test_case_without_tumor_gives_present_empty_label_files(tmp_path):
    data = tmp_path / "data"
    write_case_folder(data, "sick", tumor_slices=(2,))
    write_case_folder(data, "healthy", tumor_slices=())
    out = tmp_path / "out"
    deepliver("slices", data, "-o", out, "--negatives", "100", "--split", "1", "0", "1")
    manifest = json.loads((out / "manifest.json").read_text())
    assert "valid is empty" not in " ".join(manifest["notes"])  # valid was asked to be empty
    healthy_split = next(s for s, names in manifest["splits"].items() if "healthy" in names)
    images = sorted((out / healthy_split / "images").glob("healthy_*.png"))
    assert [p.stem for p in images] == [f"healthy_{z:04d}" for z in range(1, 5)]  # liver only
    for image in images:
        yolo = out / healthy_split / "yolo" / f"{image.stem}.txt"
        voc = out / healthy_split / "voc" / f"{image.stem}.xml"
        assert yolo.is_file() and yolo.read_text() == ""
        assert voc.is_file() and voc_objects(voc) == 0
        pixels = np.asarray(Image.open(image))
        assert pixels.shape == (17, 21)  # native in-plane size (y, x)
        assert pixels[8, 10] == 102  # 40 HU in [-100, 250]: round(140 / 350 * 255)
        assert pixels[0, 0] == 0
    sick_split = next(s for s, names in manifest["splits"].items() if "sick" in names)
    assert sick_split != healthy_split
    assert read_yolo(out / sick_split / "yolo" / "sick_0002.txt", 21, 17) == [Box2D(6, 5, 10, 8)]


def test_a_ras_or_sagittal_case_exports_the_same_axial_slices(tmp_path):
    """Slices are axial and in the radiological view whatever order the files stored."""

    def exported(name, order, flips):
        def load():
            return tuple(stored_as(v, order, flips) for v in volumes(tumor_slices=(2,)))

        cases = [Case(f"p{n}", load) for n in range(2)]
        export_slices(cases, tmp_path / name, formats=("yolo",), seed=1, negatives=1.0)
        return {
            p.relative_to(tmp_path / name).as_posix(): p.read_bytes()
            for p in sorted((tmp_path / name).rglob("*"))
            if p.suffix in (".png", ".txt")
        }

    plain = exported("plain", (0, 1, 2), (False, False, False))
    assert any(name.endswith("_0002.txt") and data for name, data in plain.items())
    assert exported("ras", (0, 1, 2), (True, True, False)) == plain
    assert exported("sagittal", (2, 0, 1), (False, True, True)) == plain


def test_rerun_replaces_a_previous_export(tmp_path):
    cases = [memory_case(f"p{n}") for n in range(4)]
    out = tmp_path / "out"
    first = export_slices(cases, out, formats=("yolo",), seed=1, negatives=1.0)
    second = export_slices(cases, out, formats=("voc",), seed=2, negatives=1.0)
    assert first["splits"] != second["splits"]
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    listed = {f["path"] for f in second["files"]}
    assert written == listed | {"classes.txt", "dataset.yaml", "README.md", "manifest.json"}
    assert [p.name for p in out.rglob("*.txt")] == ["classes.txt"]  # no YOLO file of run one


def test_non_empty_folder_that_is_not_an_export_is_refused_untouched(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = deepliver("slices", "phantom:2", "--size", "32", "32", "12", "-o", out, expect=1)
    assert "not empty and not a previous `deepliver slices` export" in result.stderr
    assert str(out) in result.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"


def test_cli_end_to_end_on_phantoms(tmp_path):
    out = tmp_path / "out"
    result = deepliver("slices", "phantom:3", "--size", "64", "64", "24", "-o", out)
    assert "box(es)" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and (out / "classes.txt").read_text() == "tumor\n"
    yaml = (out / "dataset.yaml").read_text()
    assert "train: train/images" in yaml and "names: [tumor]" in yaml
    assert "-100" in (out / "README.md").read_text()
    names = [n for split in manifest["splits"].values() for n in split]
    assert sorted(names) == ["phantom-1000", "phantom-1001", "phantom-1002"]  # training seeds
    case_split = {n: s for s, split in manifest["splits"].items() for n in split}
    for kind, suffix in (("images", ".png"), ("voc", ".xml"), ("yolo", ".txt")):
        on_disk = {p.relative_to(out).as_posix() for p in out.glob(f"*/{kind}/*{suffix}")}
        assert on_disk == {f["path"] for f in manifest["files"] if f["path"].endswith(suffix)}
    for entry in manifest["files"]:
        path = out / entry["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert entry["path"].startswith(f"{case_split[entry['case']]}/")  # the case's split
        assert path.stem == f"{entry['case']}_{entry['slice']:04d}"
        if path.suffix == ".txt":
            assert len(path.read_text().splitlines()) == entry["boxes"]
        if path.suffix == ".xml":
            assert voc_objects(path) == entry["boxes"]
        if path.suffix == ".png":
            image = Image.open(path)
            assert (image.size, image.mode) == ((64, 64), "L")
    images = [f for f in manifest["files"] if f["path"].endswith(".png")]
    positives = sum(f["boxes"] > 0 for f in images)
    negatives = len(images) - positives
    assert positives > 0
    assert abs(negatives - 0.5 * positives) <= 1
    summary = manifest["summary"]
    assert sum(s["slices"] for s in summary.values()) == len(images)
    assert sum(s["boxes"] for s in summary.values()) == sum(f["boxes"] for f in images)


def test_cli_three_channels_and_one_format(tmp_path):
    out = tmp_path / "out"
    deepliver(
        "slices", "phantom:2", "--size", "48", "40", "16", "--channels", "3", "--format", "yolo",
        "-o", out,
    )  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["valid"] == [] and manifest["notes"]  # 2 patients: say so
    assert not list(out.glob("*/voc"))
    pngs = list(out.glob("*/images/*.png"))
    assert pngs and len(list(out.glob("*/yolo/*.txt"))) == len(pngs)
    image = Image.open(pngs[0])
    assert (image.size, image.mode) == ((48, 40), "RGB")
    assert np.asarray(image).shape == (40, 48, 3)


def test_three_channels_are_the_neighbouring_slices_with_edges_repeated(tmp_path):
    def load():
        ct = np.zeros((3, 5, 7), dtype=np.int16)
        ct[0], ct[1], ct[2] = -100, 75, 250  # 0, 127.5 -> 128, 255
        labels = np.ones((3, 5, 7), dtype=np.uint8)
        labels[:, 2, 3] = 2
        return Volume.from_array(ct), Volume.from_array(labels)

    cases = [Case("a", load), Case("b", load)]
    manifest = export_slices(cases, tmp_path / "out", channels=3, negatives=0.0)
    assert all(f["boxes"] == 1 for f in manifest["files"])
    case = manifest["splits"]["train"][0]
    folder = tmp_path / "out" / "train" / "images"
    first = np.asarray(Image.open(folder / f"{case}_0000.png"))
    last = np.asarray(Image.open(folder / f"{case}_0002.png"))
    assert first[0, 0].tolist() == [0, 0, 128]
    assert last[0, 0].tolist() == [128, 255, 255]
