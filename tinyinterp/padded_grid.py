"""The padded grid: im2col for stride-1 "same" convolutions, from shifted rows (the
engine in conv_engine.py runs on it; lesson 12 builds it by hand).

The layout: each channel is one flat row holding every image of the batch one after
another; each image is followed by PH zero rows, and all-zero images sit before the
first image and after the last (the margins; one is enough unless the images are tiny).
For a 3x3 conv (PH = PW = 1) and two 2x3 images a and b, one channel's row reads

    [9 zeros] a a a  a a a  0 0 0  b b b  b b b  0 0 0 [9 zeros]
     margin   image a row 0, row 1, gap  image b ...  gap  margin

Seen from any grid position, the pixel at kernel offset (i, j) is a constant flat
distance away: (i - PH) * row + (j - PW), with row = W. So row (i, j, c) of the im2col
matrix is just row c of the grid shifted by that distance: a contiguous slice, cheap to
copy. The rows above an image's row 0 are the previous image's gap rows (or the
margin): the vertical padding comes for free. The horizontal padding does not: the
left neighbour of column 0 is, in the flat row, the previous row's last pixel. So in
each im2col chunk the entries whose offset crosses the side of the image,
w + (j - PW) outside [0, W), are set to zero: for a 3x3 kernel, every W-th entry of the
rows of j = 0 and of j = 2 (``grid_columns``, argument ``wrap``). (A zero column after
each image row would make that free too, as lesson 12 shows, but the conv would then be
computed on the zero columns: 1.6% more work at 64x64, 12.5% at 8x8.)
The conv is computed at every grid position, pixels and gap rows alike: the gap rows
hold values that are never read (``interior`` views only the pixels). That costs
PH / H extra work: 1.6% at 64x64, 6% at 16x16, 12.5% at 8x8.

The grid is about 1.1x the input where im2col is 9x, so a conv can keep it for its backward,
and the im2col matrix is built a few thousand columns at a time (``grid_columns``), each
chunk used while it is still in the CPU cache. A conv with many input channels builds
only one kernel row's offsets (3x instead of 9x for a 3x3 kernel) and sums the kernel
rows after the product instead (``conv_engine._grid_conv``).
"""
from .backend import get_array_module
from .threads import in_parallel


