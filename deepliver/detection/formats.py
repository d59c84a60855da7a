"""Pascal VOC XML and YOLO text label files for tumor boxes (one class: ``tumor``).

VOC stores pixel-edge coordinates as integers; YOLO stores ``0 cx cy w h`` normalised by the
image width and height (6 decimals), read back rounded to pixel edges.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from deepliver.detection.boxes import Box2D
from deepliver.errors import DeepLiverError
from deepliver.io.atomic import write_atomically

CLASS_NAME = "tumor"


def write_voc(
    path: Path, filename: str, width: int, height: int, depth: int, boxes: list[Box2D]
) -> Path:
    """A VOC annotation; no boxes gives an annotation with no ``object`` (a negative slice)."""
    root = ElementTree.Element("annotation")
    _text(root, "filename", filename)
    size = ElementTree.SubElement(root, "size")
    for name, value in (("width", width), ("height", height), ("depth", depth)):
        _text(size, name, int(value))
    for box in boxes:
        item = ElementTree.SubElement(root, "object")
        _text(item, "name", CLASS_NAME)
        _text(item, "difficult", 0)
        bndbox = ElementTree.SubElement(item, "bndbox")
        for name in ("xmin", "ymin", "xmax", "ymax"):
            _text(bndbox, name, int(round(getattr(box, name))))
    ElementTree.indent(root)
    data = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
    return write_atomically(Path(path), lambda temporary: temporary.write_bytes(data))


def read_voc(path: Path) -> tuple[str, int, int, list[Box2D]]:
    """(filename, width, height, boxes) of a VOC annotation."""
    try:
        root = ElementTree.parse(path).getroot()
        size = root.find("size")
        width, height = int(size.findtext("width")), int(size.findtext("height"))
        boxes = [
            Box2D(*(int(item.find("bndbox").findtext(n)) for n in ("xmin", "ymin", "xmax", "ymax")))
            for item in root.iter("object")
        ]
    except (ElementTree.ParseError, AttributeError, TypeError, ValueError) as error:
        raise DeepLiverError(f"{path}: not a readable VOC annotation ({error})") from None
    return root.findtext("filename", ""), width, height, boxes


def write_yolo(path: Path, boxes: list[Box2D], width: int, height: int) -> Path:
    """One ``0 cx cy w h`` line per box; an empty file for a negative slice."""
    lines = [
        f"0 {(b.xmin + b.xmax) / 2 / width:.6f} {(b.ymin + b.ymax) / 2 / height:.6f} "
        f"{b.width / width:.6f} {b.height / height:.6f}\n"
        for b in boxes
    ]
    data = "".join(lines)
    return write_atomically(Path(path), lambda temporary: temporary.write_text(data))


def read_yolo(path: Path, width: int, height: int) -> list[Box2D]:
    """The boxes of a YOLO file in pixels, rounded to the nearest pixel edge."""
    boxes = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            _, cx, cy, w, h = (float(v) for v in line.split())
        except ValueError:
            raise DeepLiverError(f"{path}:{number}: expected 'class cx cy w h'") from None
        boxes.append(
            Box2D(
                round((cx - w / 2) * width),
                round((cy - h / 2) * height),
                round((cx + w / 2) * width),
                round((cy + h / 2) * height),
            )
        )
    return boxes


def _text(parent: ElementTree.Element, tag: str, value) -> None:
    ElementTree.SubElement(parent, tag).text = str(value)
