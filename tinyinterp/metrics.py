"""The metric: location instability (paper Sec. 5.2.2, as the authors' code computes it),
with the controls and reference values that make it readable
(docs/calibration.md#what-every-figure-is-reported-with).

The metric (docs/paper.md#decision-11-location-instability)
------------------------------------------------------------------
For every filter f of a layer and every image, the *inferred position* is the
receptive-field centre of the filter's argmax unit, and the *score* is the filter's max
activation. For each landmark k, take the top-K images by score among the images where
landmark k is visible; D_{f,k} is the sample standard deviation (N - 1) of the Euclidean
distances between landmark k and the inferred position over those images, divided by
the input diagonal. Average over landmarks (head, back, tail), then over filters:

    instability = mean_f mean_k D_{f,k}.

Fewer than 2 images give NaN for that (f, k). Filters that never fire (max activation
0 on every image) and filters with no finite D are left out of the mean and counted.

Why the controls (docs/calibration.md#floors-of-the-metric)
-------------------------------------------------------
On small crops this number has floors: a filter stuck at one central unit already scores
about half of a random argmax, close to a perfect landmark tracker. So each figure comes
with:
- the *shuffled control*: the same filter's positions permuted among its own top-K
  images. A filter that follows a landmark scores well below it; one whose positions
  are merely concentrated (centre bias) scores the same;
- the *centre share*: the share of argmaxes in the central quarter of the map (0.25 for
  a uniform argmax at even n);
- *tracking counts*: filters below 0.8x and 0.9x their own control;
- *reference values* with no network: a random argmax, a filter fixed at one unit (mean
  over units, best unit, centre unit) and a landmark oracle.

Everything here works on NumPy arrays; ``collect_maps`` is the only part that runs the
net (on either device) and it returns NumPy. ``evaluate.py`` puts the pieces together for
a net and a run folder and prints the table.
"""
import numpy as np

from .backend import to_device, to_numpy
from .predictions import predict

LANDMARK_GROUPS = ("head", "back", "tail")
# The two ways of choosing the images and landmarks (docs/paper.md#evaluation-in-the-code):
#  "ours": every image of the split, the head (forehead, else crown), back and tail;
#  "authors": the authors' showResults.m / computeStability.m: CUB parts 1, 6 and 14 (back,
#    forehead, tail; no crown for a hidden forehead) on a fixed sample of 2,000 test
#    images, top 100. Their sample file is not ours to ship; ours is drawn once from a
#    fixed seed, so every net is scored on the same images.
PROTOCOLS = ("ours", "authors")
AUTHORS_PARTS = ("back", "forehead", "tail")
AUTHORS_IMAGES = 2000
AUTHORS_SAMPLE_SEED = 0
THRESHOLDS = (0.8, 0.9)


# ------------------------------------------------------------------------- feature maps

