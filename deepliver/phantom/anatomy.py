"""One random patient: every part in painting order (later parts nestle against earlier ones)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepliver.phantom import organs, vessels
from deepliver.phantom.body import Body, Table, Torso
from deepliver.phantom.liver import Liver
from deepliver.phantom.parts import Layered
from deepliver.phantom.render import Part
from deepliver.phantom.sizing import TARGET_ML, fit_liver_scale
from deepliver.phantom.spine import Psoas, Spine
from deepliver.phantom.tissues import Tissue


@dataclass(frozen=True)
class Anatomy:
    body: Body
    liver: Liver
    parts: list[Part]


def random_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw a patient, then resize its liver to an adult volume drawn for it.

    Every rebuild replays the same draws, so only the liver's size (and what hangs off it:
    hilum, gallbladder, bowel height) changes.
    """
    start = rng.bit_generator.state
    body = _draw(rng, 1.0)[0]
    target_ml = rng.uniform(*TARGET_ML)
    after = rng.bit_generator.state

    def build(scale: float) -> tuple[list[Part], Liver]:
        rng.bit_generator.state = start
        _, liver, parts = _draw(rng, scale)
        return parts, liver

    _, parts, liver = fit_liver_scale(build, target_ml)
    rng.bit_generator.state = after
    return Anatomy(body, liver, parts)


def _draw(rng: np.random.Generator, liver_scale: float) -> tuple[Body, Liver, list[Part]]:
    body = Body.random(rng)
    spine = Spine.random(rng, body)
    liver = Liver.random(rng, body).scaled(liver_scale)
    width = 2 * body.cavity_half_width
    ivc = vessels.vena_cava(rng, spine)
    hilum = np.array([-0.12 * width, ivc.y - rng.uniform(15, 30), -0.55 * liver.height])
    confluence = np.array([ivc.x, ivc.y, -rng.uniform(10, 20)])
    parts: list[Part] = [
        Torso.random(rng, body),
        Table.random(rng, body),
        spine,
        Psoas(spine, top=-rng.uniform(90, 120)),
        vessels.aorta(rng, spine),
        *organs.kidneys(rng, body, spine),
        organs.spleen(rng, body),
        organs.stomach(rng, body),
        organs.pancreas(rng, body, spine),
        *organs.bowel(rng, body, liver.height),
        organs.heart(rng, body),
        Layered(liver, ((0, Tissue.LIVER),), label=1),
        *vessels.portal_tree(rng, hilum, width),
        *vessels.hepatic_tree(rng, confluence, width),
        ivc,
        organs.gallbladder(rng, body, liver.height),
    ]
    return body, liver, parts
