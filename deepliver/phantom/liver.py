"""The liver: a wedge under the right dome, with a big right lobe and a tapering left lobe."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from deepliver.phantom.body import Body
from deepliver.phantom.shapes import (
    Ellipsoid,
    Points,
    Wobble,
    axis_rotation,
    smooth_union,
    union_bounds,
)

Y_AXIS = np.array([0.0, 1.0, 0.0])
Z_AXIS = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class Liver:
    """Right lobe, left lobe and a central bridge, smoothly joined, with the visceral (lower,
    back) surface scooped concave, the top pressed under the diaphragm and the outer surface
    pressed against the wall, which makes it convex."""

    body: Body
    right: Ellipsoid
    left: Ellipsoid
    bridge: Ellipsoid
    hollow: Ellipsoid  # removed: the concave visceral surface
    wobble: Wobble  # one deformation for all lobes, evaluated once
    height: float  # cranio-caudal, 130-170 mm

    @classmethod
    def random(cls, rng: np.random.Generator, body: Body) -> Liver:
        # Adult livers vary less than bodies: a thin patient's liver fills more of the cavity
        # (the cavity clip keeps it inside), a large patient's less.
        A = float(np.clip(body.cavity_half_width, 125, 150))
        front = float(np.clip(body.cavity_front, 85, 115))
        back = body.back - body.wall
        height = rng.uniform(130, 170)
        wobble = Wobble.random(rng, rng.uniform(4, 9), (70, 160), waves=4)
        tilt = axis_rotation(Y_AXIS, np.radians(rng.uniform(15, 30)))  # lower tip swings laterally
        right = Ellipsoid(
            center=np.array([-0.5 * A, rng.uniform(-0.12, 0.05) * front, -0.45 * height]),
            radii=np.array([0.52 * A, rng.uniform(0.75, 0.9) * (front + back) / 2, 0.58 * height]),
            axes=tilt,
        )
        left_reach = rng.uniform(0.45, 0.8) * A
        left = Ellipsoid(
            center=np.array([left_reach * 0.45 - 0.1 * A, -0.5 * front, -0.28 * height]),
            radii=np.array(
                [
                    left_reach * 0.75 + 0.1 * A,
                    rng.uniform(0.25, 0.35) * front,
                    rng.uniform(0.18, 0.25) * height,
                ]
            ),
            axes=axis_rotation(Z_AXIS, np.radians(rng.uniform(-10, 15))),
            taper=rng.uniform(0.3, 0.6),
        )
        bridge = Ellipsoid(
            center=np.array([-0.15 * A, -0.1 * front, -0.3 * height]),
            radii=np.array([0.3 * A, 0.45 * front, 0.3 * height]),
        )
        hollow = Ellipsoid(
            center=np.array([-0.05 * A, 0.25 * back, -0.95 * height]),
            radii=np.array([0.45 * A, 0.45 * back, 0.38 * height]),
        )
        return cls(body, right, left, bridge, hollow, wobble, height)

    def scaled(self, factor: float) -> Liver:
        """The same liver grown or shrunk about the top of the right dome, so it stays under the
        diaphragm in the right upper quadrant while its volume is tuned (sizing.py).

        Height changes as the square root of ``factor``: a liver that must grow in a flat
        patient fills more of the cavity's cross-section instead of reaching into the pelvis.
        """
        anchor = np.array([self.body.right_dome_x, 0.0, 0.0])
        stretch = np.array([factor, factor, np.sqrt(factor)])

        def grow(e: Ellipsoid) -> Ellipsoid:
            axes = np.eye(3) if e.axes is None else e.axes
            # Scale in the patient frame, then read the radii back along the shape's own axes.
            radii = np.linalg.norm(stretch[:, None] * axes * e.radii, axis=0)
            return replace(e, center=anchor + stretch * (e.center - anchor), radii=radii)

        return replace(
            self,
            right=grow(self.right),
            left=grow(self.left),
            bridge=grow(self.bridge),
            hollow=grow(self.hollow),
            height=float(np.sqrt(factor)) * self.height,
        )

    def bounds(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        margin += float(np.sum(self.wobble.amplitudes))
        low, high = union_bounds(
            self.right.bounds(margin), self.left.bounds(margin), self.bridge.bounds(margin)
        )
        return low, np.minimum(high, [np.inf, np.inf, margin + 5.0])

    def sdf(self, p: Points) -> np.ndarray:
        lobes = smooth_union(self.right.sdf(p), self.left.sdf(p), 25)
        lobes = smooth_union(lobes, self.bridge.sdf(p), 20)
        lobes = np.maximum(lobes + self.wobble(p), -self.hollow.sdf(p))
        under_dome = p.z - self.body.dome(p.x, p.y)
        inside_wall = -self.body.cavity_depth(p)
        return np.maximum(np.maximum(lobes, under_dome), inside_wall)