class PaddedGrid:
    """Geometry of the padded grid of an (N, H, W) batch with padding (PH, PW)."""

    def __init__(self, N, H, W, PH, PW):
        self.N, self.H, self.W, self.PH, self.PW = N, H, W, PH, PW
        self.row = W  # flat length of one image row (no zero column: see above)
        self.block = (H + PH) * self.row  # one image and its gap rows
        self.length = N * self.block  # grid positions of the images: where a conv is computed
        # margins of whole blank images, at least as long as the farthest kernel offset
        self.margin = max(1, -(-(PH * W + PW) // self.block))
        self.start = self.margin * self.block  # flat index of the first image

    def offsets(self, KH, KW):
        """Flat distance to the pixel at each kernel offset (i, j), in row-major (i, j) order."""
        return [(i - self.PH) * self.row + (j - self.PW) for i in range(KH) for j in range(KW)]

    def shifts(self, KH, KW):
        """Column shift j - PW of each kernel offset, in the order of ``offsets``: where
        it is not 0, the im2col entries that cross the side of the image must be zeroed."""
        return [j - self.PW for i in range(KH) for j in range(KW)]

    def embed(self, a, mask=None):
        """(C, N, H, W) -> the (C, (N + 2*margin)*block) grid: a's pixels in place, zeros
        elsewhere.

        With a boolean ``mask`` shaped like a, the pixels are a * mask (same pass)."""
        xp = get_array_module(a)
        C = a.shape[0]
        N, H, W = self.N, self.H, self.W
        M = self.margin
        grid = xp.empty((C, N + 2 * M, H + self.PH, W), dtype=a.dtype)

        def fill(lo, hi):  # channels lo..hi-1 (in parallel threads on the CPU)
            g = grid[lo:hi]
            g[:, :M] = 0
            g[:, N + M:] = 0
            g[:, M:N + M, H:] = 0
            if mask is None:
                g[:, M:N + M, :H] = a[lo:hi]
            else:
                xp.multiply(a[lo:hi], mask[lo:hi], out=g[:, M:N + M, :H])

        in_parallel(fill, C, xp, grid.size)
        return grid.reshape(C, -1)  # contiguous, so a view

    def interior(self, values):
        """Values at the images' grid positions, (C, length) -> the (C, N, H, W) pixels (a view)."""
        C = values.shape[0]
        return values.reshape(C, self.N, self.H + self.PH, self.W)[:, :, :self.H]


def chunk_columns(rows, itemsize, xp, length, mib=2, min_chunks=4, min_width=256):
    """How many grid positions (im2col columns of ``rows`` rows) to build at a time, of
    ``length`` in all.

    On the CPU: about ``mib`` MiB, so the chunk is still in the cache when the matrix
    product reads it, and, where there are enough columns (``min_width`` each), at least
    ``min_chunks`` chunks of equal width (the last one may be narrower): their count is
    rounded up to a multiple of ``min_chunks`` before the width is set, so that 2 or 4
    threads get shares within about 10% of each other (``conv_engine._over_chunks``).
    Each chunk's product runs on one BLAS thread, whose speed per column was flat from
    256 to 5461 columns on the 2-core Intel host (benchmarks/README.md). The width depends on the shapes only, never on the number of
    threads, and so do the numbers. On a GPU there is no such cache to fit: one chunk of
    up to 256 MiB, i.e. usually the whole matrix.
    """
    if xp.__name__ != "numpy":
        return max(1, 256 * 2**20 // (rows * itemsize))
    target = max(min_width, int(mib * 2**20) // (rows * itemsize))
    chunks = -(-length // target)
    if length >= min_chunks * min_width:
        chunks = -(-chunks // min_chunks) * min_chunks
    return max(1, -(-length // chunks))


def grid_columns(grid, offsets, start, length, chunk, halo=0, ones_row=False, wrap=None,
                 span=None):
    """Yield (s, e, col): col[k*C + c, q] = grid[c, start + offsets[k] + s - halo + q].

    The im2col matrix of the grid positions start + [s - halo, e + halo), i.e.
    e - s + 2*halo columns, built ``chunk`` positions at a time into one reused buffer (so
    use col before asking for the next chunk). A conv that stacks every kernel offset in
    the matrix needs no halo; one that sums its kernel rows after the product needs the
    rows above and below the chunk (see conv_engine.py). With ``ones_row``, col has one more
    row, all ones: a weight matrix with the bias as its last column then adds the bias
    inside the product. ``wrap`` = (W, shifts) is the horizontal zero padding: for each
    offset k whose column shift dj = shifts[k] is not 0, the entries whose pixel would lie
    beyond the side of the image (column w + dj outside [0, W), where w = position mod W)
    are set to 0; in the flat row they hold a pixel of the next or previous image row.
    ``span`` = (lo, hi): only the positions [lo, hi) of [0, length), from chunk boundary
    lo (a thread's share of the chunks, with a buffer of its own).
    """
    xp = get_array_module(grid)
    C = grid.shape[0]
    rows = len(offsets) * C
    lo, hi = span or (0, length)
    buf = xp.empty((rows + ones_row, min(chunk, hi - lo) + 2 * halo), dtype=grid.dtype)
    if ones_row:
        buf[rows] = 1
    for s in range(lo, hi, chunk):
        e = min(s + chunk, hi)
        n = e - s + 2 * halo
        col = buf[:, :n]
        for k, off in enumerate(offsets):
            first = start + off + s - halo
            col[k * C:(k + 1) * C] = grid[:, first:first + n]
            dj = 0 if wrap is None else wrap[1][k]
            if dj:  # zero the columns w whose neighbour w + dj is off the image
                W = wrap[0]
                for w in (range(-dj) if dj < 0 else range(W - dj, W)):
                    col[k * C:(k + 1) * C, (w - (s - halo)) % W::W] = 0  # every W-th column
        yield s, e, col
