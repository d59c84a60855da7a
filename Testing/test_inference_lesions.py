"""Lesion table and summary, on phantom truth and on spheres of known size."""

import csv
import json

import numpy as np
import pytest
from conftest import rotation
from geometry_helpers import stored_as
from scipy import ndimage

from deepliver.annotation.segmentation import lesion_labels, lesion_masks
from deepliver.inference.lesions import (
    lesion_table,
    longest_axial_diameter,
    read_lesion_json,
    summary,
    write_lesion_table,
    write_summary,
)
from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.volume import Grid, Volume


@pytest.fixture(scope="module")
def phantom():
    spec = PhantomSpec(seed=7, size=(64, 64, 24), n_tumors=(3, 5), tumor_diameter_mm=(12, 40))
    return make_phantom(spec)


def sphere(grid: Grid, centre_ijk, diameter_mm: float) -> tuple[Volume, Volume, np.ndarray]:
    """Labels (liver everywhere, tumor inside the sphere) and a CT whose HU vary by voxel."""
    centre = grid.index_to_physical(centre_ijk)
    k, j, i = np.indices(grid.shape)
    points = grid.index_to_physical(np.stack([i, j, k], axis=-1))
    inside = np.linalg.norm(points - centre, axis=-1) <= diameter_mm / 2
    labels = np.where(inside, 2, 1).astype(np.uint8)
    ct = (np.arange(np.prod(grid.shape)) % 97 - 20).reshape(grid.shape).astype(np.int16)
    return Volume(labels, grid), Volume(ct, grid), centre


def test_lesions_are_the_truths_connected_components(phantom):
    labels, ct = phantom.labels, phantom.ct
    masks = lesion_masks(labels.array == 2)
    lesions = lesion_table(labels, ct)
    components = ndimage.label(labels.array == 2, structure=np.ones((3, 3, 3)))[1]
    assert len(lesions) == components == len(masks) >= 2
    voxel_ml = float(np.prod(labels.spacing)) / 1000
    for lesion, mask in zip(lesions, masks, strict=True):  # same numbering as the segments
        assert lesion.voxels == mask.sum()
        assert lesion.volume_ml == pytest.approx(mask.sum() * voxel_ml)
        assert lesion.mean_hu == pytest.approx(ct.array[mask].mean())
        centres = labels.grid.index_to_physical(np.argwhere(mask)[:, ::-1])
        assert np.allclose(lesion.centroid_lps, centres.mean(axis=0))
        low, high = np.array(lesion.box_min_lps), np.array(lesion.box_max_lps)
        assert np.all(low < centres.min(axis=0)) and np.all(centres.max(axis=0) < high)
        assert np.all(low < lesion.centroid_lps) and np.all(lesion.centroid_lps < high)
    assert [lesion.id for lesion in lesions] == list(range(1, len(lesions) + 1))
    assert sum(lesion.voxels for lesion in lesions) == (labels.array == 2).sum()


def test_lesion_labels_number_like_lesion_masks(phantom):
    tumor = phantom.labels.array == 2
    numbers, box, count = lesion_labels(tumor)
    for number, mask in enumerate(lesion_masks(tumor), start=1):
        assert np.array_equal(numbers == number, mask[box.slices])
    assert lesion_labels(np.zeros((3, 3, 3), bool))[1:] == (None, 0)


@pytest.mark.parametrize("diameter", [7.3, 21.0, 34.6])
def test_sphere_diameter_on_an_anisotropic_grid(diameter):
    grid = Grid((20, 70, 60), (10.0, -20.0, 5.0), (0.71, 0.93, 2.5))
    labels, ct, centre = sphere(grid, (29.3, 33.6, 9), diameter)
    (lesion,) = lesion_table(labels, ct)
    assert abs(lesion.longest_axial_diameter_mm - diameter) <= 0.93  # within one voxel
    assert np.allclose(lesion.centroid_lps, centre, atol=0.5)
    ideal = np.pi / 6 * diameter**3 / 1000
    assert lesion.volume_ml == pytest.approx(ideal, rel=0.25 if diameter < 10 else 0.06)
    half = np.array([0.71, 0.93, 2.5]) / 2
    assert np.all(np.array(lesion.box_min_lps) >= centre - diameter / 2 - half - 1e-9)
    assert np.all(np.array(lesion.box_max_lps) <= centre + diameter / 2 + half + 1e-9)