def collect_maps(model, ds, mean, std, device="cpu", batch_size=64):
    """Run ``model`` in eval mode over ``ds`` (no flip, no shuffle) and keep, for each layer
    index in ``model.interpretable_indices``, each filter's max activation and argmax unit.

    The layers are run one by one (``Sequential.forward_keep``) so the output of layer
    ``index`` (a ReLU: post-ReLU, pre-mask) can be read without changing the model.

    Returns a dict (all NumPy):
        "layers": {index: {"max": float (N, F), "units": int64 (N, F, 2) as (row, col),
                           "n": map side}}
                  (argmax ties go to the first unit in row-major order),
        "pred":   int64 (N,) predicted class, "labels": int64 (N,).
    The model's train/eval mode is restored afterwards.
    """
    indices = list(model.interpretable_indices)
    was_training = getattr(model, "training", False)
    model.eval()
    parts = {i: {"max": [], "units": []} for i in indices}
    sides = {}
    preds = []
    try:
        for batch in ds.batches(batch_size, shuffle=False, flip=False, mean=mean, std=std):
            logits, kept = model.forward_keep(to_device(batch["x"], device), indices)
            for i, x in kept.items():
                b, f, h, w = x.shape
                flat = x.reshape(b, f, h * w)
                arg = to_numpy(flat.argmax(axis=2))  # first index on ties
                parts[i]["max"].append(to_numpy(flat.max(axis=2)))
                parts[i]["units"].append(np.stack([arg // w, arg % w], axis=-1))
                sides[i] = (h, w)
            preds.append(to_numpy(predict(logits)))
    finally:
        model.train(was_training)
    layers = {}
    for i in indices:
        h, w = sides.get(i, (0, 0))
        if h != w:
            raise ValueError(f"collect_maps: layer {i} has non-square maps {h}x{w}")
        layers[i] = {"max": np.concatenate(parts[i]["max"]),
                     "units": np.concatenate(parts[i]["units"]).astype(np.int64),
                     "n": int(h)}
    return {"layers": layers,
            "pred": np.concatenate(preds).astype(np.int64) if preds else np.zeros(0, np.int64),
            "labels": np.asarray(ds.labels, np.int64)}


def unit_centres(units, start, jump):
    """Units (..., 2) as (row, col) -> receptive-field centres (..., 2) as input-pixel
    (x, y) = (start + col * jump, start + row * jump), continuous coordinates (float64)."""
    units = np.asarray(units, np.float64)
    return np.stack([start + units[..., 1] * jump, start + units[..., 0] * jump], axis=-1)


def cub_landmark_groups(ds):
    """The three CUB landmarks of the paper, per image: head (forehead if visible, else
    crown), back, tail. Returns (landmarks (N, 3, 2) float64 as (x, y), visible (N, 3)
    bool), in the order of ``LANDMARK_GROUPS``. Parts are looked up by name."""
    names = list(ds.part_names)
    missing = [p for p in ("forehead", "crown", "back", "tail") if p not in names]
    if missing:
        raise ValueError(f"cub_landmark_groups: part names {missing} not in {names}")
    pts = np.asarray(ds.landmarks, np.float64)
    vis = np.asarray(ds.visible, bool)
    fore, crown = names.index("forehead"), names.index("crown")
    head_vis = vis[:, fore] | vis[:, crown]
    head = np.where(vis[:, fore, None], pts[:, fore], pts[:, crown])
    head[~head_vis] = 0.0
    landmarks = np.stack([head, pts[:, names.index("back")], pts[:, names.index("tail")]], axis=1)
    visible = np.stack([head_vis, vis[:, names.index("back")], vis[:, names.index("tail")]], axis=1)
    return landmarks, visible


def landmark_groups(ds, protocol="ours"):
    """(landmarks (N, 3, 2), visible (N, 3), names) of a protocol: ours
    (:func:`cub_landmark_groups`) or the authors' three parts, by name, as they are."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "ours":
        return (*cub_landmark_groups(ds), LANDMARK_GROUPS)
    names = list(ds.part_names)
    missing = [p for p in AUTHORS_PARTS if p not in names]
    if missing:
        raise ValueError(f"landmark_groups: part names {missing} not in {names}")
    cols = [names.index(p) for p in AUTHORS_PARTS]
    pts = np.asarray(ds.landmarks, np.float64)[:, cols]
    vis = np.asarray(ds.visible, bool)[:, cols]
    return np.where(vis[..., None], pts, 0.0), vis, AUTHORS_PARTS


def authors_sample(n, size=AUTHORS_IMAGES, seed=AUTHORS_SAMPLE_SEED):
    """The authors' protocol's images: ``size`` of the n drawn without replacement by
    ``default_rng(seed)``, in image order (all n when n <= size). The same n always
    gives the same images."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


# ------------------------------------------------------------------- location instability

def _select(landmarks, visible, part_ids):
    landmarks = np.asarray(landmarks, np.float64)
    visible = np.asarray(visible, bool)
    if part_ids is not None:
        part_ids = list(part_ids)
        landmarks, visible = landmarks[:, part_ids], visible[:, part_ids]
    return landmarks, visible


def _deviation_matrix(positions, scores, landmarks, visible, top_k, shuffle_rng=None):
    """D (F, K) in pixels: std (N - 1) of landmark-to-position distances over each filter's
    top-K images (by score, among images where the landmark is visible; ties keep image
    order), and beside it the mean of those distances (F, K). With ``shuffle_rng`` each
    filter's positions are permuted among its own top-K images first (the shuffled
    control). NaN where fewer than 2 images qualify."""
    positions = np.asarray(positions, np.float64)
    scores = np.asarray(scores)
    n_img, n_filt = scores.shape
    if positions.shape != (n_img, n_filt, 2):
        raise ValueError(f"positions must be (N, F, 2) = {(n_img, n_filt, 2)}, got {positions.shape}")
    if landmarks.shape[0] != n_img or visible.shape != landmarks.shape[:2]:
        raise ValueError(f"landmarks {landmarks.shape} / visible {visible.shape} do not match "
                         f"{n_img} images")
    if top_k < 2:
        raise ValueError(f"top_k must be at least 2, got {top_k}")
    cols = np.arange(n_filt)
    out = np.full((n_filt, landmarks.shape[1]), np.nan)
    mean = out.copy()
    for k in range(landmarks.shape[1]):
        idx = np.flatnonzero(visible[:, k])
        if len(idx) < 2:
            continue
        order = np.argsort(-scores[idx], axis=0, kind="stable")[:top_k]  # (M, F)
        rows = idx[order]                                                # image ids
        pos = positions[rows, cols]                                      # (M, F, 2)
        if shuffle_rng is not None:
            perm = np.argsort(shuffle_rng.random(rows.shape), axis=0)
            pos = np.take_along_axis(pos, perm[..., None], axis=0)
        dist = np.linalg.norm(landmarks[rows, k] - pos, axis=-1)         # (M, F)
        out[:, k] = dist.std(axis=0, ddof=1)
        mean[:, k] = dist.mean(axis=0)
    return out, mean


def _nanmean(a, axis):
    """Mean ignoring NaN; NaN (no warning) where a slice is all NaN."""
    a = np.asarray(a, np.float64)
    count = (~np.isnan(a)).sum(axis=axis)
    total = np.where(np.isnan(a), 0.0, a).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _summarise(dev, dead, mean_distance):
    """Per-filter, per-landmark and layer values from D (F, K), leaving out dead and
    all-NaN filters."""
    per_filter = _nanmean(dev, axis=1)
    per_filter[dead] = np.nan
    valid = ~np.isnan(per_filter)
    per_landmark = _nanmean(dev[valid], axis=0) if valid.any() else np.full(dev.shape[1], np.nan)
    return {"value": float(per_filter[valid].mean()) if valid.any() else float("nan"),
            "per_filter": per_filter,
            "per_landmark": per_landmark,
            "per_filter_landmark": dev,
            "mean_distance": mean_distance,
            "valid": valid,
            "dead_filters": int(dead.sum()),
            "nan_filters": int((~valid & ~dead).sum()),
            "dropped_filters": int((~valid).sum()),
            "filters": int(dev.shape[0])}


def location_instability(positions, scores, landmarks, visible, part_ids, diagonal, top_k=100):
    """Location instability of one layer (docs/paper.md#decision-11-location-instability).

    Args:
        positions: (N, F, 2) inferred position (x, y) of each filter on each image.
        scores: (N, F) each filter's max activation on each image.
        landmarks, visible: (N, P, 2) as (x, y) and (N, P); ``part_ids`` picks the columns
            used (None: all), e.g. the output of :func:`cub_landmark_groups`.
        diagonal: input-image diagonal in pixels, sqrt(H^2 + W^2).
        top_k: images per (filter, landmark), highest score first, among visible images.
    Returns a dict: "value" (the layer's instability), "per_filter" (F,) (NaN for dropped
    filters), "per_landmark" (K,) mean over kept filters, "per_filter_landmark" (F, K),
    "mean_distance" (F, K) the mean landmark-to-position distance over the same images
    (also divided by the diagonal), "valid" (F,) bool, "dead_filters" (max activation 0 on every image), "nan_filters"
    (no landmark with >= 2 images), "dropped_filters" (both), "filters".
    """
    landmarks, visible = _select(landmarks, visible, part_ids)
    dev, mean = _deviation_matrix(positions, scores, landmarks, visible, top_k)
    dead = ~(np.asarray(scores).max(axis=0) > 0)
    return _summarise(dev / float(diagonal), dead, mean / float(diagonal))


def shuffled_control(positions, scores, landmarks, visible, part_ids, diagonal, top_k=100,
                     repeats=5, seed=0):
    """The same filters with their positions permuted among their own top-K images (per
    landmark), D averaged over ``repeats`` permutations from ``default_rng(seed)``.
    Same selection, dropping and return dict as :func:`location_instability`."""
    landmarks, visible = _select(landmarks, visible, part_ids)
    rng = np.random.default_rng(seed)
    runs = [_deviation_matrix(positions, scores, landmarks, visible, top_k, shuffle_rng=rng)
            for _ in range(max(1, int(repeats)))]
    dev = np.mean([d for d, _ in runs], axis=0) / float(diagonal)
    dead = ~(np.asarray(scores).max(axis=0) > 0)
    return _summarise(dev, dead, runs[0][1] / float(diagonal))  # shuffling keeps the mean


def _central(n):
    """Bool (n,) of the rows (or cols) in the central half [n/4, 3n/4)."""
    i = np.arange(n)
    return (i >= n / 4) & (i < 3 * n / 4)


def centre_share(units, n, active):
    """Share of (image, filter) argmaxes in the central quarter of the n x n map (rows and
    cols in [n/4, 3n/4)), over the pairs where the filter is ``active`` (max > 0). A uniform
    argmax gives 0.25 at even n (see :func:`uniform_centre_share`). NaN if nothing is active."""
    units = np.asarray(units)
    active = np.asarray(active, bool)
    central = _central(n)
    inside = central[units[..., 0]] & central[units[..., 1]]
    return float(inside[active].mean()) if active.any() else float("nan")


def uniform_centre_share(n):
    """The centre share a uniform argmax over the n x n grid would have."""
    return float(_central(n).mean() ** 2)


def border_share(units, n, active):
    """Share of (image, filter) argmaxes on the outer ring of the n x n map (first or last
    row or column), over the active pairs. A filter that fires on the zero padding, e.g.
    the crop's top edge above the head, puts its argmaxes there; it can follow a part's
    column and so look stable without sitting on the part. NaN if nothing is active."""
    units = np.asarray(units)
    active = np.asarray(active, bool)
    edge = (units == 0) | (units == n - 1)
    on_ring = edge[..., 0] | edge[..., 1]
    return float(on_ring[active].mean()) if active.any() else float("nan")


def uniform_border_share(n):
    """The border share a uniform argmax over the n x n grid would have."""
    return float(1 - max(n - 2, 0) ** 2 / n ** 2)


def top_k_border_share(units, scores, n, top_k=100):
    """Per filter, the border share of its own top-K images: of the ``top_k`` images where
    it fires most (highest max activation; ties keep image order), those where it fires at
    all (max > 0), the share whose argmax is on the map's outer ring. The layer's
    :func:`border_share` pools every image and filter; this tells, filter by filter, one
    that follows a part at the padded edge (share near 1) from one inside the map.

    units: (N, F, 2) argmax (row, col); scores: (N, F). Returns (F,), NaN for a filter
    that never fires."""
    units, scores = np.asarray(units), np.asarray(scores)
    order = np.argsort(-scores, axis=0, kind="stable")[:top_k]       # (M, F) image ids
    cols = np.arange(scores.shape[1])
    top_units, active = units[order, cols], scores[order, cols] > 0  # (M, F, 2), (M, F)
    edge = (top_units == 0) | (top_units == n - 1)
    on_ring = (edge[..., 0] | edge[..., 1]) & active
    count = active.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, on_ring.sum(axis=0) / np.maximum(count, 1), np.nan)


def reference_values(landmarks3, visible3, n, start, jump, diagonal, top_k=100, seed=0,
                     random_filters=100):
    """Instability of filters that need no network, on the same images and landmarks and
    with the same top-K rule (scores drawn from ``default_rng(seed)``):

    - "random_argmax": ``random_filters`` filters whose argmax is uniform over the grid;
    - "fixed_unit_mean" / "fixed_unit_best" / "fixed_unit_centre": a filter that always
      fires at one unit, averaged over all n^2 units / at the best unit / at unit
      (n // 2, n // 2) ("best_unit" and "centre_unit" give the (row, col));
    - "landmark_oracle": per landmark k, a filter whose argmax is the cell containing
      landmark k (position = that cell's RF centre, i.e. quantised). Where k is not
      visible it fires weakly (score below every visible image) at a random unit.
      Scored like any filter (mean over all landmarks); "landmark_oracle_own" is its D
      for landmark k alone (the quantisation floor) and "landmark_oracle_distance" its
      mean distance to landmark k (how near a filter that sits on the part gets);
    - "landmark_on_ring": per landmark k, the share of the images where it is visible
      whose cell lies on the map's outer ring (what a filter that sits on the part
      would show as its border share; a crop whose edge is the box's puts the head there
      more often than the back);
    - "uniform_centre_share": the centre share of a uniform argmax.
    """
    landmarks3 = np.asarray(landmarks3, np.float64)
    visible3 = np.asarray(visible3, bool)
    rng = np.random.default_rng(seed)
    n_img, n_lm = visible3.shape

    def score(shape):
        return 1.0 - rng.random(shape)  # in (0, 1]: no filter is dead

    def inst(units, scores):
        return location_instability(unit_centres(units, start, jump), scores, landmarks3,
                                    visible3, None, diagonal, top_k)

    rand = inst(rng.integers(0, n, (n_img, random_filters, 2)), score((n_img, random_filters)))
    grid = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2)
    fixed = inst(np.broadcast_to(grid, (n_img,) + grid.shape), score((n_img, len(grid))))
    per_unit = fixed["per_filter"]
    best = int(np.nanargmin(per_unit))
    centre = (n // 2) * n + n // 2
    oracle, oracle_own, oracle_distance, on_ring = [], [], [], []
    for k in range(n_lm):
        cell = np.floor((landmarks3[:, k] - (start - jump / 2)) / jump).astype(np.int64)
        units = np.clip(cell[:, ::-1], 0, n - 1)  # (x, y) -> (row, col)
        absent = ~visible3[:, k]
        on_ring.append(border_share(units, n, ~absent))
        units[absent] = rng.integers(0, n, (int(absent.sum()), 2))
        res = inst(units[:, None], (rng.random(n_img) + visible3[:, k])[:, None])
        oracle.append(res["value"])
        oracle_own.append(float(res["per_filter_landmark"][0, k]))
        oracle_distance.append(float(res["mean_distance"][0, k]))
    return {"random_argmax": rand["value"],
            "fixed_unit_mean": float(np.nanmean(per_unit)),
            "fixed_unit_best": float(per_unit[best]),
            "fixed_unit_centre": float(per_unit[centre]),
            "best_unit": [int(grid[best, 0]), int(grid[best, 1])],
            "centre_unit": [n // 2, n // 2],
            "landmark_oracle": oracle,
            "landmark_oracle_own": oracle_own,
            "landmark_oracle_distance": oracle_distance,
            "landmark_on_ring": on_ring,
            "uniform_centre_share": uniform_centre_share(n),
            "uniform_border_share": uniform_border_share(n)}


def tracking_counts(per_filter, per_filter_control, thresholds=THRESHOLDS):
    """How many filters sit clearly below their own shuffled control.

    A filter "tracks a part" only where instability < 0.8x its control; < 0.9x is
    reported beside it. Filters with NaN in either (dropped) are not counted.
    Returns {"below_0.8": int, "below_0.9": int, "compared": int, "min_ratio": float}.
    """
    a = np.asarray(per_filter, np.float64)
    c = np.asarray(per_filter_control, np.float64)
    ok = np.isfinite(a) & np.isfinite(c) & (c > 0)
    ratio = a[ok] / c[ok]
    out = {f"below_{t:g}": int((ratio < t).sum()) for t in thresholds}
    out["compared"] = int(ok.sum())
    out["min_ratio"] = float(ratio.min()) if ok.any() else float("nan")
    return out


def part_offsets(inst, ctrl, threshold=THRESHOLDS[0], ring_share=None):
    """Where the tracking filters sit relative to the part they follow.

    A filter below ``threshold`` x its shuffled control follows *something*; this tells a
    filter that sits on a part from one that follows it from a fixed offset (say the
    crop's top edge straight above the head). For each such filter, the landmark it
    follows best is the one with the lowest D_{f,k} / control_{f,k}, and its distance is
    the mean landmark-to-position distance over the same top-K images (divided by the
    diagonal, like D). Compare it with the landmark oracle's distance (reference values).

    ``inst`` and ``ctrl`` are :func:`location_instability` and :func:`shuffled_control`
    results. Returns {"filters": how many track, "mean_distance": their mean distance
    (NaN if none), "per_filter": (F,) distance (NaN for filters that do not track),
    "landmark": (F,) index of the landmark followed best (-1 for those that do not)}.
    With ``ring_share`` ((F,), :func:`top_k_border_share`) also "on_ring": how many of
    the tracking filters put at least half of their top-K argmaxes on the outer ring
    (following a part's row or column at the padded edge rather than sitting on it).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = inst["per_filter"] / ctrl["per_filter"]
        ratio_k = inst["per_filter_landmark"] / ctrl["per_filter_landmark"]
    tracks = np.isfinite(ratio) & (ratio < threshold)
    landmark = np.full(len(ratio), -1, np.int64)
    distance = np.full(len(ratio), np.nan)
    for f in np.flatnonzero(tracks):
        finite = np.isfinite(ratio_k[f])
        if finite.any():
            landmark[f] = int(np.flatnonzero(finite)[np.argmin(ratio_k[f][finite])])
            distance[f] = inst["mean_distance"][f, landmark[f]]
    found = np.isfinite(distance)
    out = {"filters": int(found.sum()),
           "mean_distance": float(distance[found].mean()) if found.any() else float("nan"),
           "per_filter": distance, "landmark": landmark}
    if ring_share is not None:
        out["on_ring"] = int((found & (np.asarray(ring_share) >= 0.5)).sum())
    return out
