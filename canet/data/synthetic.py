"""A synthetic left-atrium-like dataset, written in the LA layout.

Each case is a small MR-like volume (default 96 x 96 x 64) holding a bright
"atrium": a lumpy ellipsoid, randomly rotated about z, with 2-4 "pulmonary
vein" tubes leaving it. Around it is darker tissue with a smooth texture and a
few darker and brighter blobs; the whole volume is multiplied by a smooth bias
field and corrupted by Rician noise, then z-scored. The label is the body plus
its tubes (1) on background (0). As in late-gadolinium-enhanced MR, the blood
pool is brighter than its surroundings, so a network can learn it in a few
hundred iterations.

Everything is drawn from ``numpy.random.default_rng([seed, i])`` for case
``i``, so the same seed gives identical arrays. The dataset is written as the
real benchmark is (``train.list``, ``test.list``,
``2018LA_Seg_Training Set/<id>/mri_norm2.h5`` with gzip ``image`` float32 and
``label`` uint8), so every code path that reads it is the real one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from canet.data.dataset import LA_CASES_DIR, LA_FILE_NAME, write_case_h5, write_list
from canet.errors import DataError
from canet.io import atomic_write_text
from canet.patch_size import check_patch_size

DEFAULT_SHAPE: tuple[int, int, int] = (96, 96, 64)


def _box(lo: np.ndarray, hi: np.ndarray, shape: Sequence[int]) -> tuple[slice, slice, slice] | None:
    """Slices of the grid box ``[floor(lo), ceil(hi)]`` clipped to ``shape`` (None if empty)."""
    out = []
    for a, b, n in zip(lo, hi, shape):
        s0, s1 = max(int(np.floor(a)), 0), min(int(np.ceil(b)) + 1, int(n))
        if s1 <= s0:
            return None
        out.append(slice(s0, s1))
    return (out[0], out[1], out[2])


def _grid(box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open (broadcastable) float32 coordinate grids of ``box``."""
    gx, gy, gz = (np.arange(b.start, b.stop, dtype=np.float32) for b in box)
    return gx[:, None, None], gy[None, :, None], gz[None, None, :]


def _add_tube(label: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float) -> None:
    """Set ``label`` to 1 within ``radius`` of the segment ``a``-``b`` (only its bounding box is visited)."""
    box = _box(np.minimum(a, b) - radius, np.maximum(a, b) + radius, label.shape)
    if box is None:
        return
    px, py, pz = (g - np.float32(a[i]) for i, g in enumerate(_grid(box)))
    ab = (b - a).astype(np.float32)
    t = (px * ab[0] + py * ab[1] + pz * ab[2]) / np.float32(max(float(ab @ ab), 1e-6))
    np.clip(t, 0.0, 1.0, out=t)
    dist2 = (px - t * ab[0]) ** 2 + (py - t * ab[1]) ** 2 + (pz - t * ab[2]) ** 2
    label[box] |= dist2 < np.float32(radius * radius)