def test_sphere_on_an_oblique_grid():
    direction = rotation([1, 0.4, 0.2], 23.0)
    grid = Grid((24, 60, 64), (-101.37, 42.113, 17.9), (0.71, 0.93, 2.0), direction)
    diameter = 25.0
    labels, ct, centre = sphere(grid, (31.2, 28.7, 12), diameter)
    (lesion,) = lesion_table(labels, ct)
    assert abs(lesion.longest_axial_diameter_mm - diameter) <= 0.93
    assert np.allclose(lesion.centroid_lps, centre, atol=0.5)
    mask = labels.array == 2
    assert lesion.mean_hu == pytest.approx(ct.array[mask].mean())
    # The box holds every voxel corner of the lesion and is no bigger than the sphere's box
    # grown by the largest corner offset of a voxel.
    corners = np.array([[a, b, c] for a in (-0.5, 0.5) for b in (-0.5, 0.5) for c in (-0.5, 0.5)])
    ijk = np.argwhere(mask)[:, ::-1]
    points = grid.index_to_physical((ijk[:, None, :] + corners[None]).reshape(-1, 3))
    assert np.allclose(lesion.box_min_lps, points.min(axis=0))
    assert np.allclose(lesion.box_max_lps, points.max(axis=0))
    reach = np.abs(grid.direction * grid.spacing).sum(axis=1) / 2
    assert np.all(np.array(lesion.box_min_lps) >= centre - diameter / 2 - reach)


def test_each_lesion_carries_the_models_mean_probability(phantom, tmp_path):
    """With the tumor stage's probability (uint8 on the grid), a lesion's confidence is its
    mean over the lesion's own voxels; it reaches the CSV and survives the JSON. A label map
    no model made (truth, a reader's) has none: an empty cell and null."""
    labels, ct = phantom.labels, phantom.ct
    masks = lesion_masks(labels.array == 2)
    rng = np.random.default_rng(0)
    probability = rng.integers(0, 256, labels.shape).astype(np.uint8)
    probability[masks[0]] = 250  # the largest lesion: sure
    lesions = lesion_table(labels, ct, labels.with_array(probability))
    assert lesions[0].mean_probability == pytest.approx(250 / 255)
    for lesion, mask in zip(lesions[1:], masks[1:], strict=True):
        assert lesion.mean_probability == pytest.approx(probability[mask].mean() / 255)
        assert lesion.mean_probability < 0.9
    csv_path, json_path = write_lesion_table(lesions, tmp_path)
    rows = list(csv.DictReader(csv_path.open()))
    assert float(rows[0]["mean_probability"]) == pytest.approx(250 / 255, abs=1e-3)
    back = read_lesion_json(json_path)
    assert [b.mean_probability for b in back] == pytest.approx(
        [lesion.mean_probability for lesion in lesions], abs=1e-3
    )

    unscored = lesion_table(labels, ct)
    assert all(lesion.mean_probability is None for lesion in unscored)
    csv_path, json_path = write_lesion_table(unscored, tmp_path / "truth")
    assert {r["mean_probability"] for r in csv.DictReader(csv_path.open())} == {""}
    assert all(b.mean_probability is None for b in read_lesion_json(json_path))
    grid = labels.grid
    moved = Grid(grid.shape, grid.origin + (1.0, 0.0, 0.0), grid.spacing, grid.direction)
    shifted = Volume(probability, moved)
    with pytest.raises(ValueError, match="tumor probability"):
        lesion_table(labels, ct, shifted)


