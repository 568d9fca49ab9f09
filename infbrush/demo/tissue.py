"""Synthetic H&E histology: tissue layout, four BACH-like classes, nuclei, stain colour.

Everything is vectorised numpy: smooth fields are drawn on coarse grids and resized bilinearly
(PIL, exact and deterministic), nuclei are stamped at full resolution from a small kernel bank.
Colour follows Beer-Lambert with Ruifrok-Johnston H&E stain vectors:
``RGB = 255 * 10 ** -(h * h_vec + e * e_vec + glass)`` per pixel, where ``h`` and ``e`` are
hematoxylin and eosin concentrations (optical density units).

Classes differ at two scales:
- large (hundreds of pixels at 0.5 um/px): normal = lobules of small two-layered acini;
  benign = dilated ducts / cysts in loose stroma; in_situ = ducts filled with crowded atypical
  cells, myoepithelial border kept; invasive = cords and sheets infiltrating stroma, no borders;
- small (a few pixels): round regular nuclei (normal, benign) versus large, dark, pleomorphic
  ones (in_situ, invasive); eosin stroma fibres; lymphocytes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from infbrush.demo import portable
from infbrush.demo.fields import fractal_noise, resize, smooth_noise, upsample2

CLASS_NAMES: tuple[str, ...] = ("normal", "benign", "in_situ", "invasive")
BACKGROUND = 255  # class index of glass / no tissue
NORMAL, BENIGN, IN_SITU, INVASIVE = range(4)

# tissue zones (what a pixel is made of); the per-zone stain concentrations follow below
GLASS, STROMA, LUMEN, EPITHELIUM, MYOEPITHELIUM, TUMOUR, SECRETION, LOOSE_STROMA = range(8)
_ZONE_EOSIN = np.array([0.0, 0.26, 0.03, 0.20, 0.18, 0.16, 0.24, 0.12], np.float32)
_ZONE_HEMA = np.array([0.0, 0.03, 0.0, 0.10, 0.12, 0.16, 0.10, 0.02], np.float32)

# nucleus kinds: (radius px, aspect ratio, hematoxylin concentration, relative sizes)
_NUCLEUS_KINDS = {
    "lymphocyte": (2.4, 1.0, 1.35, (0.9, 1.0, 1.1)),
    "epithelial": (3.2, 1.2, 0.85, (0.9, 1.0, 1.1)),
    "myoepithelial": (2.8, 2.2, 0.95, (0.9, 1.0, 1.1)),
    "fibroblast": (2.6, 3.2, 0.80, (0.9, 1.0, 1.1)),
    "atypical": (4.4, 1.35, 1.15, (0.8, 1.0, 1.25, 1.5)),
    "atypical_large": (5.2, 1.6, 1.25, (0.8, 1.0, 1.3, 1.6)),
    "debris": (1.7, 1.0, 1.45, (0.8, 1.0, 1.3)),
}
# (class or None for any class, zone, nucleus kind, nuclei per pixel)
_NUCLEUS_RULES = (
    (None, STROMA, "fibroblast", 1 / 1800),
    (None, STROMA, "lymphocyte", 1 / 6000),
    (INVASIVE, STROMA, "lymphocyte", 1 / 900),
    (None, LOOSE_STROMA, "fibroblast", 1 / 3500),
    (None, EPITHELIUM, "epithelial", 1 / 75),
    (None, MYOEPITHELIUM, "myoepithelial", 1 / 55),
    (IN_SITU, TUMOUR, "atypical", 1 / 120),
    (INVASIVE, TUMOUR, "atypical_large", 1 / 150),
    (None, SECRETION, "debris", 1 / 400),
)
_N_ORIENTATIONS = 8


@dataclass(frozen=True)
class Stain:
    """One slide's staining: unit OD vectors (3,) per stain, concentration scales, glass OD (3,)."""

    hema_vector: np.ndarray
    eosin_vector: np.ndarray
    hema_scale: float
    eosin_scale: float
    glass_od: np.ndarray


