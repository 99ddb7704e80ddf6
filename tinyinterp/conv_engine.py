"""The fast conv engine: stride-1 "same" convolutions on a padded grid.

``layers.conv2d_forward`` / ``conv2d_backward`` send every conv with stride 1 and "same"
padding (odd kernel, pad = kernel // 2; every conv of the small VGG) here, and every
other geometry through plain im2col and col2im in layers.py. Both ways give the same
function; this one is faster. Lesson 12 (``lessons/12_fast_conv.py``) builds it by hand
on a tiny batch, step by step.

The padded grid (``padded_grid.PaddedGrid``): each channel becomes one flat row holding the
images of the batch one after another, PH zero rows after each image and a blank image
at both ends. Seen from any position on that row, the pixel at kernel offset (i, j) is
a constant flat distance away, (i - PH) * row + (j - PW), so each row of the im2col
matrix is a contiguous, shifted slice of the grid, and the vertical zero padding comes
for free (the horizontal one by zeroing the entries that wrap around the side of an
image). ``padded_grid.grid_columns`` builds that matrix a cache-sized chunk at a time, and
``_grid_conv`` multiplies each chunk by the weights while it is in the cache. The grid
is about 1.1x the input (im2col is 9x), so the forward keeps it for the backward.

Two layouts of the matrix (``_grid_layout``, whichever copies fewer rows): every kernel
offset stacked, or one kernel row's offsets only, multiplied by all kernel rows at once,
and the KH blocks of the product added, block i shifted by i image rows. A ReLU after the conv can
be fused in: each chunk of the output is rectified while it is in the cache.

The backward needs no col2im: dx is the same kind of conv, of dout with the transposed,
flipped weights, and the weight gradient comes from the im2col chunks of that same conv
(``same_conv_backward``).

Threads (``threads.in_parallel``): the copies onto the grid and the bias sums split
their channels, and the chunk loop its chunks, each thread multiplying on one BLAS
thread (``_over_chunks``); the weight gradient adds up the chunks' products in chunk
order. The numbers do not depend on how many threads there are.

Outputs keep the channel axis first in memory: y is a (N, OC, H, W) view of an
(OC, N, H, W) array, as the next conv reads its input channel by channel.
"""
from .backend import get_array_module
from .blas import blas_threads, can_set_threads
from .padded_grid import PaddedGrid, chunk_columns, grid_columns
from .threads import in_parallel


def is_same_conv(KH, KW, SH, SW, PH, PW):
    """True for the convs this engine runs: stride 1, odd kernel, pad = kernel // 2."""
    return SH == SW == 1 and KH == 2 * PH + 1 and KW == 2 * PW + 1


def _matmul_into(a, b, out):
    """out[...] = a @ b. NumPy writes the product straight into ``out`` (a slice of a
    larger array is fine); CuPy's matmul has no ``out`` in every version, so it copies."""
    xp = get_array_module(out)
    if xp.__name__ == "numpy":
        xp.matmul(a, b, out=out)
    else:
        out[...] = a @ b


def _grid_layout(g, C, OC, KH, KW):
    """(summed, offsets, blocks, halo) of the im2col matrix of ``_grid_conv``."""
    if KH > 1 and OC < KW * C:  # sum the kernel rows after the product
        # within one kernel row, the flat offset of (j) is just its column shift j - PW
        return True, g.shifts(1, KW), KH, g.PH * g.row
    return False, g.offsets(KH, KW), 1, 0  # stack every kernel offset in the matrix


def _wrap(g, summed, KH, KW):
    """``grid_columns``'s wrap for the offsets of ``_grid_layout``: (W, column shifts)."""
    return (g.W, g.shifts(1, KW) if summed else g.shifts(KH, KW))