@pytest.mark.parametrize(
    "order, flips", [((0, 1, 2), (True, True, False)), ((2, 0, 1), (False, True, True))]
)
def test_the_axial_diameter_is_axial_whatever_the_storage(order, flips):
    """A lesion 16 mm across and 40 mm tall: 16 mm, whether the file stores axial slices (RAS)
    or sagittal ones, where the slices' own planes hold its height."""
    grid = Grid((40, 40, 40), (0.0, 0.0, 0.0), (1.0, 1.0, 1.5))
    k, j, i = np.indices(grid.shape)
    points = grid.index_to_physical(np.stack([i, j, k], axis=-1)) - grid.center()
    inside = (points[..., 0] ** 2 + points[..., 1] ** 2) / 8**2 + points[..., 2] ** 2 / 20**2 <= 1
    labels = Volume(np.where(inside, 2, 1).astype(np.uint8), grid)
    ct = Volume(np.zeros(grid.shape, np.int16), grid)
    (plain,) = lesion_table(labels, ct)
    (stored,) = lesion_table(stored_as(labels, order, flips), stored_as(ct, order, flips))
    assert abs(plain.longest_axial_diameter_mm - 16.0) <= 1.0
    assert stored.longest_axial_diameter_mm == pytest.approx(plain.longest_axial_diameter_mm)
    assert stored.volume_ml == pytest.approx(plain.volume_ml)


def test_longest_diameter_of_a_rectangle_and_a_line():
    mask = np.zeros((3, 20, 30), dtype=bool)
    mask[1, 5:15, 5:25] = True  # 10 rows x 20 columns
    measured = longest_axial_diameter(mask, (0.5, 2.0, 3.0))
    diagonal = np.hypot(20 * 0.5, 10 * 2.0)
    assert diagonal - 1.0 <= measured <= diagonal  # edge midpoints, not the corners
    line = np.zeros((1, 5, 40), dtype=bool)
    line[0, 2, 3:33] = True
    assert longest_axial_diameter(line, (0.8, 0.8, 1.0)) == pytest.approx(30 * 0.8)


def test_files_and_summary(phantom, tmp_path):
    labels, ct = phantom.labels, phantom.ct
    lesions = lesion_table(labels, ct)
    csv_path, json_path = write_lesion_table(lesions, tmp_path)
    assert (csv_path.name, json_path.name) == ("lesions.csv", "lesions.json")
    rows = list(csv.DictReader(csv_path.open()))
    assert [int(r["id"]) for r in rows] == [lesion.id for lesion in lesions]
    assert float(rows[0]["centroid_s_mm"]) == pytest.approx(lesions[0].centroid_lps[2], abs=0.01)
    back = read_lesion_json(json_path)
    assert [b.voxels for b in back] == [lesion.voxels for lesion in lesions]
    assert back[0].longest_axial_diameter_mm == pytest.approx(
        lesions[0].longest_axial_diameter_mm, abs=0.01
    )
    assert not list(tmp_path.glob(".*partial*"))

    models = [{"name": "liver-2d", "version": "1.0", "metrics": {"dice": 0.9}}]
    data = summary(labels, ct, lesions, models, {"liver": 1.25, "tumor": 0.5})
    voxel_ml = float(np.prod(labels.spacing)) / 1000
    assert data["liver_volume_ml"] == pytest.approx((labels.array > 0).sum() * voxel_ml, abs=0.01)
    assert data["tumor_volume_ml"] == pytest.approx(sum(x.volume_ml for x in lesions), abs=1e-3)
    burden = 100 * data["tumor_volume_ml"] / data["liver_volume_ml"]
    assert data["tumor_burden_percent"] == pytest.approx(burden, rel=1e-3)
    assert data["lesion_count"] == len(lesions)
    assert data["models"] == [{"name": "liver-2d", "version": "1.0"}]
    assert data["timings_s"] == {"liver": 1.25, "tumor": 0.5}
    assert json.loads(write_summary(data, tmp_path).read_text()) == data


def test_no_tumor_no_liver(phantom):
    empty = phantom.labels.with_array(np.zeros(phantom.labels.shape, np.uint8))
    assert lesion_table(empty, phantom.ct) == []
    data = summary(empty, phantom.ct, [], [], {})
    assert data["tumor_burden_percent"] is None and data["lesion_count"] == 0
