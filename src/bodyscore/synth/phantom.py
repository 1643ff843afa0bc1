"""Rasterise a :class:`~bodyscore.synth.anatomy.BodyPlan` into Hounsfield units.

Every structure is an analytic shape (elliptic tube with z-varying centre and radii,
ellipsoid, rod = capsule around a 3-D segment, rib = oblique elliptic ring) painted in
anatomical order onto a coarse in-plane grid (≈ 2.5 mm pixels) at the exact output slice
positions; :func:`render` then upsamples in-plane bilinearly and adds Gaussian noise.
All arrays are (z, y, x); world coordinates are RAS+ mm (x → patient left, y → anterior,
z → head); the patient lies supine, back towards −y.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np

from bodyscore.synth.anatomy import VERTEBRAE, BodyPlan

__all__ = ["Grid", "render"]

logger = logging.getLogger(__name__)

_AIR = -1000.0
_COARSE_PIXEL_MM = 2.5
_CHUNK_SLICES = 24


@dataclass(frozen=True)
class Grid:
    """Output sampling grid.

    Attributes
    ----------
    z_mm : numpy.ndarray, shape (z,)
        World z of each slice (increasing).
    x_mm, y_mm : numpy.ndarray, shapes (x,), (y,)
        World x / y of each output column / row.
    """

    z_mm: np.ndarray
    y_mm: np.ndarray
    x_mm: np.ndarray


class _Canvas:
    """Coarse HU canvas (z, y, x) with painting helpers; shapes are world-mm analytic."""

    def __init__(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> None:
        self.z = z
        self.y = y[None, :, None]
        self.x = x[None, None, :]
        self.hu = np.full((z.size, y.size, x.size), _AIR, dtype=np.float32)

    def slab(self, lo: float, hi: float) -> slice:
        a = int(np.searchsorted(self.z, lo, side="left"))
        b = int(np.searchsorted(self.z, hi, side="right"))
        return slice(a, b)

    def paint(
        self,
        sl: slice,
        mask: np.ndarray | None,
        hu: float | np.ndarray,
        where_below: float | None = None,
    ) -> None:
        if mask is None or sl.start >= sl.stop:
            return
        target = self.hu[sl]
        if where_below is not None:
            mask = mask & (target < where_below)
        if isinstance(hu, np.ndarray):
            target[mask] = np.broadcast_to(hu, target.shape)[mask]
        else:
            target[mask] = hu

    def tube(
        self,
        knots_z: list[float],
        cx: list[float],
        cy: list[float],
        a: list[float],
        b: list[float],
        *,
        power: float = 2.0,
    ) -> tuple[slice, np.ndarray | None]:
        """Elliptic (super-elliptic) tube with piecewise-linear centre and semi-axes."""
        sl = self.slab(knots_z[0], knots_z[-1])
        if sl.start >= sl.stop:
            return sl, None
        zs = self.z[sl]
        kz = np.asarray(knots_z)
        ccx = np.interp(zs, kz, cx)[:, None, None]
        ccy = np.interp(zs, kz, cy)[:, None, None]
        aa = np.maximum(np.interp(zs, kz, a), 1e-3)[:, None, None]
        bb = np.maximum(np.interp(zs, kz, b), 1e-3)[:, None, None]
        ys, xs = self.box(
            float((ccx - aa).min()),
            float((ccx + aa).max()),
            float((ccy - bb).min()),
            float((ccy + bb).max()),
        )
        x, y = self.x[:, :, xs], self.y[:, ys, :]
        if power == 2.0:
            d = ((x - ccx) / aa) ** 2 + ((y - ccy) / bb) ** 2
        else:
            d = np.abs((x - ccx) / aa) ** power + np.abs((y - ccy) / bb) ** power
        return sl, self.embed(sl, ys, xs, d <= 1.0)

    def ellipsoid(
        self, c: tuple[float, float, float], r: tuple[float, float, float]
    ) -> tuple[slice, np.ndarray | None]:
        zs = np.linspace(c[2] - r[2], c[2] + r[2], 17)
        f = np.sqrt(np.clip(1.0 - ((zs - c[2]) / r[2]) ** 2, 0.0, 1.0))
        n = zs.size
        return self.tube(list(zs), [c[0]] * n, [c[1]] * n, list(r[0] * f), list(r[1] * f))

    def rod(
        self, p0: tuple[float, float, float], p1: tuple[float, float, float], radius: float
    ) -> tuple[slice, np.ndarray | None]:
        """Capsule of ``radius`` mm around the segment p0–p1."""
        sl = self.slab(min(p0[2], p1[2]) - radius, max(p0[2], p1[2]) + radius)
        if sl.start >= sl.stop:
            return sl, None
        a = np.asarray(p0, dtype=np.float64)
        d = np.asarray(p1, dtype=np.float64) - a
        ys, xs = self.box(
            min(p0[0], p1[0]) - radius,
            max(p0[0], p1[0]) + radius,
            min(p0[1], p1[1]) - radius,
            max(p0[1], p1[1]) + radius,
        )
        zs = self.z[sl][:, None, None]
        px, py, pz = self.x[:, :, xs] - a[0], self.y[:, ys, :] - a[1], zs - a[2]
        t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / max(float(d @ d), 1e-9), 0.0, 1.0)
        dist2 = (px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2
        return sl, self.embed(sl, ys, xs, dist2 <= radius**2)

    def box(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        """Row and column slices of the canvas covering [x0, x1] × [y0, y1] mm."""
        x, y = self.x[0, 0], self.y[0, :, 0]
        xs = slice(int(np.searchsorted(x, x0)), int(np.searchsorted(x, x1, side="right")))
        ys = slice(int(np.searchsorted(y, y0)), int(np.searchsorted(y, y1, side="right")))
        return ys, xs

    def embed(self, sl: slice, ys: slice, xs: slice, sub: np.ndarray) -> np.ndarray:
        """A full-slab mask that is ``sub`` inside the (ys, xs) box and False elsewhere."""
        full = np.zeros((sl.stop - sl.start, self.y.shape[1], self.x.shape[2]), dtype=bool)
        full[:, ys, xs] = sub
        return full


def _linear_weights(
    coarse: np.ndarray, fine: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (i0, i1) into ``coarse`` and weight of i1 for linear interpolation at ``fine``."""
    pos = np.interp(fine, coarse, np.arange(coarse.size, dtype=np.float64))
    i0 = np.clip(np.floor(pos).astype(np.intp), 0, max(coarse.size - 2, 0))
    i1 = np.minimum(i0 + 1, coarse.size - 1)
    return i0, i1, np.clip(pos - i0, 0.0, 1.0).astype(np.float32)


