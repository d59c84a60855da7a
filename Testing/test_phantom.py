"""The synthetic phantom: deterministic, anatomically placed, CT-like HU, honest labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import deepliver.phantom.shadow as shadow_module
from deepliver.errors import DeepLiverError
from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.phantom.tissues import FIRST_TUMOR_ID, Tissue, hu_range
from deepliver.phantom.visibility import VISIBLE_CONTRAST_HU, visible_tumor

SMALL = (96, 96, 48)
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def physical(volume, mask: np.ndarray) -> np.ndarray:
    """LPS points (mm) of the voxels in a (z, y, x) mask."""
    k, j, i = np.nonzero(mask)
    return volume.grid.index_to_physical(np.stack([i, j, k], axis=1).astype(float))


def body_mask(phantom) -> np.ndarray:
    return phantom.ct.array > -500


@pytest.fixture(scope="module")
def portal():
    return make_phantom(PhantomSpec(seed=7, size=SMALL, phase="portal", tumor_diameter_mm=(20, 40)))


def test_same_seed_gives_identical_arrays_and_other_seed_differs():
    spec = PhantomSpec(seed=3, size=SMALL)
    first, second = make_phantom(spec), make_phantom(PhantomSpec(seed=3, size=SMALL))
    assert np.array_equal(first.ct.array, second.ct.array)
    assert np.array_equal(first.labels.array, second.labels.array)
    assert first.ct.grid.same_as(second.ct.grid)
    other = make_phantom(PhantomSpec(seed=4, size=SMALL))
    assert not np.array_equal(first.ct.array, other.ct.array)


def test_volumes_have_the_promised_types_and_share_a_grid(portal):
    assert portal.ct.array.dtype == np.int16
    assert portal.labels.array.dtype == np.uint8
    assert portal.ct.shape == (SMALL[2], SMALL[1], SMALL[0])
    assert portal.labels.grid.same_as(portal.ct.grid)
    assert set(np.unique(portal.labels.array)) <= {0, 1, 2}
    assert (portal.labels.array == 1).sum() > 1000


def test_tumors_only_replace_liver():
    with_tumors = make_phantom(PhantomSpec(seed=11, size=SMALL, n_tumors=(3, 3)))
    without = make_phantom(PhantomSpec(seed=11, size=SMALL, n_tumors=(0, 0)))
    assert (with_tumors.labels.array == 2).any()
    assert not (without.labels.array == 2).any()
    assert np.array_equal(with_tumors.labels.array > 0, without.labels.array > 0)
    for tumor in with_tumors.tumors:
        i, j, k = np.round(with_tumors.labels.grid.physical_to_index(tumor.center)).astype(int)
        assert with_tumors.labels.array[k, j, i] == 2


def test_tumor_count_and_diameters_follow_the_spec():
    for seed in range(4):
        spec = PhantomSpec(seed=seed, size=SMALL, n_tumors=(2, 3), tumor_diameter_mm=(10, 30))
        phantom = make_phantom(spec)
        assert 2 <= len(phantom.tumors) <= 3
        for tumor in phantom.tumors:
            assert 10 <= tumor.diameter_mm <= 30
            assert tumor.kind in ("hypo", "hyper")


def test_liver_lies_on_the_patients_right_under_the_lungs():
    phantom = make_phantom(PhantomSpec(seed=5, size=(128, 128, 64), spacing=(3.0, 3.0, 5.0)))
    liver = physical(phantom.labels, phantom.labels.array == 1).mean(axis=0)
    body = physical(phantom.ct, body_mask(phantom)).mean(axis=0)
    assert liver[0] < body[0] - 20  # LPS: -x is the patient's right
    ct = phantom.ct.array
    lung = (ct > -950) & (ct < -650) & (phantom.tissue.array == Tissue.LUNG)
    assert physical(phantom.ct, lung)[:, 2].mean() > liver[2]
    bone = physical(phantom.ct, ct > 400)
    assert bone[:, 1].mean() > body[1]  # spine and most rib bone lie posterior


def test_liver_volume_is_adult_for_every_build():
    """Flat or broad patients alike get a 1,200-1,800 mL liver (ct-facts.md), give or take."""
    for seed in range(6):
        spec = PhantomSpec(seed=seed, size=(128, 128, 64), spacing=(3.5, 3.5, 5.0))
        phantom = make_phantom(spec)
        labels = phantom.labels.array
        assert not labels[[0, -1]].any()  # the grid holds the whole liver
        volume_ml = np.count_nonzero(labels) * np.prod(phantom.labels.spacing) / 1000
        assert 1100 <= volume_ml <= 1900, (seed, volume_ml)
        liver = physical(phantom.labels, labels > 0).mean(axis=0)
        body = physical(phantom.ct, body_mask(phantom)).mean(axis=0)
        assert liver[0] < body[0] - 20, seed  # still in the right upper quadrant


def test_hu_per_tissue_matches_the_phase_table(portal):
    ct, tissue = portal.ct.array, portal.tissue.array
    liver = np.median(ct[portal.labels.array == 1])
    low, high = hu_range(Tissue.LIVER, "portal")
    assert low - 15 <= liver <= high + 15
    for kind, tolerance in ((Tissue.SPLEEN, 20), (Tissue.FAT, 25), (Tissue.MUSCLE, 20)):
        low, high = hu_range(kind, "portal")
        assert low - tolerance <= np.median(ct[tissue == kind]) <= high + tolerance, kind.name
    outside = ct[(tissue == Tissue.AIR) & (ct > -1500)]
    assert np.median(outside) < -950


def test_hypodense_tumor_is_darker_than_liver_in_portal_phase():
    spec = PhantomSpec(
        seed=0, size=SMALL, phase="portal", n_tumors=(1, 1), tumor_diameter_mm=(30, 45)
    )
    phantom = make_phantom(spec)
    assert [tumor.kind for tumor in phantom.tumors] == ["hypo"]  # every portal tumor is
    labels, ct = phantom.labels.array, phantom.ct.array
    assert np.median(ct[labels == 2]) < np.median(ct[labels == 1]) - 10


@pytest.mark.parametrize("phase", ["native", "portal"])
def test_tumors_are_darker_than_the_liver_outside_the_arterial_phase(phase):
    """ct-facts.md: metastases are below the liver in every phase, HCC near or below it except
    when it washes in on the arterial phase; a brighter tumor elsewhere is not what CT shows."""
    for seed in range(6):
        spec = PhantomSpec(seed=seed, size=SMALL, phase=phase, n_tumors=(3, 3))
        phantom = make_phantom(spec)
        assert phantom.tumors and {t.kind for t in phantom.tumors} == {"hypo"}
        tissue, ct = phantom.tissue.array, phantom.ct.array
        cores = (tissue >= FIRST_TUMOR_ID) & ((tissue - FIRST_TUMOR_ID) % 2 == 1)  # rims aside
        assert np.median(ct[cores]) < np.median(ct[tissue == Tissue.LIVER]) - 5, seed


def test_phase_changes_the_liver_enhancement():
    native = make_phantom(PhantomSpec(seed=2, size=SMALL, phase="native"))
    portal = make_phantom(PhantomSpec(seed=2, size=SMALL, phase="portal"))
    assert native.phase == "native" and portal.phase == "portal"
    assert np.median(native.ct.array[native.labels.array == 1]) < 80
    assert np.median(portal.ct.array[portal.labels.array == 1]) > 80


def test_oblique_grid_is_tilted_and_anatomy_stays_in_lps():
    phantom = make_phantom(PhantomSpec(seed=6, size=SMALL, orientation="oblique", phase="portal"))
    direction = phantom.ct.direction
    assert np.allclose(direction.T @ direction, np.eye(3), atol=1e-6)
    assert np.isclose(np.linalg.det(direction), 1.0)
    tilt = np.degrees(np.arccos(np.clip(direction[2, 2], -1, 1)))
    assert 9 <= tilt <= 27
    liver = physical(phantom.labels, phantom.labels.array == 1).mean(axis=0)
    body = physical(phantom.ct, body_mask(phantom)).mean(axis=0)
    assert liver[0] < body[0] - 20
    low, high = hu_range(Tissue.LIVER, "portal")
    assert low - 15 <= np.median(phantom.ct.array[phantom.labels.array == 1]) <= high + 15


def test_explicit_spacing_is_respected_and_random_spacing_is_ct_like():
    fixed = make_phantom(PhantomSpec(seed=1, size=SMALL, spacing=(3.5, 3.5, 4.0)))
    assert np.allclose(fixed.ct.spacing, (3.5, 3.5, 4.0))
    free = make_phantom(PhantomSpec(seed=1, size=(512, 512, 12), n_tumors=(0, 0)))
    assert 300 <= free.ct.spacing[0] * 512 <= 460
    low_z = np.flatnonzero(free.labels.array.any(axis=(1, 2)))
    assert len(low_z) >= 2  # the clamped slice spacing still reaches across the liver


def test_scan_circle_padding_appears_for_some_seeds():
    corners = {
        int(make_phantom(PhantomSpec(seed=s, size=(48, 48, 16))).ct.array[0, 0, 0])
        for s in range(8)
    }
    assert corners & {-2048, -3024}
    assert all(value in (-1024, -2048, -3024) or value > -1100 for value in corners)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": (96, 96)}, "size"),
        ({"size": (0, 96, 48)}, "size"),
        ({"spacing": (1.0, -1.0, 2.0)}, "spacing"),
        ({"n_tumors": (3, 1)}, "n_tumors"),
        ({"n_tumors": (-1, 2)}, "n_tumors"),
        ({"tumor_diameter_mm": (5, 500)}, "tumor_diameter_mm"),
        ({"orientation": "sagittal"}, "orientation"),
        ({"phase": "delayed"}, "phase"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_specs_are_rejected_with_a_message(options, message):
    with pytest.raises(DeepLiverError, match=message):
        make_phantom(PhantomSpec(**options))


def read_real_liver() -> np.ndarray:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(REAL / "siemens_ct_jpeg2000")))
    ct = reader.Execute()
    labels = sitk.ReadImage(str(REAL / "siemens_ct_jpeg2000_labels" / "multilabel.nii.gz"))
    labels = sitk.Resample(
        labels, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID()
    )
    return sitk.GetArrayFromImage(ct)[sitk.GetArrayFromImage(labels) == 5].astype(np.float32)


@pytest.mark.skipif(
    not (REAL / "siemens_ct_jpeg2000").is_dir(), reason=f"real CT data not found at {REAL}"
)
def test_phantom_liver_statistics_match_a_real_portal_phase_liver(portal):
    real = read_real_liver()
    real_median, real_spread = np.median(real), np.subtract(*np.percentile(real, [75, 25]))
    values = portal.ct.array[portal.labels.array == 1].astype(np.float32)
    median, spread = np.median(values), np.subtract(*np.percentile(values, [75, 25]))
    assert 80 <= real_median <= 110  # the reference itself: portal-venous liver (measured 93 HU)
    assert abs(median - real_median) <= 35
    assert 0.4 * real_spread <= spread <= 3 * real_spread


def test_visible_tumor_leaves_out_tissue_drawn_within_a_few_hu_of_the_liver():
    phantom = make_phantom(PhantomSpec(seed=3, size=SMALL, tumor_diameter_mm=(20, 40)))
    tumor = phantom.labels.array == 2
    visible = visible_tumor(phantom)
    hidden = tumor & ~visible
    assert visible.any() and hidden.any()
    assert not (visible & ~tumor).any()
    ct = phantom.ct.array.astype(np.float32)
    liver_hu = np.median(ct[phantom.tissue.array == Tissue.LIVER])
    assert abs(np.median(ct[hidden]) - liver_hu) < VISIBLE_CONTRAST_HU  # as the image shows it
    assert abs(np.median(ct[visible]) - liver_hu) > 2 * VISIBLE_CONTRAST_HU
    assert np.array_equal(visible_tumor(phantom, min_contrast_hu=0.0), tumor)
    with pytest.raises(ValueError, match="tissue map and palette"):
        visible_tumor(dataclasses.replace(phantom, palette=None))


def test_a_band_from_the_arms_darkens_the_body_and_leaves_the_labels(monkeypatch):
    spec = PhantomSpec(seed=0, size=SMALL, orientation="axial")
    banded = make_phantom(spec)
    assert banded.shadow is not None  # seed 0 draws one
    monkeypatch.setattr(shadow_module, "SHADOW_PROBABILITY", 0.0)
    plain = make_phantom(spec)
    assert plain.shadow is None
    assert np.array_equal(banded.labels.array, plain.labels.array)
    assert np.array_equal(banded.tissue.array, plain.tissue.array)

    darker = plain.ct.array.astype(np.float32) - banded.ct.array.astype(np.float32)
    air = banded.tissue.array == Tissue.AIR
    assert np.all(darker[air] == 0)
    # The band runs across the body: one depth per row (anterior-posterior), whatever x and z.
    body = ~air & (plain.ct.array > -900) & (plain.ct.array < 3000)  # not clipped
    rows = [darker[:, j][body[:, j]] for j in range(darker.shape[1]) if body[:, j].sum() > 50]
    assert max(np.ptp(row) for row in rows) <= 1.0  # rounding to whole HU
    per_row = np.array([row.mean() for row in rows])
    assert abs(per_row.max() - banded.shadow.depth_hu) <= 1.0
    assert per_row.min() < 1.0  # in front of (or behind) the band: untouched
    width_mm = (per_row > banded.shadow.depth_hu / 2).sum() * banded.ct.spacing[1]
    drawn_mm = banded.shadow.back_mm - banded.shadow.front_mm
    assert abs(width_mm - drawn_mm) <= 3 * banded.ct.spacing[1]
