"""Elastic and affine distortions of training images, drawn anew every epoch.

Simard, Steinkraus & Platt (2003), section 2: a distortion is a displacement
field. Every output pixel (i, j) takes its value from the source point

    (y, x) = (i, j) + (Δy(i, j), Δx(i, j))

of the original image, read with bilinear interpolation; points outside the
image read 0 (background). Two kinds of field, which add up (one sampling
pass for both):

- **elastic**: Δx = α · (G ∗ Ux), Δy = α · (G ∗ Uy), where Ux, Uy are uniform
  random in [-1, 1] at every pixel and G is a Gaussian of σ pixels (its 1-D
  kernel sums to 1; the field is 0 outside the image). The paper's MNIST
  values are σ = 4, α = 34: a smooth, rubbery wobble of about 1.3 pixels
  (root mean square; 1.0 at the edges).
- **affine**: (y, x) = c + M · ((i, j) − c) + t, about the image centre c,
  with M = rotation(θ) · scale(s) · shear(h) and a translation t, each drawn
  per image from symmetric ranges (the map goes from output to source; the
  ranges are symmetric, so that is the same as drawing the forward map).

Speed: no loop over images. Images go in blocks of :data:`BLOCK` rows (small
enough that the block's arrays stay in cache); the separable Gaussian is two
small matrix products per :data:`GROUP` images with a precomputed
(side x side) smoothing matrix, the interpolation four ``np.take`` gathers
from a zero-framed copy of the block, all in float32 and in reused buffers. Results depend only on the generator's state (and on the
block size, a constant here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .shifts import is_square_image
from ..core.errors import BptrainError

#: Images per block: 128 x 28 x 28 float32 = 400 KB per array, in the 1 MB L2 cache per core
#: (the fastest block size measured: benchmarks/README.md, "Timings behind the code's choices").
BLOCK = 128
#: Images per small GEMM of the elastic smoothing (see Distorter._elastic_field); BLOCK is a multiple.
GROUP = 8
#: The Gaussian kernel is cut at this many σ (as scipy.ndimage does).
TRUNCATE = 4.0


@dataclass(frozen=True)
class Distortion:
    """The ranges of the random distortions; all zero (the default) leaves images alone."""

    elastic_alpha: float = 0.0   # α, pixels: scale of the elastic field (0: off; 34 in the paper)
    elastic_sigma: float = 4.0   # σ, pixels: smoothness of the elastic field (4 in the paper)
    rotate: float = 0.0          # rotation drawn from [-rotate, rotate] degrees
    scale: float = 0.0           # scale factor drawn from [1 - scale, 1 + scale]
    shear: float = 0.0           # horizontal shear drawn from [-shear, shear] (x += shear · y)
    shift: float = 0.0           # translation drawn from [-shift, shift] pixels, each axis

    def __post_init__(self):
        for name in ("elastic_alpha", "rotate", "scale", "shear", "shift"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise BptrainError(f"distortion {name} must be a finite number, 0 or more, got {value!r}")
        if not (math.isfinite(self.elastic_sigma) and self.elastic_sigma > 0):
            raise BptrainError(f"elastic sigma must be a finite number above 0, got {self.elastic_sigma!r}")
        if self.scale >= 1:
            raise BptrainError(f"distortion scale must be below 1 (a factor in [1 - scale, 1 + scale]), "
                               f"got {self.scale!r}")

    @property
    def elastic(self) -> bool:
        return self.elastic_alpha > 0

    @property
    def affine(self) -> bool:
        return bool(self.rotate or self.scale or self.shear or self.shift)

    @property
    def active(self) -> bool:
        return self.elastic or self.affine


#: The distortions of configs/simard-elastic.toml (the paper's values) and configs/simard-affine.toml.
PAPER_ELASTIC = Distortion(elastic_alpha=34.0, elastic_sigma=4.0)
SIMARD_AFFINE = Distortion(rotate=10.0, scale=0.1, shear=0.2, shift=1.0)


def gaussian_kernel(sigma: float, truncate: float = TRUNCATE) -> np.ndarray:
    """The 1-D Gaussian g(k) ∝ exp(−k² / 2σ²) for k = −r..r, r = ⌈truncate · σ⌉, normalised to sum 1."""
    radius = max(1, math.ceil(truncate * sigma))
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (k / sigma) ** 2)
    return g / g.sum()


def smoothing_matrix(side: int, sigma: float) -> np.ndarray:
    """G (side x side) with (G u)_i = Σ_k g(k) u_{i+k}, the field taken as 0 outside the image.

    Zero outside (scipy.ndimage's mode "constant", as in the usual reproductions
    of the paper) makes the field weaker towards the edges: 1.34 px rms in the
    middle, 0.98 px at the edge for σ = 4, α = 34. Reflecting the field at the
    edges instead doubles its variance there (up to 9 px displacements) and
    pulls ink into the border of 38% of the test digits instead of 15%.
    """
    g = gaussian_kernel(sigma)
    radius = len(g) // 2
    matrix = np.zeros((side, side))
    for i in range(side):
        for k in range(max(-radius, -i), min(radius, side - 1 - i) + 1):
            matrix[i, i + k] = g[k + radius]
    return matrix


class Distorter:
    """Distorts blocks of square images in place; buffers and the smoothing matrix are made once."""

    def __init__(self, n_features: int, distortion: Distortion, block: int = BLOCK):
        block = -(-block // GROUP) * GROUP
        if not is_square_image(n_features):
            raise BptrainError(f"distortions work on square images, but the inputs have {n_features} features "
                               "(not a perfect square)")
        self.side = side = math.isqrt(n_features)
        self.distortion = distortion
        self.block = block
        self.padded_side = padded = side + 2  # a one-pixel frame of zeros: reads outside the image give 0
        centre = (side - 1) / 2
        # Output pixel coordinates relative to the centre, and in the frame's coordinates.
        self._offsets = np.arange(side, dtype=np.float32) - np.float32(centre)
        self._grid = np.arange(side, dtype=np.float32) + np.float32(1)
        self._centre_padded = np.float32(centre + 1)
        # Elastic: Δ = α G U Gᵀ; α is folded into the second factor.
        smooth = smoothing_matrix(side, distortion.elastic_sigma)
        self._smooth = smooth.astype(np.float32)
        self._smooth_t_alpha = (distortion.elastic_alpha * smooth.T).astype(np.float32)
        shape = (block, side, side)
        self._padded = np.zeros((block, padded, padded), np.float32)
        self._x = np.empty(shape, np.float32)       # source x, then its fraction fx
        self._y = np.empty(shape, np.float32)       # source y, then its fraction fy
        self._x0 = np.empty(shape, np.float32)
        self._y0 = np.empty(shape, np.float32)
        self._index = np.empty(shape, np.intp)
        self._corners = [np.empty(shape, np.float32) for _ in range(4)]
        # Flat buffers, so that a short last block still gets contiguous views.
        self._uniform = np.empty(2 * block * side * side, np.float32)
        self._half = np.empty(block * side * side, np.float32)
        self._fields = np.empty(2 * block * side * side, np.float32)
        self._base = (np.arange(block, dtype=np.intp) * padded * padded).reshape(block, 1, 1)

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> None:
        """Distort every row of ``images`` (N, side²) float32, in place, each with its own random field."""
        if not self.distortion.active:
            return
        if images.dtype != np.float32 or not images.flags.c_contiguous:
            raise BptrainError(f"distortions work in place on C-contiguous float32 images, got "
                               f"{images.dtype}{'' if images.flags.c_contiguous else ' (not contiguous)'}")
        for start in range(0, len(images), self.block):
            block = images[start:start + self.block]
            n = len(block)
            self.source_points(n, rng)
            self.sample(block.reshape(n, self.side, self.side), n)

    def displace(self, images: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> None:
        """Move ``images`` (N, side²) in place by given fields (N, side, side): out(i, j) = in(i + Δy, j + Δx)."""
        side = self.side
        for start in range(0, len(images), self.block):
            stop = min(start + self.block, len(images))
            n = stop - start
            np.add(self._grid[None, None, :], dx[start:stop], out=self._x[:n])
            np.add(self._grid[None, :, None], dy[start:stop], out=self._y[:n])
            self.sample(images[start:stop].reshape(n, side, side), n)

    # ------------------------------------------------------------------ fields
    def source_points(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Fill self._x, self._y[:n] with each output pixel's source point (frame coordinates: +1).

        n is rounded up to a multiple of GROUP (the extra rows are drawn and unused).
        """
        n = -(-n // GROUP) * GROUP
        x, y = self._x[:n], self._y[:n]
        d = self.distortion
        if d.affine:
            self._affine_points(n, rng, x, y)
        else:
            x[...] = self._grid[None, None, :]
            y[...] = self._grid[None, :, None]
        if d.elastic:
            dx, dy = self._elastic_field(n, rng)
            groups = n // GROUP
            x.reshape(groups, GROUP, self.side, self.side)[...] += dx
            y.reshape(groups, GROUP, self.side, self.side)[...] += dy
        return x, y

    def _affine_points(self, n: int, rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> None:
        """(y, x) = c + M ((i, j) − c) + t with M = R(θ) · s · [[1, h], [0, 1]] (in x, y order)."""
        d = self.distortion
        theta = np.radians(rng.uniform(-d.rotate, d.rotate, n)) if d.rotate else np.zeros(n)
        s = rng.uniform(1 - d.scale, 1 + d.scale, n) if d.scale else np.ones(n)
        h = rng.uniform(-d.shear, d.shear, n) if d.shear else np.zeros(n)
        t = rng.uniform(-d.shift, d.shift, (2, n)) if d.shift else np.zeros((2, n))
        cos, sin = np.cos(theta) * s, np.sin(theta) * s
        # R · s · shear = [[cos, cos·h − sin], [sin, sin·h + cos]] acting on (x, y) offsets.
        m_xx, m_xy = cos, cos * h - sin
        m_yx, m_yy = sin, sin * h + cos
        u = self._offsets[None, None, :]  # x offset of column j
        v = self._offsets[None, :, None]  # y offset of row i
        f32 = np.float32
        col = lambda a: a.astype(f32).reshape(n, 1, 1)  # noqa: E731
        np.multiply(col(m_xx), u, out=x)
        x += col(m_xy) * v
        x += col(t[0] + self._centre_padded)
        np.multiply(col(m_yy), v, out=y)
        y += col(m_yx) * u
        y += col(t[1] + self._centre_padded)

    def _elastic_field(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(Δx, Δy) = α G U Gᵀ for U uniform in [-1, 1], as (n, side, side) views; n a multiple of GROUP.

        U is drawn laid out as (group, row i, image, column j) for groups of GROUP
        images, so each product is one small GEMM per group: G @ U[g] smooths along
        i, then [(i, image), j] @ (α Gᵀ) along j. (The layout of iid noise does not
        matter; only the result is transposed, as a view.) Small GEMMs run on one
        OpenBLAS thread, so the smoothing does not fight the training for the
        cores; one big GEMM per block would be threaded and, on 2 busy cores, was
        5-10x slower.
        """
        side, groups = self.side, n // GROUP
        size = n * side * side
        uniform = self._uniform[:2 * size].reshape(2, groups, side, GROUP * side)
        rng.random(out=uniform, dtype=np.float32)
        uniform *= 2
        uniform -= 1
        half = self._half[:size].reshape(groups, side, GROUP * side)
        fields = []
        for axis in range(2):
            np.matmul(self._smooth, uniform[axis], out=half)
            field = self._fields[axis * size:(axis + 1) * size].reshape(groups, side * GROUP, side)
            np.matmul(half.reshape(groups, side * GROUP, side), self._smooth_t_alpha, out=field)
            # (group, i, image, j) -> (group, image, i, j)
            fields.append(field.reshape(groups, side, GROUP, side).transpose(0, 2, 1, 3))
        return fields[0], fields[1]

    # ----------------------------------------------------------- interpolation
    def sample(self, images: np.ndarray, n: int) -> None:
        """Replace ``images`` (n, side, side) by their values at the source points, bilinearly.

        With x0 = ⌊x⌋, fx = x − x0 (and the same for y), and a, b, c, d the pixels
        at (y0, x0), (y0, x0+1), (y0+1, x0), (y0+1, x0+1):

            top = a + fx (b − a),  bottom = c + fx (d − c),  value = top + fy (bottom − top)

        Coordinates are clipped into the zero frame first: a point far outside reads
        only frame pixels, so 0; a point in the last pixel's half-step reads the
        image pixel and the frame, so it fades to 0 as a real edge would.
        """
        p = self.padded_side
        padded = self._padded[:n]
        padded[:, 1:-1, 1:-1] = images
        x, y, x0, y0, index = self._x[:n], self._y[:n], self._x0[:n], self._y0[:n], self._index[:n]
        np.clip(x, 0, p - 1, out=x)
        np.clip(y, 0, p - 1, out=y)
        np.floor(x, out=x0)
        np.floor(y, out=y0)
        np.minimum(x0, p - 2, out=x0)  # x = p − 1 exactly: use x0 = p − 2, fx = 1 (reads the frame)
        np.minimum(y0, p - 2, out=y0)
        x -= x0  # now fx
        y -= y0  # now fy
        y0 *= p
        y0 += x0  # flat index in one padded image: y0·p + x0 (exact in float32: < 2^24)
        index[...] = y0
        index += self._base[:n]
        flat = self._padded.reshape(-1)
        a, b, c, d = (corner[:n] for corner in self._corners)
        np.take(flat, index, out=a, mode="clip")  # mode="clip": no hidden copy; indices are in range
        index += 1
        np.take(flat, index, out=b, mode="clip")
        index += p - 1
        np.take(flat, index, out=c, mode="clip")
        index += 1
        np.take(flat, index, out=d, mode="clip")
        b -= a
        b *= x
        a += b      # top
        d -= c
        d *= x
        c += d      # bottom
        c -= a
        c *= y
        a += c      # value
        np.clip(a, 0, 1, out=images)