def random_stain(rng: np.random.Generator) -> Stain:
    """Per-slide stain variation around Ruifrok-Johnston H&E vectors."""
    def jitter(vector: tuple[float, float, float], amount: float) -> np.ndarray:
        v = np.asarray(vector) + rng.normal(0.0, amount, 3)
        v = np.clip(v, 0.02, None)
        return (v / np.linalg.norm(v)).astype(np.float32)

    return Stain(
        hema_vector=jitter((0.65, 0.70, 0.29), 0.04),
        eosin_vector=jitter((0.07, 0.99, 0.11), 0.03),
        hema_scale=float(rng.uniform(0.8, 1.2)),
        eosin_scale=float(rng.uniform(0.75, 1.25)),
        glass_od=(0.02 + rng.uniform(-0.006, 0.006, 3)).astype(np.float32),
    )


def tissue_layout(rng: np.random.Generator, grid_h: int, grid_w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Irregular tissue regions on a coarse grid, one class per region.

    Regions sit in the cells of a 3x2 (landscape) or 2x3 (portrait) layout so they never touch.
    Returns ``field`` (grid_h, grid_w) float32 (> 0 inside tissue, holes included),
    ``region`` (grid_h, grid_w) int (region index of the nearest blob) and
    ``region_class`` (n_regions,) uint8 class per region.
    """
    n_rows, n_cols = (2, 3) if grid_w >= grid_h else (3, 2)
    cells = [(r, c) for r in range(n_rows) for c in range(n_cols)]
    if rng.random() < 0.5:  # sometimes leave one cell empty
        cells.pop(int(rng.integers(len(cells))))
    region_class = np.resize(rng.permutation(4), len(cells)).astype(np.uint8)
    yy, xx = np.mgrid[0:grid_h, 0:grid_w].astype(np.float32)
    cell_h, cell_w = grid_h / n_rows, grid_w / n_cols
    margin = max(1.0, 0.06 * min(cell_h, cell_w))
    fields = np.full((len(cells), grid_h, grid_w), -1.0, np.float32)
    for k, (r, c) in enumerate(cells):
        y0, x0 = r * cell_h, c * cell_w
        cy = y0 + cell_h * rng.uniform(0.42, 0.58)
        cx = x0 + cell_w * rng.uniform(0.42, 0.58)
        ry = 0.5 * cell_h * rng.uniform(0.6, 0.85)
        rx = 0.5 * cell_w * rng.uniform(0.6, 0.85)
        theta = portable.arctan2(yy - cy, xx - cx)
        wobble = 1.0 + sum(rng.uniform(0.03, 0.12) * portable.cos(m * theta + rng.uniform(0, 2 * np.pi))
                           for m in (2, 3, 5))
        rho = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) / wobble
        blob = 1.0 - rho + 0.15 * fractal_noise(rng, grid_h, grid_w, max(2.0, 0.25 * min(cell_h, cell_w)))
        inside_cell = (yy >= y0 + margin) & (yy < y0 + cell_h - margin) & (xx >= x0 + margin) & (xx < x0 + cell_w - margin)
        fields[k] = np.where(inside_cell, blob, -1.0)
    region = fields.argmax(axis=0)
    field = fields.max(axis=0)
    holes = smooth_noise(rng, grid_h, grid_w, 2.5)
    field = np.where((holes > 1.9) & (field > 0.12), -0.3, field).astype(np.float32)  # tears
    return field, region, region_class


@functools.lru_cache(maxsize=None)
def _nucleus_kernels(kind: str) -> tuple[tuple[np.ndarray, ...], ...]:
    """Kernel bank for one nucleus kind: [size][orientation] -> (n_px, 2) int offsets (dy, dx)."""
    radius, aspect, _, sizes = _NUCLEUS_KINDS[kind]
    bank = []
    for size in sizes:
        a = radius * size * np.sqrt(aspect)  # semi-major axis
        b = radius * size / np.sqrt(aspect)  # semi-minor axis
        span = int(np.ceil(a))
        dy, dx = np.mgrid[-span:span + 1, -span:span + 1]
        per_orientation = []
        for k in range(_N_ORIENTATIONS):
            angle = np.pi * k / _N_ORIENTATIONS
            u = dx * portable.cos(angle) + dy * portable.sin(angle)
            v = -dx * portable.sin(angle) + dy * portable.cos(angle)
            inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
            per_orientation.append(np.stack([dy[inside], dx[inside]], axis=1))
        bank.append(tuple(per_orientation))
    return tuple(bank)


def _place_discs(rng: np.random.Generator, candidates: np.ndarray, radii: np.ndarray,
                 gap: float) -> list[tuple[float, float, float]]:
    """Greedy non-overlapping discs: candidates (n, 2) yx, radii (n,) -> kept [(y, x, r)]."""
    kept: list[tuple[float, float, float]] = []
    centres = np.zeros((0, 3), np.float64)
    for (y, x), r in zip(candidates, radii):
        if len(centres):
            dist = portable.hypot(centres[:, 0] - y, centres[:, 1] - x)
            if np.any(dist < centres[:, 2] + r + gap):
                continue
        kept.append((float(y), float(x), float(r)))
        centres = np.vstack([centres, [y, x, r]])
    return kept


def _stamp_duct(zone: np.ndarray, classes: np.ndarray, rng: np.random.Generator, cls: int,
                y: float, x: float, radius: float) -> None:
    """Draw one duct/acinus of class ``cls`` centred at (y, x) into ``zone`` (H, W), in place."""
    h, w = zone.shape
    span = int(np.ceil(radius * 1.35))
    y0, y1 = max(0, int(y) - span), min(h, int(y) + span + 1)
    x0, x1 = max(0, int(x) - span), min(w, int(x) + span + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    theta = portable.arctan2(yy - y, xx - x)
    wobble = 1.0 + 0.07 * portable.cos(2 * theta + rng.uniform(0, 6.3)) + 0.04 * portable.cos(3 * theta + rng.uniform(0, 6.3))
    rho = portable.hypot(yy - y, xx - x) / (radius * wobble)  # 1 at the basement membrane
    z = zone[y0:y1, x0:x1]
    own = (classes[y0:y1, x0:x1] == cls) & (z != GLASS)
    myo_width = min(0.25, 4.0 / radius)  # myoepithelial layer: about one cell thick
    z[own & (rho < 1.0)] = MYOEPITHELIUM
    if cls == NORMAL:
        z[own & (rho < 1.0 - myo_width)] = EPITHELIUM
        z[own & (rho < rng.uniform(0.3, 0.45))] = LUMEN
    elif cls == BENIGN:
        z[own & (rho < 1.0 - myo_width)] = EPITHELIUM
        inner = 1.0 - myo_width - min(0.2, 9.0 / radius)
        z[own & (rho < inner)] = SECRETION if rng.random() < 0.4 else LUMEN
    elif cls == IN_SITU:
        z[own & (rho < 1.0 - myo_width)] = TUMOUR
        if rng.random() < 0.45:  # comedo necrosis
            z[own & (rho < rng.uniform(0.25, 0.45))] = SECRETION
        else:  # cribriform spaces
            holes = smooth_noise(rng, y1 - y0, x1 - x0, 7.0)
            z[own & (rho < 0.8) & (holes > 1.3)] = LUMEN


def _draw_zones(rng: np.random.Generator, tissue: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """What each pixel is made of. tissue (H, W) bool, classes (H, W) uint8 -> zone (H, W) uint8."""
    h, w = tissue.shape
    zone = np.where(tissue, STROMA, GLASS).astype(np.uint8)
    zone[tissue & (classes == BENIGN)] = LOOSE_STROMA

    def class_pixels(cls: int, n: int) -> np.ndarray:
        flat = np.flatnonzero(tissue & (classes == cls))
        if flat.size == 0 or n == 0:
            return np.zeros((0, 2), np.int64)
        pick = flat[rng.integers(0, flat.size, n)]
        return np.stack(np.divmod(pick, w), axis=1)

    area = {cls: int(np.count_nonzero(tissue & (classes == cls))) for cls in range(4)}
    # normal: lobules (radius 110-200 px) of small acini in loose intralobular stroma
    if area[NORMAL]:
        n_lobules = max(1, area[NORMAL] // 160_000)
        lobule_centres = class_pixels(NORMAL, 4 * n_lobules)
        lobules = _place_discs(rng, lobule_centres, rng.uniform(110, 200, len(lobule_centres)), 30.0)[:n_lobules]
        yy, xx = np.ogrid[0:h, 0:w]
        for ly, lx, lr in lobules:
            ys, xs = slice(max(0, int(ly - lr)), int(ly + lr) + 1), slice(max(0, int(lx - lr)), int(lx + lr) + 1)
            disc = portable.hypot(yy[ys] - ly, xx[:, xs] - lx) < lr
            sub = zone[ys, xs]
            sub[disc & (sub == STROMA) & (classes[ys, xs] == NORMAL)] = LOOSE_STROMA
            n = int(rng.integers(30, 60))
            angle, dist = rng.uniform(0, 2 * np.pi, n), lr * np.sqrt(rng.uniform(0, 0.8, n))
            cand = np.stack([ly + dist * portable.sin(angle), lx + dist * portable.cos(angle)], axis=1)
            for ay, ax, ar in _place_discs(rng, cand, rng.uniform(16, 30, n), 5.0):
                _stamp_duct(zone, classes, rng, NORMAL, ay, ax, ar)
    for cls, per_duct, r_lo, r_hi in ((BENIGN, 90_000, 45, 150), (IN_SITU, 70_000, 50, 120)):
        if area[cls]:
            n = max(1, area[cls] // per_duct)
            cand = class_pixels(cls, 6 * n)
            for dy, dx, dr in _place_discs(rng, cand, rng.uniform(r_lo, r_hi, len(cand)), 20.0)[:n]:
                _stamp_duct(zone, classes, rng, cls, dy, dx, dr)
    if area[INVASIVE]:  # cords (zero crossings of smooth noise) and sheets, drawn at 1/4 resolution
        qh, qw = -(-h // 4), -(-w // 4)
        cords = 0.22 + 0.12 * smooth_noise(rng, qh, qw, 22.0) - np.abs(smooth_noise(rng, qh, qw, 7.0))
        sheets = smooth_noise(rng, qh, qw, 15.0) - 1.1
        tumour = resize(np.maximum(cords, sheets), 4 * qh, 4 * qw)[:h, :w] > 0
        zone[tumour & (classes == INVASIVE)] = TUMOUR
    return zone


def _texture(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Stain texture multipliers at half resolution, each (ceil(h/2), ceil(w/2)) float32 around 1.

    ``stroma``: fibres (anisotropic noise whose direction drifts) times section thickness;
    ``cells``: section thickness only.
    """
    from scipy.ndimage import gaussian_filter

    gh, gw = -(-h // 2), -(-w // 2)
    along_x = gaussian_filter(rng.standard_normal((gh, gw), dtype=np.float32), (0.6, 4.0))
    along_y = gaussian_filter(rng.standard_normal((gh, gw), dtype=np.float32), (4.0, 0.6))
    mix = 1.0 / (1.0 + portable.exp(-2.0 * smooth_noise(rng, gh, gw, 60.0)))
    fibres = mix * along_x + (1 - mix) * along_y
    fibres *= np.float32(1.0 / (fibres.std() + 1e-6))
    thickness = 1.0 + 0.12 * smooth_noise(rng, gh, gw, 150.0)  # uneven section thickness
    stroma = np.clip(1.0 + 0.35 * fibres, 0.2, 2.0) * thickness
    stroma[fibres < -1.2] *= 0.3  # gaps between fibre bundles
    return stroma, thickness


def _stamp_nuclei(rng: np.random.Generator, zone: np.ndarray, classes: np.ndarray,
                  hema: np.ndarray, eosin: np.ndarray) -> None:
    """Sample nucleus centres per rule (Poisson by density) and stamp them into hema/eosin (H, W) in place."""
    h, w = zone.shape
    for cls, zone_id, kind, density in _NUCLEUS_RULES:
        n_candidates = rng.poisson(h * w * density)
        ys = rng.integers(0, h, n_candidates)
        xs = rng.integers(0, w, n_candidates)
        keep = zone[ys, xs] == zone_id
        if cls is not None:
            keep &= classes[ys, xs] == cls
        ys, xs = ys[keep], xs[keep]
        if ys.size == 0:
            continue
        bank = _nucleus_kernels(kind)
        darkness = (_NUCLEUS_KINDS[kind][2] * rng.uniform(0.85, 1.15, ys.size)).astype(np.float32)
        size_id = rng.integers(0, len(bank), ys.size)
        orient_id = rng.integers(0, _N_ORIENTATIONS, ys.size)
        kernel_id = size_id * _N_ORIENTATIONS + orient_id
        for kid in np.unique(kernel_id):
            sel = kernel_id == kid
            offsets = bank[kid // _N_ORIENTATIONS][kid % _N_ORIENTATIONS]  # (k, 2)
            py = np.clip(ys[sel, None] + offsets[None, :, 0], 0, h - 1)  # (n, k)
            px = np.clip(xs[sel, None] + offsets[None, :, 1], 0, w - 1)
            hema[py, px] = darkness[sel, None]
            eosin[py, px] = 0.06


def tissue_optical_density(rng: np.random.Generator, tissue: np.ndarray, classes: np.ndarray,
                           stain: Stain, intensity: float = 1.0) -> np.ndarray:
    """Render H&E optical density. tissue (H, W) bool, classes (H, W) uint8 -> OD (H, W, 3) float32.

    ``intensity`` scales both stain concentrations (e.g. 0.4 for a faintly stained section).
    """
    h, w = tissue.shape
    zone = _draw_zones(rng, tissue, classes)
    tex_stroma, tex_cells = _texture(rng, h, w)  # (h/2, w/2) each
    stromal = (zone == STROMA) | (zone == LOOSE_STROMA)
    texture = upsample2(tex_cells, h, w)
    np.copyto(texture, upsample2(tex_stroma, h, w), where=stromal)
    eosin = _ZONE_EOSIN[zone] * texture  # (H, W)
    hema = _ZONE_HEMA[zone]
    _stamp_nuclei(rng, zone, classes, hema, eosin)
    grain = rng.standard_normal((h, w), dtype=np.float32)
    grain *= 0.1
    grain += 1.0
    hema *= grain
    hema *= np.float32(stain.hema_scale * intensity)
    eosin *= grain
    eosin *= np.float32(stain.eosin_scale * intensity)
    od = np.empty((h, w, 3), np.float32)
    for c in range(3):
        od[..., c] = hema * stain.hema_vector[c]
        od[..., c] += eosin * stain.eosin_vector[c]
        od[..., c] += stain.glass_od[c]
    return od


def od_to_rgb(od: np.ndarray) -> np.ndarray:
    """Beer-Lambert (base 10) optical density (H, W, 3) -> uint8 RGB (H, W, 3), via a 1/1024-OD table."""
    steps = 1024
    table = np.clip(255.0 * portable.power10(-(np.arange(6 * steps) + 0.5) / steps) + 0.5, 0, 255).astype(np.uint8)
    index = od * np.float32(steps)
    np.clip(index, 0, 6 * steps - 1, out=index)
    return table[index.astype(np.int32)]


def pen_mark_od(rng: np.random.Generator, h: int, w: int, centre: tuple[float, float],
                radius: tuple[float, float]) -> np.ndarray:
    """A pathologist's marker circle around a region, with a gap. Returns OD (H, W, 3) float32 to add."""
    ds = 4
    gh, gw = -(-h // ds), -(-w // ds)
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32) * ds
    theta = portable.arctan2(yy - centre[0], xx - centre[1])
    rho = np.sqrt(((yy - centre[0]) / radius[0]) ** 2 + ((xx - centre[1]) / radius[1]) ** 2)
    wobble = 1.0 + 0.05 * portable.cos(3 * theta + rng.uniform(0, 6.3))
    half_width = 14.0 / float(np.mean(radius))
    in_gap = np.mod(theta - rng.uniform(-np.pi, np.pi), 2 * np.pi) < 0.8
    stroke = np.clip(1.0 - np.abs(rho - wobble) / half_width, 0.0, 1.0) * ~in_gap
    stroke = np.clip(2.5 * resize(stroke, gh * ds, gw * ds)[:h, :w], 0.0, 1.0)
    ink = np.array([0.95, 0.30, 0.45], np.float32) * np.float32(rng.uniform(0.8, 1.2))  # green-blue marker
    return stroke[..., None] * ink


@dataclass(frozen=True)
class SlideRender:
    """A rendered slide: rgb (H, W, 3) uint8, class_map (ceil(H/ds), ceil(W/ds)) uint8 (255 = background)."""

    rgb: np.ndarray
    class_map: np.ndarray
    class_map_downsample: int
    classes_present: tuple[str, ...]


def render_slide(rng: np.random.Generator, height: int, width: int, class_map_downsample: int = 16,
                 pen_mark: bool = False, intensity: float = 1.0) -> SlideRender:
    """Render one whole-slide image with 4-6 tissue regions of one class each on glass."""
    ds = class_map_downsample
    gh, gw = -(-height // ds), -(-width // ds)
    field, region, region_class = tissue_layout(rng, gh, gw)
    qh, qw = -(-height // 4), -(-width // 4)  # ragged tissue edges, drawn at 1/4 resolution
    edge = resize(field, gh * ds // 4, gw * ds // 4)[:qh, :qw] + 0.05 * fractal_noise(rng, qh, qw, 12.0)
    tissue = resize(edge, 4 * qh, 4 * qw)[:height, :width] > 0  # (H, W)
    cell_class = region_class[region]  # (gh, gw) uint8: class of the nearest region
    classes = np.repeat(np.repeat(cell_class, ds, axis=0), ds, axis=1)[:height, :width]
    classes[~tissue] = BACKGROUND  # (H, W) uint8
    stain = random_stain(rng)
    od = tissue_optical_density(rng, tissue, classes, stain, intensity)
    if pen_mark:
        k = int(rng.integers(len(region_class)))
        ys, xs = np.nonzero(region == k)
        centre = (float(ys.mean() + 0.5) * ds, float(xs.mean() + 0.5) * ds)
        radius = (float(np.ptp(ys) + 1) * ds * 0.62, float(np.ptp(xs) + 1) * ds * 0.62)
        od += pen_mark_od(rng, height, width, centre, radius)
    # class map: a cell is tissue when most of its pixels are tissue
    pad = np.zeros((gh * ds, gw * ds), np.float32)
    pad[:height, :width] = tissue
    fraction = pad.reshape(gh, ds, gw, ds).mean(axis=(1, 3))
    class_map = np.where(fraction > 0.5, cell_class, BACKGROUND).astype(np.uint8)
    present = tuple(CLASS_NAMES[c] for c in sorted(set(class_map[class_map != BACKGROUND].tolist())))
    return SlideRender(rgb=od_to_rgb(od), class_map=class_map, class_map_downsample=ds, classes_present=present)


def render_patch(rng: np.random.Generator, size: int, cls: int) -> np.ndarray:
    """A tissue-filled image of one class (BACH-like microscopy crop). Returns (size, size, 3) uint8."""
    if cls not in range(len(CLASS_NAMES)):
        raise ValueError(f"class index {cls} not in 0..{len(CLASS_NAMES) - 1} ({', '.join(CLASS_NAMES)})")
    tissue = np.ones((size, size), bool)
    classes = np.full((size, size), cls, np.uint8)
    return od_to_rgb(tissue_optical_density(rng, tissue, classes, random_stain(rng)))
