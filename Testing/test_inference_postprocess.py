"""Post-processing of raw liver/tumor masks, on phantom ground truth with faults added."""

import numpy as np
import pytest
from scipy import ndimage

from deepliver.inference.postprocess import (
    AIR_HU,
    MAX_SEALED_CAVITY_ML,
    clean_liver,
    clean_tumors,
    close_liver,
    close_mask,
    edge_from,
    fill_cavities,
    fill_slice_holes,
    largest_component,
    liver_box,
    liver_only,
)
from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.volume import Box, Grid, Volume


@pytest.fixture(scope="module")
def phantom():
    spec = PhantomSpec(seed=5, size=(64, 64, 24), n_tumors=(2, 4), tumor_diameter_mm=(15, 40))
    return make_phantom(spec)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def interior_point(mask: np.ndarray, depth: int = 2) -> tuple[int, int, int]:
    """A voxel at least ``depth`` voxels inside ``mask`` in every direction."""
    inner = ndimage.binary_erosion(mask, iterations=depth)
    return tuple(int(v) for v in np.argwhere(inner)[len(np.argwhere(inner)) // 2])


def test_clean_liver_keeps_the_true_liver(phantom):
    truth = phantom.labels.array > 0
    cleaned = clean_liver(truth, phantom.labels.grid)
    assert cleaned.dtype == bool and cleaned.shape == truth.shape
    assert dice(cleaned, truth) > 0.99
    # Only stray fragments of the painted liver (off its largest component) may go.
    assert (truth & ~cleaned).sum() == truth.sum() - largest_component(truth).sum()


def test_clean_liver_removes_a_far_blob_and_fills_a_hole(phantom):
    truth = phantom.labels.array > 0
    faulty = truth.copy()
    k, j, i = interior_point(truth)
    faulty[k, j - 1 : j + 1, i - 1 : i + 1] = False  # a cavity enclosed by liver
    faulty[:3, :4, :4] = True  # a blob in the volume's corner, far from the liver
    assert not truth[:3, :4, :4].any()
    cleaned = clean_liver(faulty, phantom.labels.grid.spacing[::-1])
    assert not cleaned[:3, :4, :4].any()
    assert cleaned[k, j - 1 : j + 1, i - 1 : i + 1].all()
    assert dice(cleaned, truth) > 0.99


@pytest.mark.parametrize("seed", range(4))
def test_largest_component_matches_scipy(seed):
    """Blobs a face apart are apart, blobs touching at an edge too: against ndimage.label."""
    mask = ~random_blobs((20, 40, 36), seed)  # the background of the blobs: many pieces
    components, count = ndimage.label(mask, structure=ndimage.generate_binary_structure(3, 1))
    sizes = np.bincount(components.ravel())[1:]
    assert count >= 10 and (sizes == sizes.max()).sum() == 1  # one largest, no tie
    np.testing.assert_array_equal(largest_component(mask), components == 1 + np.argmax(sizes))


def test_largest_component_of_nothing_is_nothing():
    empty = np.zeros((4, 5, 6), dtype=np.uint8)
    assert not largest_component(empty).any()
    assert not clean_liver(empty, (2.0, 1.0, 1.0)).any()
    assert liver_box(empty, Grid((4, 5, 6)), 10.0) is None


def test_slice_holes_are_filled_per_slice_up_to_an_area():
    mask = np.zeros((8, 30, 30), dtype=bool)
    mask[:, 2:28, 2:28] = True
    mask[:, 4:6, 4:6] = False  # a vessel through every slice: open in 3D, closed in-plane
    mask[:, 10:24, 10:24] = False  # a wide one (196 mm^2 at 1 mm), like the vena cava
    mask[3:5, 7, 7] = False  # a cavity closed in 3D
    only_3d = fill_cavities(mask)
    assert only_3d[3:5, 7, 7].all() and not only_3d[:, 4:6, 4:6].any()
    filled = fill_slice_holes(mask, (2.0, 1.0, 1.0), max_slice_hole_mm2=150.0)
    assert filled[:, 4:6, 4:6].all() and not filled[:, 10:24, 10:24].any()
    assert fill_slice_holes(mask, (2.0, 1.0, 1.0), max_slice_hole_mm2=200.0)[:, 10:24, 10:24].all()


SPACING_ZYX = (2.5, 1.5, 1.5)


def liver_with_hollows(mouths: bool):
    """A liver block with two hollows: a tumor at the capsule that the network left out (4 mL)
    and the right kidney in the renal impression (92 mL, more than MAX_SEALED_CAVITY_ML), each
    open through a mouth narrower than the closing bridges (or closed)."""
    z, y, x = np.mgrid[:30, :100, :100] * np.array(SPACING_ZYX)[:, None, None, None]
    liver = np.zeros((30, 100, 100), dtype=bool)
    liver[2:28, 5:95, 5:95] = True
    kidney = (z - 37.5) ** 2 + (y - 75) ** 2 + (x - 82.5) ** 2 <= 28**2
    tumor = (z - 37.5) ** 2 + (y - 30) ** 2 + (x - 37.5) ** 2 <= 10**2
    liver &= ~(kidney | tumor)
    if mouths:
        slab = (z >= 35) & (z <= 37.5)  # two slices: the mouths are 5 mm high
        liver &= ~(slab & (np.abs(y - 75) <= 1.5) & (x >= 82.5))  # 4.5 mm wide, to the edge
        liver &= ~(slab & (np.abs(x - 37.5) <= 1.5) & (y <= 30))
    assert kidney.sum() * np.prod(SPACING_ZYX) / 1000 > MAX_SEALED_CAVITY_ML
    return liver, tumor, kidney


def test_clean_liver_fills_a_sealed_tumor_but_not_a_sealed_kidney():
    liver, tumor, kidney = liver_with_hollows(mouths=True)
    sealed = fill_cavities(close_mask(liver, SPACING_ZYX, 5.0)) & ~fill_cavities(liver)
    assert sealed[kidney].mean() > 0.9 and sealed[tumor].mean() > 0.9  # both, by the closing
    cleaned = clean_liver(liver, SPACING_ZYX)
    assert cleaned[tumor].all()
    assert cleaned[kidney].mean() < 0.2  # at most its poles, as in-slice holes
    assert cleaned[liver].all()


def test_a_liver_own_cavity_is_filled_whatever_its_size_but_not_by_close_liver():
    """clean_liver fills what the network's liver encloses (a large tumor it left out);
    close_liver, for a liver whose edge was drawn again, fills only what the closing seals."""
    liver, tumor, kidney = liver_with_hollows(mouths=False)
    assert clean_liver(liver, SPACING_ZYX)[kidney | tumor].all()
    closed = close_liver(liver, SPACING_ZYX)
    assert closed[tumor].all() and closed[kidney].mean() < 0.2


def test_closing_radius_is_in_millimetres_per_axis():
    spacing_zyx = (5.0, 1.0, 1.0)
    mask = np.zeros((9, 30, 30), dtype=bool)
    mask[2:7, 5:25, 5:13] = True
    mask[2:7, 5:25, 16:25] = True  # a 3 mm gap along x (3 voxels)
    closed = close_mask(mask, spacing_zyx, radius_mm=2.0)
    assert closed[2:7, 8:22, 13:16].all()  # a 4 mm ball bridges 3 mm
    stacked = np.zeros((9, 30, 30), dtype=bool)
    stacked[1:4, 5:25, 5:25] = True
    stacked[5:8, 5:25, 5:25] = True  # one slice apart: a 5 mm gap along z
    assert not close_mask(stacked, spacing_zyx, radius_mm=2.0)[4].any()
    assert close_mask(stacked, spacing_zyx, radius_mm=6.0)[4, 10:20, 10:20].all()  # round ends


def test_closing_at_the_volume_edge_keeps_the_mask():
    mask = np.zeros((6, 10, 10), dtype=bool)
    mask[:, :, :5] = True  # touches three faces of the volume
    assert np.array_equal(close_mask(mask, (1.0, 1.0, 1.0), 3.0), mask)


def test_clean_tumors_drops_specks_and_tumor_outside_the_liver(phantom):
    labels = phantom.labels.array
    liver, truth = labels > 0, labels == 2
    grid = phantom.labels.grid
    voxel_mm3 = float(np.prod(grid.spacing))
    assert np.array_equal(clean_tumors(truth, liver, grid, min_volume_mm3=voxel_mm3), truth)

    faulty = truth.copy()
    k, j, i = interior_point(liver & ~ndimage.binary_dilation(truth, iterations=2), depth=1)
    faulty[k, j, i] = True  # a one-voxel speck inside the liver
    faulty[:2, :3, :3] = True  # a tumor blob in the corner, outside the liver
    cleaned = clean_tumors(faulty, liver, grid, min_volume_mm3=1.5 * voxel_mm3)
    assert not cleaned[k, j, i] and not cleaned[:2, :3, :3].any()
    components, _ = ndimage.label(truth, structure=np.ones((3, 3, 3)))
    multi_voxel = np.bincount(components.ravel())[components] >= 2
    assert np.array_equal(cleaned, truth & multi_voxel)  # lesions of 2+ voxels all stay


def test_clean_tumors_keeps_the_edge_voxel_next_to_the_liver():
    liver = np.zeros((5, 12, 12), dtype=bool)
    liver[1:4, 2:8, 2:8] = True
    tumor = np.zeros_like(liver)
    tumor[2, 4:9, 4:6] = True  # reaches one voxel past the liver's edge
    cleaned = clean_tumors(tumor, liver, (2.0, 1.0, 1.0), min_volume_mm3=0)
    assert np.array_equal(cleaned, tumor)
    far = tumor.copy()
    far[2, 10, 4] = True  # two voxels out: not the liver's
    assert not clean_tumors(far, liver, (2.0, 1.0, 1.0), min_volume_mm3=0)[2, 10, 4]


def test_liver_box_margin_is_converted_per_axis():
    grid = Grid((40, 60, 60), spacing=(0.5, 1.0, 4.0))  # x, y, z
    liver = np.zeros(grid.shape, dtype=bool)
    liver[20:22, 30:32, 30:32] = True
    box = liver_box(liver, grid, 8.0)
    assert box == Box((18, 22, 14), (24, 40, 48))  # 2 slices, 8 rows, 16 columns
    assert liver_box(liver, grid, 1000.0) == Box((0, 0, 0), grid.shape)


def test_liver_only_blanks_tissue_beyond_the_margin_in_millimetres():
    grid = Grid((10, 40, 40), spacing=(1.0, 1.0, 4.0))  # shape (z, y, x), spacing (x, y, z)
    ct = Volume(np.full(grid.shape, 60, dtype=np.int16), grid)
    liver = np.zeros(grid.shape, dtype=bool)
    liver[5, 20, 10:20] = True  # (z, y, x)
    gated = liver_only(ct, liver, margin_mm=5.0)
    assert gated.grid is ct.grid and gated.array.dtype == np.int16
    row = gated.array[5, 20]
    assert (row[5:25] == 60).all()  # within 5 mm along x
    assert row[4] == AIR_HU and row[25] == AIR_HU
    # Along z one voxel is 4 mm: one slice away is kept, two (8 mm) are not.
    assert gated.array[4, 20, 15] == 60 and gated.array[3, 20, 15] == AIR_HU
    assert (ct.array == 60).all()  # the input is left as it was
    with pytest.raises(ValueError, match="differ in shape"):
        liver_only(ct, liver[:5])


def test_the_fine_edge_is_taken_only_near_the_coarse_surface():
    grid = Grid((20, 40, 40), spacing=(1.0, 1.0, 2.0))  # shape (z, y, x), spacing (x, y, z)
    z, y, x = np.indices(grid.shape)
    radius = np.sqrt(((z - 10) * 2.0) ** 2 + (y - 20) ** 2 + (x - 20) ** 2)  # mm
    coarse = radius <= 12
    fine = radius <= 14  # the edge 2 mm farther out
    fine[10, 20, 20] = False  # a hole deep inside the liver: not the edge
    fine[10, 2, 2] = True  # a speck 20 mm out: not the edge
    result = edge_from(coarse, fine, grid, band_mm=4.0)
    assert np.array_equal(result, radius <= 14)
    narrow = edge_from(coarse, fine, grid, band_mm=1.0)  # from 1 mm out, the coarse mask again
    assert (narrow >= coarse).all() and (narrow <= (radius <= 14)).all()
    assert not narrow[radius > 13.5].any()
    with pytest.raises(ValueError, match="differ in shape"):
        edge_from(coarse, fine[:5], grid, 4.0)


def random_blobs(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Smoothed noise above a level: a mask with 10-15 cavities of 1-74 voxels (seeds 0-3)."""
    noise = np.random.default_rng(seed).random(shape)
    return ndimage.gaussian_filter(noise, 1.5) > 0.47


@pytest.mark.parametrize("seed", range(4))
def test_hole_filling_matches_scipy_fill_holes(seed):
    mask = random_blobs((20, 40, 36), seed)
    grid_zyx = (2.0, 0.8, 0.8)
    assert np.array_equal(fill_cavities(mask), ndimage.binary_fill_holes(mask))
    in_plane_faces = np.zeros((3, 3, 3), dtype=bool)
    in_plane_faces[1] = ndimage.generate_binary_structure(2, 1)
    in_plane = ndimage.binary_fill_holes(mask, structure=in_plane_faces)
    assert np.array_equal(fill_slice_holes(mask, grid_zyx, max_slice_hole_mm2=1e9), in_plane)
    # With a limit: a cavity is filled when its volume is at most the limit.
    holes, _ = ndimage.label(ndimage.binary_fill_holes(mask) & ~mask)
    volumes_ml = np.bincount(holes.ravel()) * np.prod(grid_zyx) / 1000.0
    limit = float(np.median(volumes_ml[1:])) + 0.5 * np.prod(grid_zyx) / 1000.0  # no ties
    assert 0 < np.count_nonzero(volumes_ml[1:] > limit) < holes.max()  # some filled, some not
    expected = mask | ((volumes_ml <= limit) & (np.arange(len(volumes_ml)) > 0))[holes]
    assert np.array_equal(fill_cavities(mask, grid_zyx, limit), expected)


@pytest.mark.parametrize("spacing_zyx", [(2.5, 0.7, 0.9), (1.0, 0.875, 0.875), (0.6, 0.6, 0.6)])
def test_the_gate_is_a_euclidean_ball_in_millimetres(spacing_zyx):
    """liver_only keeps what lies within the margin of the liver, exactly: the voxels an exact
    distance transform (scipy's) puts at most that far, a voxel right at the margin included."""
    liver = random_blobs((16, 40, 40), seed=7) & (np.indices((16, 40, 40))[0] > 4)
    grid = Grid(liver.shape, spacing=spacing_zyx[::-1])
    ct = Volume(np.full(liver.shape, 50, dtype=np.int16), grid)
    distance = ndimage.distance_transform_edt(~liver, sampling=spacing_zyx)
    for margin in (1.0, 3.0, 5.0):
        kept = liver_only(ct, liver, margin_mm=margin).array == 50
        assert np.array_equal(kept, distance <= margin + 1e-9), margin


def test_a_liver_filling_the_whole_crop_keeps_every_voxel():
    grid = Grid((12, 10, 6), spacing=(0.8, 0.8, 2.0))
    ct = Volume(np.full(grid.shape, 70, dtype=np.int16), grid)
    assert (liver_only(ct, np.ones(grid.shape, dtype=bool)).array == 70).all()
