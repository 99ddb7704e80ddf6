"""im2col / col2im / conv_out_size: window extraction, its adjoint, the size formula."""
import itertools

import numpy as np
import pytest
from hypothesis import given

from strategies import XP_SETTINGS, window_cases
from tinyinterp.backend import to_numpy
from tinyinterp.im2col import col2im, conv_out_size, im2col, pair


def brute_force_count(size, kernel, stride, pad):
    """Window positions that fit, counted one by one on the padded axis."""
    count, start = 0, 0
    while start + kernel <= size + 2 * pad:
        count += 1
        start += stride
    return count


def test_conv_out_size_matches_brute_force_count():
    # Exhaustive over a small grid, restricted to the formula's domain: the kernel fits
    # in the padded input (layers refuse anything else before calling it).
    checked = 0
    for size, kernel, stride, pad in itertools.product(range(1, 11), range(1, 6), range(1, 5), range(3)):
        if kernel > size + 2 * pad:
            continue
        expected = brute_force_count(size, kernel, stride, pad)
        assert conv_out_size(size, kernel, stride, pad) == expected, (size, kernel, stride, pad)
        checked += 1
    assert checked > 400


def test_pair():
    assert pair(3) == (3, 3)
    assert pair((2, 5)) == (2, 5)
    assert pair([1, 4]) == (1, 4)
    with pytest.raises(ValueError, match="pair"):
        pair((1, 2, 3))


@XP_SETTINGS
@given(case=window_cases())
def test_im2col_entries_are_the_padded_pixels(xp, case):
    (A, B, H, W), (KH, KW, SH, SW, PH, PW), seed = case
    x = np.random.default_rng(seed).standard_normal((A, B, H, W))
    fill = -7.5  # a value no normal draw equals: shows where padding landed
    col = to_numpy(im2col(xp.asarray(x), KH, KW, SH, SW, PH, PW, fill=fill))
    OH, OW = conv_out_size(H, KH, SH, PH), conv_out_size(W, KW, SW, PW)
    assert col.shape == (KH, KW, A, B, OH, OW)
    xpad = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=fill)
    expected = np.empty_like(col)
    for i, j, oh, ow in itertools.product(range(KH), range(KW), range(OH), range(OW)):
        expected[i, j, :, :, oh, ow] = xpad[:, :, oh * SH + i, ow * SW + j]
    np.testing.assert_array_equal(col, expected)


@XP_SETTINGS
@given(case=window_cases())
def test_col2im_is_the_adjoint_of_im2col(xp, case):
    # <im2col(x), c> == <x, col2im(c)> for random x and c: col2im is im2col's transpose.
    (A, B, H, W), (KH, KW, SH, SW, PH, PW), seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((A, B, H, W))
    OH, OW = conv_out_size(H, KH, SH, PH), conv_out_size(W, KW, SW, PW)
    c = rng.standard_normal((KH, KW, A, B, OH, OW))
    col = im2col(xp.asarray(x), KH, KW, SH, SW, PH, PW)
    back = col2im(xp.asarray(c), x.shape, SH, SW, PH, PW)
    assert back.shape == x.shape
    lhs = float((to_numpy(col) * c).sum())
    rhs = float((x * to_numpy(back)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


@XP_SETTINGS
@given(case=window_cases())
def test_col2im_counts_window_overlaps(xp, case):
    # col2im of all ones = how many windows cover each pixel (overlaps add up).
    (A, B, H, W), (KH, KW, SH, SW, PH, PW), _ = case
    OH, OW = conv_out_size(H, KH, SH, PH), conv_out_size(W, KW, SW, PW)
    ones = xp.ones((KH, KW, A, B, OH, OW))
    cover = to_numpy(col2im(ones, (A, B, H, W), SH, SW, PH, PW))
    expected = np.zeros((H + 2 * PH, W + 2 * PW))
    for oh, ow in itertools.product(range(OH), range(OW)):
        expected[oh * SH:oh * SH + KH, ow * SW:ow * SW + KW] += 1
    expected = expected[PH:PH + H, PW:PW + W]
    np.testing.assert_array_equal(cover, np.broadcast_to(expected, (A, B, H, W)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_col2im_keep_dtype(xp, dtype):
    x = xp.asarray(np.random.default_rng(0).standard_normal((2, 3, 5, 4)).astype(dtype))
    col = im2col(x, 3, 2, 2, 1, 1, 1)
    assert col.dtype == dtype
    assert col2im(col, x.shape, 2, 1, 1, 1).dtype == dtype
