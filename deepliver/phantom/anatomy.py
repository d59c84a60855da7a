"""One random patient: every part in painting order (later parts nestle against earlier ones)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepliver.phantom import organs, vessels
from deepliver.phantom.body import Body, Table, Torso
from deepliver.phantom.liver import Liver
from deepliver.phantom.parts import Layered
from deepliver.phantom.render import Part
from deepliver.phantom.spine import Psoas, Spine
from deepliver.phantom.tissues import Tissue


@dataclass(frozen=True)
class Anatomy:
    body: Body
    liver: Liver
    parts: list[Part]


def random_anatomy(rng: np.random.Generator) -> Anatomy:
    body = Body.random(rng)
    spine = Spine.random(rng, body)
    liver = Liver.random(rng, body)
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
    return Anatomy(body, liver, parts)