def _upsample(
    block: np.ndarray,
    wy: tuple[np.ndarray, np.ndarray, np.ndarray],
    wx: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """Separable bilinear in-plane upsampling of a (k, y_coarse, x_coarse) float32 block.

    Gathers instead of matrix products: O(output) work and no BLAS threads (which stall badly
    on a loaded machine).
    """
    xi0, xi1, xw = wx
    rows = block[:, :, xi0]
    step = block[:, :, xi1]
    step -= rows
    step *= xw
    rows += step
    yi0, yi1, yw = wy
    fine = rows[:, yi0, :]
    step = rows[:, yi1, :]
    step -= fine
    step *= yw[None, :, None]
    fine += step
    return fine


class _Phantom:
    """Paints one body plan; the HU of each tissue is drawn once per patient."""

    def __init__(self, plan: BodyPlan, rng: np.random.Generator, table: bool) -> None:
        self.p = plan
        self.rng = rng
        self.table = table
        s = plan.scale
        self.s = s
        z = plan.landmarks_mm
        self.z = z
        u = rng.uniform
        dens = plan.bone_density
        c = plan.contrast
        self.hu = {
            "skin": u(20, 60),
            "fat": u(-115, -85),
            "muscle": u(40, 60),
            "visceral": u(-110, -80),
            "lung": u(-880, -800),
            "blood": u(180, 320) if c else u(35, 50),
            "myocardium": u(90, 130) if c else u(40, 55),
            "liver": u(90, 130) if c else u(50, 70),
            "spleen": u(100, 140) if c else u(40, 55),
            "kidney": u(150, 230) if c else u(25, 40),
            "bowel": u(10, 40),
            "bladder": u(0, 20),
            "brain": u(28, 40),
            "csf": u(2, 12),
            "cortical": u(900, 1400) * dens,
            "cancellous": u(180, 320) * dens,
            "disc": u(70, 110),
            "marrow": u(-60, 40),
            "teeth": u(1800, 2600),
            "eye": u(5, 20),
            "lens": u(80, 110),
            "table": u(150, 400),
        }
        # trunk outline knots (semi-axes in mm) anchored at landmarks
        g, d = plan.girth, plan.depth
        self.fat = plan.fat_mm
        self.y_back = -110.0 * d * s - 0.3 * self.fat
        self.leg_sep = 95.0 * g * s
        self.shoulder_a = 195.0 * s * u(0.95, 1.08)
        kz = [
            z["pelvis_start"] - 30 * s,
            z["femur_end"],
            z["pelvis_end"],
            z["L3"],
            z["L1"],
            z["Th10"],
            z["Th6"],
            z["Th3"],
            z["Th1"],
            z["C7"],
            z["C5"],
            z["C3"],
            z["C1"] + 10 * s,
        ]
        belly = 1.0 + 0.012 * (self.fat - 20.0)
        ka = [
            175 * g * s,
            180 * g * s,
            165 * g * s * belly,
            160 * g * s * belly,
            155 * g * s,
            160 * g * s,
            165 * g * s,
            175 * s,
            self.shoulder_a * 0.92,
            80 * s,
            58 * s,
            55 * s,
            60 * s,
        ]
        kb = [
            105 * d * s,
            110 * d * s,
            112 * d * s * belly,
            118 * d * s * belly,
            108 * d * s,
            112 * d * s,
            115 * d * s,
            105 * d * s,
            90 * d * s,
            78 * s,
            68 * s,
            66 * s,
            70 * s,
        ]
        kb = [b + 0.35 * self.fat for b in kb]
        ka = [a + 0.5 * self.fat for a in ka]
        self.trunk_z, self.trunk_a, self.trunk_b = kz, ka, kb
        self.trunk_cy = [self.y_back + b for b in kb]
        # spine: depth of the vertebral body centre above the back surface
        self.spine_knots = [
            z["pelvis_start"],
            z["L5"],
            z["L3"],
            z["L1"],
            z["Th10"],
            z["Th6"],
            z["Th2"],
            z["C7"],
            z["C4"],
            z["C1"] + 20 * s,
        ]
        self.spine_depth = [
            70 * s,
            80 * s,
            88 * s,
            80 * s,
            62 * s,
            55 * s,
            58 * s,
            60 * s,
            60 * s,
            62 * s,
        ]
        self.spine_depth = [v + 0.6 * self.fat for v in self.spine_depth]

    # -- helpers --------------------------------------------------------------------------
    def spine_y(self, zz: float) -> float:
        return self.y_back + float(np.interp(zz, self.spine_knots, self.spine_depth))

    def trunk_at(self, zz: float) -> tuple[float, float, float]:
        a = float(np.interp(zz, self.trunk_z, self.trunk_a))
        b = float(np.interp(zz, self.trunk_z, self.trunk_b))
        return a, b, self.y_back + b

    def cavity_at(self, zz: float) -> tuple[float, float, float]:
        a, b, cy = self.trunk_at(zz)
        wall = self.fat + 14.0 * self.s
        return a - wall - 8 * self.s, b - wall, cy

    # -- painting ---------------------------------------------------------------------------
    def paint(self, cv: _Canvas) -> None:
        self.table_and_body(cv)
        self.legs_and_arms(cv)
        self.pelvis_content(cv)
        self.abdomen(cv)
        self.chest(cv)
        self.mediastinum(cv)
        self.neck(cv)
        self.head(cv)
        self.spine(cv)
        self.ribs(cv)
        self.shoulder_girdle(cv)
        self.pelvis_bones(cv)
        soft = (cv.hu > -300) & (cv.hu < 200)  # coarse soft-tissue texture (≈ 2.5 mm grain)
        cv.hu[soft] += self.rng.standard_normal(int(soft.sum()), dtype=np.float32) * 6.0

    def layered_tube(  # noqa: PLR0917 - shape knots, as in _Canvas.tube
        self,
        cv: _Canvas,
        kz: list[float],
        cx: list[float],
        cy: list[float],
        ka: list[float],
        kb: list[float],
        *,
        fat: float,
        muscle: float,
        inner_hu: float | None,
        power: float = 2.0,
    ) -> None:
        h = self.hu
        layers: list[tuple[float, float]] = [
            (0.0, h["skin"]),
            (2.0, h["fat"]),
            (2.0 + fat, h["muscle"]),
        ]
        if inner_hu is not None:
            layers.append((2.0 + fat + muscle, inner_hu))
        for inset, value in layers:
            sl, m = cv.tube(
                kz,
                cx,
                cy,
                [max(a - inset, 0.1) for a in ka],
                [max(b - inset, 0.1) for b in kb],
                power=power,
            )
            cv.paint(sl, m, value)

    def table_and_body(self, cv: _Canvas) -> None:
        s, z = self.s, self.z
        if self.table:
            top = self.y_back - 3.0
            sl = slice(0, cv.z.size)
            curve = top - 4.0e-4 * cv.x**2
            upper = (cv.y <= curve) & (cv.y > curve - 3.0) & (np.abs(cv.x) < 230)
            lower = (cv.y <= curve - 45.0) & (cv.y > curve - 49.0) & (np.abs(cv.x) < 210)
            foam = (cv.y <= curve - 3.0) & (cv.y > curve - 45.0) & (np.abs(cv.x) < 220)
            shape = (cv.z.size, cv.y.shape[1], cv.x.shape[2])
            cv.paint(sl, np.broadcast_to(foam, shape), -930.0)
            cv.paint(sl, np.broadcast_to(upper | lower, shape), self.hu["table"])
        # trunk (pelvis .. skull base), slightly rectangular
        n = len(self.trunk_z)
        self.layered_tube(
            cv,
            self.trunk_z,
            [0.0] * n,
            self.trunk_cy,
            self.trunk_a,
            self.trunk_b,
            fat=self.fat,
            muscle=14.0 * s,
            inner_hu=self.hu["visceral"],
            power=2.3,
        )
        # paraspinal muscles
        for side in (-1, 1):
            kz = [z["pelvis_end"] - 40 * s, z["L3"], z["Th10"], z["Th2"], z["C5"]]
            cx = [side * 35 * s] * 5
            cy = [self.spine_y(q) - 45 * s for q in kz]
            sl, m = cv.tube(
                kz,
                cx,
                cy,
                [30 * s, 32 * s, 26 * s, 22 * s, 16 * s],
                [28 * s, 30 * s, 24 * s, 20 * s, 16 * s],
            )
            cv.paint(sl, m, self.hu["muscle"], where_below=20.0)
            sl, m = cv.tube(kz, [side * 18 * s] * 5, cy, [18 * s] * 5, [18 * s] * 5)
            cv.paint(sl, m, self.hu["muscle"], where_below=20.0)

    def legs_and_arms(self, cv: _Canvas) -> None:
        s, z, p = self.s, self.z, self.p
        crotch = z["pelvis_start"] - 30 * s
        low = p.thigh_start_mm - 100 * s
        leg_a = 82 * p.girth * s + 0.5 * self.fat
        leg_b = 75 * p.depth * s + 0.5 * self.fat
        for side in (-1, 1):
            kz = [low, crotch - 40 * s, crotch + 5]
            cx = [side * self.leg_sep * 0.95, side * self.leg_sep, side * self.leg_sep * 1.05]
            ka = [leg_a * 0.85, leg_a, leg_a * 1.05]
            kb = [leg_b * 0.85, leg_b, leg_b * 1.05]
            cy = [self.y_back + b + 5 for b in kb]
            self.layered_tube(cv, kz, cx, cy, ka, kb, fat=self.fat * 0.7, muscle=1e4, inner_hu=None)
            # femoral shaft (cortex + marrow)
            head_c = self.femoral_head_centre(side)
            troch = (side * 125 * s * p.girth**0.3, head_c[1] - 5 * s, head_c[2] - 55 * s)
            knee = (side * self.leg_sep * 0.9, cy[0] + 5 * s, z["femur_end"] - 430 * s)
            sl, m = cv.rod(troch, knee, 14 * s)
            cv.paint(sl, m, self.hu["cortical"])
            sl, m = cv.rod(troch, knee, 8 * s)
            cv.paint(sl, m, self.hu["marrow"])
            sl, m = cv.rod(head_c, troch, 16 * s)
            cv.paint(sl, m, self.hu["cancellous"] + 80)
            sl, m = cv.ellipsoid(head_c, (23 * s, 23 * s, 23 * s))
            cv.paint(sl, m, self.hu["cancellous"] + 150)
        self.arms(cv)

    def femoral_head_centre(self, side: int) -> tuple[float, float, float]:
        s = self.s
        r = 23 * s
        return (
            side * 88 * s * self.p.girth**0.3,
            self.spine_y(self.z["L5"]) + 40 * s,
            self.z["femur_end"] - r,
        )

    def arms(self, cv: _Canvas) -> None:
        s, z, p = self.s, self.z, self.p
        r_arm = 42 * s + 0.35 * self.fat
        for side in (-1, 1):
            shoulder = (side * (self.shoulder_a - 32 * s), self.y_back + 100 * s, z["Th2"])
            if p.arms_up:
                elbow = (side * 120 * s, self.y_back + 90 * s, z["head_end"] - 40 * s)
                hand = (side * 70 * s, self.y_back + 110 * s, z["head_end"] + 200 * s)
            else:
                elbow = (side * (self.shoulder_a + 35 * s), self.y_back + 85 * s, z["L2"] + 10 * s)
                hand = (
                    side * (self.shoulder_a + 40 * s),
                    self.y_back + 110 * s,
                    z["pelvis_start"] - 90 * s,
                )
            for a, b, r in ((shoulder, elbow, r_arm), (elbow, hand, r_arm * 0.75)):
                sl, m = cv.rod(a, b, r)
                cv.paint(sl, m, self.hu["fat"])
                sl, m = cv.rod(a, b, r - 0.3 * self.fat - 2)
                cv.paint(sl, m, self.hu["muscle"])
            sl, m = cv.rod(shoulder, elbow, 11 * s)
            cv.paint(sl, m, self.hu["cortical"])
            sl, m = cv.rod(shoulder, elbow, 6 * s)
            cv.paint(sl, m, self.hu["marrow"])
            for o in (-5 * s, 5 * s):  # radius and ulna
                a = (elbow[0] + o, elbow[1], elbow[2])
                b = (hand[0] + o, hand[1], hand[2])
                sl, m = cv.rod(a, b, 7 * s)
                cv.paint(sl, m, self.hu["cortical"] * 0.8)
            sl, m = cv.ellipsoid(shoulder, (24 * s, 24 * s, 24 * s))
            cv.paint(sl, m, self.hu["cancellous"] + 120)

    def pelvis_content(self, cv: _Canvas) -> None:
        s, z = self.s, self.z
        fill = self.rng.uniform(0.5, 1.1)
        c = (0.0, self.spine_y(z["L5"]) + 105 * s, z["femur_end"] + 5 * s)
        sl, m = cv.ellipsoid(c, (45 * s * fill, 38 * s * fill, 38 * s * fill))
        cv.paint(sl, m, self.hu["bladder"])
        # rectum (with a little air)
        c = (0.0, self.spine_y(z["L5"]) + 20 * s, z["femur_end"])
        sl, m = cv.ellipsoid(c, (18 * s, 16 * s, 45 * s))
        cv.paint(sl, m, self.hu["bowel"])
        sl, m = cv.ellipsoid((c[0], c[1] + 4, c[2]), (8 * s, 7 * s, 20 * s))
        cv.paint(sl, m, -900.0)

    def abdomen(self, cv: _Canvas) -> None:
        s, z, rng = self.s, self.z, self.rng
        # bowel loops with air pockets (anterior = non-dependent, supine)
        lo, hi = z["femur_end"] + 30 * s, z["L1"] + 10 * s
        for _ in range(int(rng.integers(50, 80))):
            zz = rng.uniform(lo, hi)
            ca, cb, cy = self.cavity_at(zz)
            cx = rng.uniform(-0.75, 0.75) * ca
            cyy = cy + rng.uniform(-0.1, 0.8) * cb
            r = rng.uniform(12, 28) * s
            sl, m = cv.ellipsoid((cx, cyy, zz), (r, r * rng.uniform(0.7, 1.2), r * 1.5))
            cv.paint(sl, m, self.hu["bowel"] + rng.uniform(-10, 30))
            if rng.random() < 0.45:
                ra = r * rng.uniform(0.3, 0.7)
                sl, m = cv.ellipsoid((cx, cyy + r - ra, zz), (ra, ra, ra))
                cv.paint(sl, m, -950.0)
        # kidneys: the landmark is where both are well visible (lower third of the right one)
        length = 110 * s
        for side, dz in ((-1, 0.0), (1, 12 * s)):
            kc = (side * 62 * s, self.spine_y(z["L2"]) + 5 * s, z["kidney"] + 0.25 * length + dz)
            sl, m = cv.ellipsoid(kc, (27 * s, 24 * s, 0.5 * length))
            cv.paint(sl, m, self.hu["kidney"])
            sl, m = cv.ellipsoid(
                (kc[0] - side * 6 * s, kc[1] + 4, kc[2]), (12 * s, 10 * s, 0.3 * length)
            )
            cv.paint(sl, m, self.hu["kidney"] * 0.6 if self.p.contrast else -40.0)
        # aorta and IVC along the spine (abdominal part)
        self.vessel_column(cv, z["L4"], z["Th10"])
        # spleen, stomach, liver (liver dome at liver_end)
        top = z["lung_start"] + 0.45 * (z["liver_end"] - z["lung_start"])
        ca, cb, cy = self.cavity_at(top)
        sl, m = cv.ellipsoid((0.62 * ca, cy - 0.35 * cb, top - 55 * s), (40 * s, 48 * s, 55 * s))
        cv.paint(sl, m, self.hu["spleen"])
        sc = (0.35 * ca, cy + 0.35 * cb, top - 50 * s)
        sl, m = cv.ellipsoid(sc, (0.35 * ca, 0.35 * cb, 55 * s))
        cv.paint(sl, m, self.hu["bowel"])
        sl, m = cv.ellipsoid(
            (sc[0], sc[1] + 0.2 * cb, sc[2] + 25 * s), (0.3 * ca, 0.2 * cb, 25 * s)
        )
        cv.paint(sl, m, -950.0)
        h = 170 * s * self.rng.uniform(0.9, 1.1)
        ca, cb, cy = self.cavity_at(z["liver_end"] - 0.3 * h)
        lc = (-0.3 * ca, cy + 0.05 * cb, z["liver_end"] - 0.5 * h)
        sl, m = cv.ellipsoid(lc, (0.72 * ca, 0.82 * cb, 0.5 * h))
        if m is not None:
            inside = m & (cv.x < 0.35 * ca)
            cv.paint(sl, inside, self.hu["liver"])

    def vessel_column(self, cv: _Canvas, lo: float, hi: float) -> None:
        s = self.s
        r = 11 * s
        pts = [(12 * s, self.spine_y(q) + 30 * s, q) for q in np.linspace(lo, hi, 5)]
        for a, b in itertools.pairwise(pts):
            sl, m = cv.rod(a, b, r)
            cv.paint(sl, m, self.hu["blood"])
            a2 = (-22 * s, a[1] + 5 * s, a[2])
            b2 = (-22 * s, b[1] + 5 * s, b[2])
            sl, m = cv.rod(a2, b2, r * 1.1)
            cv.paint(sl, m, self.hu["blood"] * 0.8)

    def lung_profile(self, t: np.ndarray) -> np.ndarray:
        bottom = np.clip(t / 0.18, 0.0, 1.0) ** 0.5
        top = np.clip((1.0 - t) / 0.22, 0.0, 1.0) ** 0.6
        return np.where((t > 0) & (t < 1), bottom * top, 0.0)

    def chest(self, cv: _Canvas) -> None:
        s, z, rng = self.s, self.z, self.rng
        ls, le = z["lung_start"], z["lung_end"]
        kz = list(np.linspace(ls, le, 24))
        t = (np.asarray(kz) - ls) / (le - ls)
        t[0], t[-1] = 1e-3, 1 - 1e-3
        f = self.lung_profile(t)
        for side in (-1, 1):
            cav = [self.cavity_at(q) for q in kz]
            lx = [side * (0.5 - 0.1 * (tt > 0.85)) * c[0] for c, tt in zip(cav, t, strict=True)]
            ly = [
                c[2] - (0.2 + 0.5 * (1 - min(tt / 0.25, 1.0))) * c[1] * 0.5
                for c, tt in zip(cav, t, strict=True)
            ]
            ka = [0.5 * c[0] * ff for c, ff in zip(cav, f, strict=True)]
            kb = [0.92 * c[1] * ff for c, ff in zip(cav, f, strict=True)]
            sl, m = cv.tube(kz, lx, ly, ka, kb, power=2.2)
            cv.paint(sl, m, self.hu["lung"])
        lung_slab = cv.slab(ls, le)
        # vessels in the lungs
        for _ in range(int(rng.integers(60, 110))):
            zz = rng.uniform(ls + 0.15 * (le - ls), le - 0.1 * (le - ls))
            ca, cb, cy = self.cavity_at(zz)
            side = 1 if rng.random() < 0.5 else -1
            cx = side * ca * rng.uniform(0.15, 0.7)
            r = rng.uniform(1.5, 4.5) * s
            p0 = (cx, cy + rng.uniform(-0.6, 0.6) * cb, zz)
            p1 = (
                cx * rng.uniform(0.3, 0.8),
                cy + rng.uniform(-0.3, 0.3) * cb,
                zz + rng.uniform(-30, 30) * s,
            )
            sl, m = cv.rod(p0, p1, r)
            cv.paint(sl, m, self.hu["blood"] * 0.5 + 10, where_below=-500.0)
        if lung_slab.start < lung_slab.stop:
            lungs = cv.hu[lung_slab] < -500
            block = cv.hu[lung_slab]
            block[lungs] += self.rng.standard_normal(int(lungs.sum()), dtype=np.float32) * 25.0

    def mediastinum(self, cv: _Canvas) -> None:
        """Heart, aorta (descending, arch, ascending), trachea and main bronchi."""
        s, z = self.s, self.z
        hz0, hz1 = z["Th10"], z["Th5"]
        ca, cb, cy = self.cavity_at(0.5 * (hz0 + hz1))
        hc = (0.15 * ca, cy + 0.22 * cb, 0.5 * (hz0 + hz1))
        hr = (0.42 * ca, 0.5 * cb, 0.5 * (hz1 - hz0))
        sl, m = cv.ellipsoid(hc, hr)
        cv.paint(sl, m, self.hu["myocardium"])
        sl, m = cv.ellipsoid(
            (hc[0] - 8 * s, hc[1] + 4 * s, hc[2] + 5 * s), (hr[0] * 0.6, hr[1] * 0.55, hr[2] * 0.7)
        )
        cv.paint(sl, m, self.hu["blood"])
        # aorta: descending along the spine, arch at Th3/Th4, ascending into the heart
        r = 12 * s
        desc_top = (12 * s, self.spine_y(z["Th4"]) + 32 * s, z["Th4"])
        self.vessel_column(cv, z["Th10"], z["Th4"])
        arch = (0.0, self.spine_y(z["Th3"]) + 60 * s, z["Th3"] + 5 * s)
        asc_top = (-15 * s, self.spine_y(z["Th4"]) + 85 * s, z["Th4"])
        asc_bottom = (-5 * s, hc[1] + 10 * s, hc[2])
        for a, b in ((desc_top, arch), (arch, asc_top), (asc_top, asc_bottom)):
            sl, m = cv.rod(a, b, r * 1.1)
            cv.paint(sl, m, self.hu["blood"])
        # trachea and main bronchi (air)
        carina = (0.0, self.spine_y(z["Th5"]) + 35 * s, z["Th5"])
        top = (0.0, self.spine_y(z["C6"]) + 35 * s, z["C6"])
        sl, m = cv.rod(carina, top, 10 * s)
        cv.paint(sl, m, self.hu["muscle"])
        sl, m = cv.rod(carina, top, 8 * s)
        cv.paint(sl, m, -990.0)
        for side in (-1, 1):
            b = (side * 45 * s, carina[1] - 5 * s, carina[2] - 25 * s)
            sl, m = cv.rod(carina, b, 6 * s)
            cv.paint(sl, m, -990.0)

    def neck(self, cv: _Canvas) -> None:
        s, z = self.s, self.z
        for side in (-1, 1):
            kz = [z["Th1"], z["C1"]]
            cx = [side * 25 * s] * 2
            cy = [self.spine_y(q) + 38 * s for q in kz]
            sl, m = cv.tube(kz, cx, cy, [6 * s] * 2, [6 * s] * 2)
            cv.paint(sl, m, self.hu["blood"])
            sl, m = cv.tube(kz, [side * 38 * s] * 2, cy, [8 * s] * 2, [7 * s] * 2)
            cv.paint(sl, m, self.hu["blood"] * 0.9)

    def head(self, cv: _Canvas) -> None:
        s, z, rng, h = self.s, self.z, self.rng, self.hu
        vertex = z["head_end"]
        base = z["C1"] + 12 * s
        rz = 0.56 * (vertex - base)
        rx, ry = 72 * s * rng.uniform(0.93, 1.05), 92 * s * rng.uniform(0.95, 1.05)
        hcy = self.y_back + ry + 12 * s
        cz = vertex - rz
        self.head_geom = (hcy, rx, ry)
        # cranium: skin, skull, brain
        n = 17
        zz = np.linspace(cz - rz, vertex, n)
        f = np.sqrt(np.clip(1 - ((zz - cz) / rz) ** 2, 0.0, 1.0))
        keep = zz >= base - 25 * s
        zz, f = zz[keep], f[keep]
        ones = [0.0] * zz.size
        for inset, value in ((0.0, h["skin"]), (4.0, h["cortical"] * 1.1), (11 * s, h["brain"])):
            ink = inset * (1 - 0.0 * f)
            sl, m = cv.tube(
                list(zz),
                ones,
                [hcy] * zz.size,
                list(np.maximum(rx * f - ink, 0.1)),
                list(np.maximum(ry * f - ink, 0.1)),
            )
            if inset == 0.0:
                # the vertex is where skin+bone end: keep the outline exactly at head_end
                pass
            cv.paint(sl, m, value)
        # face block (skin/fat/muscle) from chin to eyes
        fz = [z["teeth"] - 45 * s, z["teeth"], z["eyes_end"] + 5 * s]
        fcy = [hcy + 0.45 * ry, hcy + 0.45 * ry, hcy + 0.4 * ry]
        self.layered_tube(
            cv,
            fz,
            [0.0] * 3,
            fcy,
            [50 * s, 58 * s, 66 * s],
            [0.6 * ry, 0.68 * ry, 0.66 * ry],
            fat=3.0,
            muscle=4.0,
            inner_hu=h["muscle"],
        )
        # external nose: tip first seen at the nose landmark
        nz = [z["nose"], z["nose"] + 8 * s, z["eyes_end"] - 18 * s]
        front = fcy[1] + 0.66 * ry
        sl, m = cv.tube(
            nz,
            [0.0] * 3,
            [front + 6 * s, front + 10 * s, front],
            [9 * s, 15 * s, 7 * s],
            [10 * s, 18 * s, 8 * s],
        )
        cv.paint(sl, m, h["skin"])
        # skull base plate (foramen magnum left open for the cord)
        sl, m = cv.tube(
            [base - 6 * s, base + 6 * s], [0.0, 0.0], [hcy, hcy], [rx * 0.75] * 2, [ry * 0.7] * 2
        )
        cv.paint(sl, m, h["cortical"])
        sl, m = cv.tube(
            [base - 8 * s, base + 8 * s],
            [0.0, 0.0],
            [self.spine_y(base) - 25 * s] * 2,
            [12 * s] * 2,
            [14 * s] * 2,
        )
        cv.paint(sl, m, h["csf"])
        # ventricles
        for side in (-1, 1):
            sl, m = cv.ellipsoid((side * 10 * s, hcy + 5 * s, cz), (6 * s, 28 * s, 12 * s))
            cv.paint(sl, m, h["csf"])
        # maxilla + nasal cavity + sinuses
        self.horseshoe(
            cv,
            z["teeth"] + 9 * s,
            z["nose"] + 10 * s,
            cy=fcy[1] + 0.2 * ry,
            a=42 * s,
            b=0.55 * ry,
            thick=5 * s,
            hu=h["cortical"] * 0.7,
        )
        sl, m = cv.tube(
            [z["nose"] - 5 * s, z["eyes_end"] - 20 * s],
            [0.0] * 2,
            [fcy[1] + 0.5 * ry] * 2,
            [7 * s] * 2,
            [0.18 * ry] * 2,
        )
        cv.paint(sl, m, -980.0)
        for side in (-1, 1):
            sl, m = cv.ellipsoid(
                (side * 26 * s, fcy[1] + 0.35 * ry, z["nose"] + 5 * s), (11 * s, 12 * s, 14 * s)
            )
            cv.paint(sl, m, -980.0)
        # teeth (horseshoe around the occlusal plane) and mandible
        self.horseshoe(
            cv,
            z["teeth"] - 9 * s,
            z["teeth"] + 9 * s,
            cy=fcy[1] + 0.2 * ry,
            a=38 * s,
            b=0.5 * ry,
            thick=8 * s,
            hu=h["teeth"],
        )
        self.horseshoe(
            cv,
            z["teeth"] - 45 * s,
            z["teeth"] - 9 * s,
            cy=fcy[1] + 0.15 * ry,
            a=45 * s,
            b=0.58 * ry,
            thick=7 * s,
            hu=h["cortical"],
        )
        for side in (-1, 1):
            sl, m = cv.rod(
                (side * 46 * s, fcy[1] - 0.1 * ry, z["teeth"] - 20 * s),
                (side * 50 * s, hcy - 0.05 * ry, base + 5 * s),
                6 * s,
            )
            cv.paint(sl, m, h["cortical"])
        self.eyes(cv, hcy + ry - 22 * s)

    def eyes(self, cv: _Canvas, front_y: float) -> None:
        """Eye bulbs (top exactly at eyes_end) with lens, orbital fat and bony orbit."""
        s, h = self.s, self.hu
        re = 12 * s
        for side in (-1, 1):
            ec = (side * 32 * s, front_y, self.z["eyes_end"] - re)
            sl, m = cv.ellipsoid(ec, (re + 8 * s, re + 6 * s, re + 4 * s))
            cv.paint(sl, m, h["cortical"] * 0.8)
            sl, m = cv.ellipsoid(ec, (re + 4 * s, re + 3 * s, re))
            cv.paint(sl, m, h["fat"])
            sl, m = cv.ellipsoid(ec, (re, re, re))
            cv.paint(sl, m, h["eye"])
            sl, m = cv.ellipsoid((ec[0], ec[1] + re - 2 * s, ec[2]), (4 * s, 2 * s, 4 * s))
            cv.paint(sl, m, h["lens"])

    def horseshoe(
        self,
        cv: _Canvas,
        z0: float,
        z1: float,
        *,
        cy: float,
        a: float,
        b: float,
        thick: float,
        hu: float,
    ) -> None:
        """U-shaped arch (dental arch, mandible, maxilla), open posteriorly."""
        sl, outer = cv.tube([z0, z1], [0.0, 0.0], [cy, cy], [a, a], [b, b])
        _, inner = cv.tube([z0, z1], [0.0, 0.0], [cy, cy], [a - thick] * 2, [b - thick] * 2)
        if outer is None or inner is None:
            return
        cv.paint(sl, outer & ~inner & (cv.y > cy - 0.3 * b), hu)

    def spine(self, cv: _Canvas) -> None:
        s, h = self.s, self.hu
        p = self.p
        for name in VERTEBRAE:
            lo, hi = p.vertebra_extent_mm(name)
            c = p.landmarks_mm[name]
            height = hi - lo
            disc = 0.22 if name.startswith("L") else 0.16 if name.startswith("T") else 0.18
            gap = 0.5 * disc * height
            if name.startswith("L"):
                a, b, canal = 24 * s, 17 * s, 10 * s
            elif name.startswith("T"):
                k = int(name[2:])
                a, b, canal = (14 + 0.7 * k) * s, (12 + 0.5 * k) * s, 8 * s
            else:
                a, b, canal = 10 * s, 8 * s, 8 * s
            yc = self.spine_y(c)
            bz0, bz1 = lo + gap, hi - gap
            if name != "C1":
                sl, m = cv.tube([lo, hi], [0.0] * 2, [yc] * 2, [a] * 2, [b] * 2)
                cv.paint(sl, m, h["disc"])
                sl, m = cv.tube([bz0, bz1], [0.0] * 2, [yc] * 2, [a] * 2, [b] * 2)
                cv.paint(sl, m, h["cortical"] * 0.7)
                sl, m = cv.tube(
                    [bz0 + 1.5, bz1 - 1.5], [0.0] * 2, [yc] * 2, [a - 2.5] * 2, [b - 2.5] * 2
                )
                cv.paint(sl, m, h["cancellous"])
            if name == "C2":  # dens up into the atlas ring
                sl, m = cv.tube([bz1, hi + height], [0.0] * 2, [yc] * 2, [5 * s] * 2, [5 * s] * 2)
                cv.paint(sl, m, h["cortical"] * 0.7)
            # posterior arch, spinous and transverse processes
            ccy = yc - b - canal - 1.0
            sl, ring = cv.tube(
                [bz0, bz1], [0.0] * 2, [ccy] * 2, [canal + 5 * s] * 2, [canal + 5 * s] * 2
            )
            _, hole = cv.tube([bz0, bz1], [0.0] * 2, [ccy] * 2, [canal] * 2, [canal] * 2)
            if ring is not None and hole is not None:
                arch = ring & ~hole & (cv.y < yc - b + 2)
                if name == "C1":
                    arch = ring & ~hole
                cv.paint(sl, arch, h["cortical"] * 0.8)
            if name == "C1":
                sl, m = cv.tube([bz0, bz1], [0.0] * 2, [yc] * 2, [a + 8 * s] * 2, [b] * 2)
                if m is not None:
                    cv.paint(sl, m & (np.abs(cv.x) > 8 * s), h["cortical"] * 0.8)
            spin = 30 * s if not name.startswith("C") else 18 * s
            zc = 0.5 * (bz0 + bz1)
            sl, m = cv.rod(
                (0.0, ccy - canal, zc), (0.0, ccy - canal - spin, zc - 0.3 * height), 3.5 * s
            )
            cv.paint(sl, m, h["cortical"] * 0.8)
            span = a + (22 * s if name.startswith("L") else 14 * s)
            sl, m = cv.rod((-span, ccy + 2, zc), (span, ccy + 2, zc), 3.5 * s)
            cv.paint(sl, m, h["cortical"] * 0.8)
            sl, m = cv.tube([lo, hi], [0.0] * 2, [ccy] * 2, [canal] * 2, [canal] * 2)
            cv.paint(sl, m, h["csf"])

    def ribs(self, cv: _Canvas) -> None:
        s, h, p = self.s, self.hu, self.p
        for k in range(1, 13):
            name = f"Th{k}"
            zp = p.landmarks_mm[name] + 0.2 * (p.vertebra_extent_mm(name)[1] - p.landmarks_mm[name])
            drop = (35 + 7 * min(k, 7)) * s
            ca, cb, cy = self.cavity_at(zp - 0.5 * drop)
            grow = 0.55 + 0.45 * min(k / 4, 1.0)
            ra, rb = (ca + 6 * s) * grow, cb + 6 * s
            ycen = cy + (1 - grow) * cb * 0.3
            phi_max = np.pi * (0.93 if k <= 7 else 0.8 if k <= 10 else 0.5)
            sl = cv.slab(zp - drop - 8 * s, zp + 8 * s)
            if sl.start >= sl.stop:
                continue
            zs = cv.z[sl][:, None, None]
            dx, dy = np.abs(cv.x) / ra, (cv.y - ycen) / rb
            phi = np.arctan2(dx, -dy)
            rho = np.sqrt(dx**2 + dy**2)
            reff = np.sqrt((ra * np.sin(phi)) ** 2 + (rb * np.cos(phi)) ** 2)
            zr = zp - drop * 0.5 * (1 - np.cos(phi))
            inplane = (np.abs(rho - 1.0) * reff < 4.5 * s) & (phi > 0.12) & (phi < phi_max)
            m = inplane & (np.abs(zs - zr) < 6 * s)
            cv.paint(sl, m, h["cortical"] * 0.75)
            # costovertebral neck from the vertebra to the ring
            yv = self.spine_y(p.landmarks_mm[name])
            for side in (-1, 1):
                start = (side * 12 * s, yv - 10 * s, zp)
                end = (side * ra * np.sin(0.2), ycen - rb * np.cos(0.2), zp)
                sl2, m2 = cv.rod(start, end, 4.5 * s)
                cv.paint(sl2, m2, h["cortical"] * 0.75)

    def shoulder_girdle(self, cv: _Canvas) -> None:
        s, z, h = self.s, self.z, self.hu
        # sternum: manubrium (Th2..Th4) and body down to Th9
        kz = [z["Th9"] - 10 * s, z["Th4"], z["Th2"] - 5 * s]
        fy = [self.trunk_at(q)[2] + self.trunk_at(q)[1] - self.fat - 18 * s for q in kz]
        sl, m = cv.tube(kz, [0.0] * 3, fy, [14 * s, 16 * s, 26 * s], [6 * s] * 3)
        cv.paint(sl, m, h["cortical"] * 0.55)
        notch = (0.0, fy[-1], z["Th2"])
        for side in (-1, 1):
            acrom = (side * (self.shoulder_a - 35 * s), self.y_back + 95 * s, z["Th1"] + 15 * s)
            sl, m = cv.rod((side * 22 * s, notch[1], notch[2]), acrom, 7 * s)
            cv.paint(sl, m, h["cortical"] * 0.8)
            # scapula: a plate on the back, medial border vertical, tip at Th7
            kz = [z["Th7"], z["Th4"], z["Th1"]]
            for zz, frac in zip(
                np.linspace(kz[0], kz[-1], 10), np.linspace(0.2, 1.0, 10), strict=True
            ):
                x0 = side * 55 * s
                x1 = side * (55 + 95 * frac) * s
                yb = self.y_back + self.fat + 28 * s
                sl, m = cv.rod((x0, yb, zz), (x1, yb + 20 * s * frac, zz), 3.5 * s)
                cv.paint(sl, m, h["cortical"] * 0.7)

    def pelvis_bones(self, cv: _Canvas) -> None:
        s, z, h = self.s, self.z, self.hu
        ys = self.spine_y(z["L5"])
        # sacrum: wedge from the L5/S1 disc down and back to the coccyx
        l5_lo = self.p.vertebra_extent_mm("L5")[0]
        kz = [z["pelvis_start"] + 15 * s, z["femur_end"], l5_lo]
        sl, m = cv.tube(
            kz,
            [0.0] * 3,
            [ys - 45 * s, ys - 30 * s, ys - 5 * s],
            [8 * s, 40 * s, 50 * s],
            [8 * s, 14 * s, 18 * s],
        )
        cv.paint(sl, m, h["cancellous"] + 60)
        for side in (-1, 1):
            # iliac wing: plate from the sacroiliac joint to the anterior superior spine;
            # its crest top (mid-wing) is pelvis_end.
            top = z["pelvis_end"]
            lo = z["femur_end"] - 5 * s
            for zz in np.linspace(lo, top, 18):
                frac = (zz - lo) / (top - lo)
                half = np.sqrt(max(1.0 - max((frac - 0.55) / 0.45, 0.0) ** 2, 0.0))
                p0 = np.array([side * 45 * s, ys - 25 * s, zz])
                p1 = np.array([side * (95 + 40 * frac) * s, ys + (40 + 40 * frac) * s, zz])
                mid = 0.5 * (p0 + p1)
                a = mid + (p0 - mid) * half
                b = mid + (p1 - mid) * half
                if half > 0:
                    sl, m = cv.rod(tuple(a), tuple(b), max(7.0 * s, 0.5 * (top - lo) / 17))
                    cv.paint(sl, m, h["cortical"] * 0.7)
            # acetabulum shell around the femoral head, ischium, pubis
            fc = self.femoral_head_centre(side)
            sl = cv.slab(fc[2] - 33 * s, z["femur_end"] + 8 * s)
            if sl.start < sl.stop:
                d2 = (
                    (cv.x - fc[0]) ** 2
                    + (cv.y - fc[1]) ** 2
                    + (cv.z[sl][:, None, None] - fc[2]) ** 2
                )
                cup = (d2 < (33 * s) ** 2) & (d2 > (25 * s) ** 2)
                cv.paint(sl, cup & (np.abs(cv.x) < np.abs(fc[0]) + 10 * s), h["cortical"] * 0.7)
            isch = (side * 62 * s, fc[1] - 30 * s)
            sl, m = cv.tube(
                [z["pelvis_start"], fc[2]], [isch[0]] * 2, [isch[1]] * 2, [15 * s] * 2, [22 * s] * 2
            )
            cv.paint(sl, m, h["cortical"] * 0.7)
            sl, m = cv.rod(
                (side * 10 * s, fc[1] + 50 * s, z["pelvis_start"] + 25 * s),
                (side * 60 * s, fc[1] + 25 * s, z["pelvis_start"] + 35 * s),
                8 * s,
            )
            cv.paint(sl, m, h["cortical"] * 0.7)


def coarse_axis(fine: np.ndarray) -> np.ndarray:
    """Coarse sampling (≈ 2.5 mm) covering a fine output axis (mm, increasing)."""
    lo, hi = float(fine[0]), float(fine[-1])
    if fine.size < 2 or (hi - lo) / (fine.size - 1) >= _COARSE_PIXEL_MM:
        return np.asarray(fine, dtype=np.float64)
    n = max(int(np.ceil((hi - lo) / _COARSE_PIXEL_MM)) + 1, 2)
    return np.linspace(lo, hi, n)


def render(
    plan: BodyPlan, grid: Grid, rng: np.random.Generator, *, table: bool, noise_sd_hu: float
) -> np.ndarray:
    """Render the body plan on ``grid`` as int16 HU.

    Parameters
    ----------
    plan : BodyPlan
        Landmark heights and habitus.
    grid : Grid
        Output slice positions and in-plane sample positions (world mm).
    rng : numpy.random.Generator
        Source of the organ details and the noise.
    table : bool
        Draw the CT table under the patient.
    noise_sd_hu : float
        Standard deviation of the white Gaussian noise added at full resolution (HU).

    Returns
    -------
    numpy.ndarray, int16, shape (z, y, x)
        HU, clipped to [-1024, 3071].
    """
    ycs, xcs = coarse_axis(grid.y_mm), coarse_axis(grid.x_mm)
    ph = _Phantom(plan, rng, table)
    cv = _Canvas(np.asarray(grid.z_mm, dtype=np.float64), ycs, xcs)
    ph.paint(cv)
    coarse = cv.hu
    wy, wx = _linear_weights(ycs, grid.y_mm), _linear_weights(xcs, grid.x_mm)
    out = np.empty((grid.z_mm.size, grid.y_mm.size, grid.x_mm.size), dtype=np.int16)
    bank = None
    if noise_sd_hu > 0:  # one noise chunk, re-used with random shifts (drawing is the bottleneck)
        shape = (min(_CHUNK_SLICES, out.shape[0]), out.shape[1], out.shape[2])
        bank = rng.standard_normal(shape, dtype=np.float32) * np.float32(noise_sd_hu)
    for k0 in range(0, out.shape[0], _CHUNK_SLICES):
        fine = _upsample(coarse[k0 : k0 + _CHUNK_SLICES], wy, wx)
        if bank is not None:
            shift = (int(rng.integers(bank.shape[1])), int(rng.integers(bank.shape[2])))
            fine += np.roll(bank[: fine.shape[0]], shift, axis=(1, 2))
        np.clip(fine, -1024, 3071, out=fine)
        out[k0 : k0 + _CHUNK_SLICES] = fine
    return out