def _grid_conv(grid, g, weight, bias, out, each_chunk=None, relu_mask=None):
    """out[o, p] = sum_{c, i, j} weight[o, c, i, j] grid[c, p + off_ij] (+ bias[o]) at every
    image grid position p (``g.start + p``), where off_ij = (i - PH) * row + (j - PW).

    Two ways to lay out the im2col matrix, chosen by which costs fewer copied rows:
    - stack all KH*KW offsets (KH*KW*C rows): out is one product, W (OC, KH*KW*C) @ col;
    - stack only the KW offsets of one kernel row (KW*C rows, over the chunk and PH image
      rows above and below it, the ``halo``), multiply by all kernel rows at once,
      P = W (KH*OC, KW*C) @ col, and add the KH blocks of P shifted by i image rows:
      out[:, t] = sum_i P[i*OC:(i+1)*OC, t + i*row]. That copies KH times fewer input
      rows into the matrix for (KH-1)*OC rows of additions; with C = OC = 32 and a 3x3
      kernel, 96 copied rows and 64 added instead of 288 copied.
    ``each_chunk(k, s, e, col, blocks)`` (the backward's weight gradient) sees chunk k,
    positions [s, e); ``blocks`` is KH when the kernel rows were summed, else 1. The
    chunks may be split over threads (:func:`_over_chunks`), so it must only write what
    belongs to chunk k.

    The ReLU fused in: with ``relu_mask``, a bool array shaped like ``out``, each chunk
    of out is rectified in place, out = max(out, 0), and relu_mask = out > 0 recorded,
    while the chunk is still in the cache. No separate pass over the whole output.
    """
    xp = get_array_module(grid)
    OC, C, KH, KW = weight.shape
    R = g.row
    summed, offsets, blocks, halo = _grid_layout(g, C, OC, KH, KW)
    if summed:
        wmat = weight.transpose(2, 0, 3, 1).reshape(KH * OC, KW * C)  # [(i, o), (j, c)]
    else:
        wmat = weight.transpose(0, 2, 3, 1).reshape(OC, KH * KW * C)  # [o, (i, j, c)]
    if bias is not None:  # an extra column: the bias meets col's row of ones (once, block 0)
        column = xp.zeros((blocks * OC, 1), dtype=wmat.dtype)
        column[:OC, 0] = bias
        wmat = xp.concatenate([wmat, column], axis=1)
    chunk = chunk_columns(wmat.shape[1], grid.itemsize, xp, g.length)

    def run(lo, hi):  # the chunks of positions [lo, hi), with buffers of their own
        if summed:
            prod = xp.empty((KH * OC, min(chunk, hi - lo) + 2 * halo), dtype=grid.dtype)
        for s, e, col in grid_columns(grid, offsets, g.start, g.length, chunk, halo,
                                      bias is not None, _wrap(g, summed, KH, KW), span=(lo, hi)):
            done = out[:, s:e]
            if summed:
                n, p = e - s, prod[:, :col.shape[1]]
                _matmul_into(wmat, col, p)
                xp.add(p[:OC, :n], p[OC:2 * OC, R:R + n], out=done)
                for i in range(2, KH):
                    done += p[i * OC:(i + 1) * OC, i * R:i * R + n]
            else:
                _matmul_into(wmat, col, done)
            if relu_mask is not None:
                # ReLU as out * (out > 0) (negatives become -0.0, equal to 0): measured on a
                # 2-core EPYC, NumPy's maximum(out, 0) runs at 1.0-1.4 G elements/s even in
                # the cache, these two passes together about 2x faster
                xp.greater(done, 0, out=relu_mask[:, s:e])
                xp.multiply(done, relu_mask[:, s:e], out=done)
            if each_chunk is not None:
                each_chunk(s // chunk, s, e, col, blocks)

    _over_chunks(run, g.length, chunk, xp, out.size)


def _over_chunks(run, length, chunk, xp, size):
    """``run(lo, hi)`` over the grid positions [0, length), whole chunks at a time.

    On the CPU, with NumPy's OpenBLAS (``blas.can_set_threads``), the chunks are split
    over tinyinterp's threads (``threads.in_parallel``), each thread a contiguous share,
    and every product runs on one BLAS thread (``blas.blas_threads(1)``). So the copies,
    block sums and ReLU of the chunk loop use every core, not only the products: on the
    2-core Intel host the plain small VGG's training step at batch 32, 64 px takes 0.81x
    the time it took with one loop (220 against 271 ms; commit 8a35e19, benchmarks/README.md).
    Each chunk is computed by the same operations, on one BLAS thread, however many
    threads there are, so the numbers never depend on the thread counts (OpenBLAS on
    several threads may sum a product's terms in another order). So a conv uses as many
    cores as tinyinterp has threads (``set_num_threads``), whatever OPENBLAS_NUM_THREADS
    says, and one for a conv too small to split (``threads.PARALLEL_MIN_SIZE``).
    Elsewhere (a GPU; MKL or another BLAS whose threads we leave alone): one plain loop.
    """
    chunks = -(-length // chunk)

    def share(a, b):  # chunks a..b-1
        run(a * chunk, min(b * chunk, length))

    if xp.__name__ != "numpy" or not can_set_threads():
        share(0, chunks)
        return
    with blas_threads(1):  # our threads now, one BLAS thread each
        in_parallel(share, chunks, xp, size)


def same_conv_forward(x, weight, bias, pad, relu=False):
    """The grid branch of ``layers.conv2d_forward``: (y, cache) of a stride-1 "same" conv.

    ``weight`` and ``bias`` are already in the result dtype (conv2d_forward casts them);
    ``pad`` is (PH, PW). The cache is ``("grid", g, grid, weight, mask)``.
    """
    N, _, H, W = x.shape
    OC = weight.shape[0]
    PH, PW = pad
    xp = get_array_module(x)
    dtype = weight.dtype
    g = PaddedGrid(N, H, W, PH, PW)
    grid = g.embed(x.transpose(1, 0, 2, 3).astype(dtype, copy=False))  # (C, flat)
    y = xp.empty((OC, g.length), dtype=dtype)  # the conv at every image grid position
    mask = xp.empty((OC, g.length), dtype=bool) if relu else None
    _grid_conv(grid, g, weight, bias, y, relu_mask=mask)
    y = g.interior(y).transpose(1, 0, 2, 3)  # (N, OC, H, W) view of the pixels
    # the grid is all backward needs of x: about 1.1x its size (im2col would be 9x)
    return y, ("grid", g, grid, weight, mask)


def same_conv_backward(dout, g, grid, weight, relu_mask, input_grad=True):
    """Backward of the padded-grid conv.

    With dy on the same grid (zeros in the gap rows and margins), forward was
        y[o, p] = sum_{c, i, j} w[o, c, i, j] grid[c, p + off_ij],
    the sum over only the (p, i, j) whose pixel p + off_ij lies on the image (the
    wrapped entries of the im2col chunks are zeroed, padded_grid.py); so, substituting
    t = p + off_ij, and with the same restriction,
        dx[c, t]       = sum_{o, i, j} w[o, c, i, j] dy[o, t - off_ij]
        dw[o, c, i, j] = sum_t dy[o, t - off_ij] grid[c, t].
    As -off_ij = off_(KH-1-i)(KW-1-j), dx is the forward conv of dy with the transposed,
    flipped weights wf[c, o, i, j] = w[o, c, KH-1-i, KW-1-j], and the im2col chunk that
    conv builds of dy holds every dy[o, t - off_ij] that dw needs: row (j', o) of block
    i' (``_grid_conv``; one block of rows (i', j', o) if the rows were stacked) at
    column t is dy[o, t + off_i'j'], so col @ grid.T gives dw at i = KH-1-i', j = KW-1-j'.

    Without dx (``input_grad=False``), dw is taken the other way round, from the
    forward's im2col matrix of x: dw[o, c, i, j] = sum_p dy[o, p] grid[c, p + off_ij].
    That builds x's KH*KW*C rows instead of dy's rows, much less for a first conv of 3
    channels (which is where training asks for it).

    After a fused ReLU (``relu_mask``, from the forward), the ReLU's backward is done
    while dout is copied onto the grid: dy = dout * mask, in the same pass.
    """
    xp = get_array_module(dout)
    OC, C, KH, KW = weight.shape
    dtype, R = grid.dtype, g.row
    mask = None if relu_mask is None else g.interior(relu_mask)
    dy = g.embed(dout.transpose(1, 0, 2, 3).astype(dtype, copy=False), mask)  # (OC, flat)
    dbias = _row_sums(dy)  # the gaps are zeros
    if not input_grad:
        return None, _same_conv_weight_grad(dy, g, grid, KH, KW), dbias
    flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, OC, KH, KW)
    dx = xp.empty((C, g.length), dtype=dtype)
    partial = {}  # chunk k: its products, one per block of rows (i', j', o), flipped

    def weight_grad(k, s, e, col, blocks):
        x_t = grid[:, g.start + s:g.start + e].T
        partial[k] = [col[:, b * R:b * R + e - s] @ x_t for b in range(blocks)]

    _grid_conv(dy, g, flipped, None, dx, each_chunk=weight_grad)
    dw = _sum_in_order(partial, (KH * KW * OC, C), 0, dtype, xp)
    dweight = dw.reshape(KH, KW, OC, C)[::-1, ::-1].transpose(2, 3, 0, 1)  # (OC, C, KH, KW)
    return g.interior(dx).transpose(1, 0, 2, 3), xp.ascontiguousarray(dweight), dbias


def _row_sums(a):
    """a.sum(axis=1) of a 2-D array, rows split over threads (each row's sum unchanged)."""
    xp = get_array_module(a)
    sums = xp.empty(a.shape[0], dtype=a.dtype)

    def part(lo, hi):
        a[lo:hi].sum(axis=1, out=sums[lo:hi])

    in_parallel(part, a.shape[0], xp, a.size)
    return sums


def _same_conv_weight_grad(dy, g, grid, KH, KW):
    """dw[o, c, i, j] = sum_p dy[o, p] grid[c, p + off_ij], from x's im2col chunks."""
    xp = get_array_module(dy)
    OC, C, R = dy.shape[0], grid.shape[0], g.row
    summed, offsets, blocks, halo = _grid_layout(g, C, OC, KH, KW)
    rows = len(offsets) * C
    chunk = chunk_columns(rows, grid.itemsize, xp, g.length)
    partial = {}  # chunk k: its products, one per block (kernel row b when rows were summed)

    def run(lo, hi):
        for s, e, col in grid_columns(grid, offsets, g.start, g.length, chunk, halo, False,
                                      _wrap(g, summed, KH, KW), span=(lo, hi)):
            dy_s = dy[:, g.start + s:g.start + e]
            partial[s // chunk] = [dy_s @ col[:, b * R:b * R + e - s].T for b in range(blocks)]

    _over_chunks(run, g.length, chunk, xp, dy.size)
    dw = _sum_in_order(partial, (OC, blocks * rows), 1, dy.dtype, xp)  # columns (i, j, c)
    return xp.ascontiguousarray(dw.reshape(OC, KH, KW, C).transpose(0, 3, 1, 2))


def _sum_in_order(partial, shape, axis, dtype, xp):
    """The weight gradient from the chunks' products: block b of each chunk goes to the
    b-th slice of ``shape`` along ``axis``, chunk after chunk in order, so the sums come
    out the same however the chunks were split over threads."""
    total = xp.zeros(shape, dtype=dtype)
    for k in sorted(partial):
        for b, product in enumerate(partial[k]):
            width = product.shape[axis]
            index = (slice(None),) * axis + (slice(b * width, (b + 1) * width),)
            total[index] += product
    return total