def make_synthetic_case(
    shape: Sequence[int] = DEFAULT_SHAPE, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic volume and its label.

    Args:
        shape: ``(X, Y, Z)``, each at least 16.
        rng: the generator every draw comes from (default: ``default_rng(0)``).

    Returns:
        ``(image, label)``: ``X x Y x Z`` float32 z-scored image and uint8 label
        (1 = atrium body and veins).
    """
    shp = check_patch_size(shape, name="shape")
    if min(shp) < 16:
        raise DataError(f"synthetic volumes need every side >= 16 voxels, got {shp}")
    rng = np.random.default_rng(0) if rng is None else rng
    size = np.asarray(shp, dtype=np.float64)
    scale = float(np.min(size[:2])) / 96.0  # vein radius etc. follow the x-y size
    label = np.zeros(shp, dtype=bool)

    # --- the body: a rotated ellipsoid whose radius varies with direction (lumps);
    # lumps are capped at +60 %, so the body fits in a box of 1.6 x its largest radius.
    centre = size * (0.5 + rng.uniform(-0.06, 0.06, 3))
    radii = size * np.array([rng.uniform(0.18, 0.24), rng.uniform(0.16, 0.22), rng.uniform(0.22, 0.28)])
    reach = 1.6 * float(np.max(radii))
    body = _box(centre - reach, centre + reach, shp)
    assert body is not None  # the centre lies inside the volume
    theta = rng.uniform(0, np.pi)
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    dx, dy, dz = (g - np.float32(centre[i]) for i, g in enumerate(_grid(body)))
    u = (c * dx + s * dy) / np.float32(radii[0])
    v = (-s * dx + c * dy) / np.float32(radii[1])
    w = dz / np.float32(radii[2])
    r = np.sqrt(u * u + v * v + w * w) + np.float32(1e-6)
    surface = np.ones_like(r)
    for _ in range(int(rng.integers(3, 7))):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        cos = (u * np.float32(d[0]) + v * np.float32(d[1]) + w * np.float32(d[2])) / r
        surface += np.float32(rng.uniform(-0.12, 0.22)) * np.exp(np.float32(-6.0) * (1 - cos))
    np.minimum(surface, np.float32(1.6), out=surface)
    label[body] = r < surface

    # --- 2-4 veins: tubes from inside the body out past its surface
    mean_radius = float(np.mean(radii))
    for _ in range(int(rng.integers(2, 5))):
        d = rng.normal(size=3) * np.array([1.0, 1.0, 0.6])
        d /= np.linalg.norm(d)
        start = centre + d * 0.5 * mean_radius
        end = centre + d * rng.uniform(1.5, 2.2) * mean_radius + rng.normal(0, 3 * scale, 3)
        _add_tube(label, start, end, rng.uniform(2.5, 4.0) * scale)
    label_u8 = label.astype(np.uint8)

    # --- intensities: dark tissue with texture and blobs (separable products of
    # 1D profiles, cheap on the full grid), bright blood pool
    gx, gy, gz = _grid((slice(0, shp[0]), slice(0, shp[1]), slice(0, shp[2])))
    tissue = np.full(shp, 0.3, dtype=np.float32)
    for _ in range(3):
        k = (rng.uniform(1.0, 3.0, 3) * 2 * np.pi / size).astype(np.float32)
        ph = rng.uniform(0, 2 * np.pi, 3).astype(np.float32)
        tissue += (np.float32(0.04) * np.cos(gx * k[0] + ph[0]) * np.cos(gy * k[1] + ph[1])) * np.cos(
            gz * k[2] + ph[2]
        )
    for _ in range(int(rng.integers(3, 7))):
        at = (rng.uniform(0.1, 0.9, 3) * size).astype(np.float32)
        inv = np.float32(1.0 / (2 * (rng.uniform(4, 10) * scale) ** 2))
        amp = np.float32(rng.uniform(-0.2, 0.25))
        tissue += (amp * np.exp(-inv * (gx - at[0]) ** 2) * np.exp(-inv * (gy - at[1]) ** 2)) * np.exp(
            -inv * (gz - at[2]) ** 2
        )
    blood = np.float32(rng.uniform(0.95, 1.1))
    soft = np.zeros(shp, dtype=np.float32)  # partial-volume edge, blurred where the label is
    fg = np.nonzero(label_u8.any(axis=(1, 2)))[0], np.nonzero(label_u8.any(axis=(0, 2)))[0], np.nonzero(
        label_u8.any(axis=(0, 1))
    )[0]
    if all(len(a) for a in fg):
        edge = _box(np.array([a[0] - 4 for a in fg]), np.array([a[-1] + 4 for a in fg]), shp)
        assert edge is not None
        soft[edge] = ndimage.gaussian_filter(label_u8[edge].astype(np.float32), 0.8)
    image = tissue + (blood - tissue) * soft

    # --- smooth multiplicative bias field and Rician noise
    nx, ny, nz = (2 * g / np.float32(n) - 1 for g, n in zip((gx, gy, gz), shp))
    a = rng.uniform(-0.15, 0.15, 6).astype(np.float32)
    bias = np.exp(a[0] * nx + a[1] * ny + a[2] * nz + a[3] * nx * ny + a[4] * nx * nx + a[5] * ny * nz)
    image *= bias
    sigma = np.float32(rng.uniform(0.06, 0.1))
    image += sigma * rng.standard_normal(shp, dtype=np.float32)
    n2 = rng.standard_normal(shp, dtype=np.float32)
    n2 *= sigma
    image = np.hypot(image, n2)

    mean = float(image.mean(dtype=np.float64))
    std = float(image.std(dtype=np.float64))
    image -= np.float32(mean)
    image /= np.float32(std)
    return image.astype(np.float32, copy=False), label_u8


def synthetic_case_id(index: int) -> str:
    """Id of synthetic case ``index`` (``synth_000``, ``synth_001``, ...)."""
    return f"synth_{index:03d}"


def write_synthetic_dataset(
    out_dir: str | os.PathLike[str],
    n_train: int = 20,
    n_test: int = 4,
    seed: int = 0,
    shape: Sequence[int] = DEFAULT_SHAPE,
) -> Path:
    """Write a synthetic dataset in the LA layout.

    Args:
        out_dir: folder to write (created; existing files of the same names
            are replaced).
        n_train: cases in ``train.list`` (>= 1).
        n_test: cases in ``test.list`` (>= 0).
        seed: base seed (>= 0); case ``i`` uses ``default_rng([seed, i])``.
        shape: ``(X, Y, Z)`` of every volume (default 96 x 96 x 64).

    Returns:
        ``out_dir`` as a Path; it also holds ``synthetic.json`` recording the arguments.
    """
    for name, value, lo in (("n_train", n_train, 1), ("n_test", n_test, 0), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
            raise DataError(f"{name} must be a whole number >= {lo}, got {value!r}")
    shp = check_patch_size(shape, name="shape")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    ids = [synthetic_case_id(i) for i in range(n_train + n_test)]
    for i, case_id in enumerate(ids):
        image, label = make_synthetic_case(shp, np.random.default_rng([int(seed), i]))
        write_case_h5(out / LA_CASES_DIR / case_id / LA_FILE_NAME, image, label)
    write_list(out / "train.list", ids[:n_train])
    write_list(out / "test.list", ids[n_train:])
    meta = {"generator": "canet.data.synthetic", "seed": int(seed), "shape": list(shp),
            "n_train": int(n_train), "n_test": int(n_test)}
    atomic_write_text(out / "synthetic.json", json.dumps(meta, indent=2) + "\n")
    return out
