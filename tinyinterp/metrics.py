"""Evaluation: location instability (paper Sec. 5.2.2, as the authors' code computes it),
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
net (on either device) and it returns NumPy.

Use::

    res = evaluate_model(model, test, mean, std)      # one net
    results = evaluate_runs("runs/toy_birds")         # every net in a run folder
    print(format_table(results))
"""
import json
import math
from pathlib import Path

import numpy as np

from .backend import to_device, to_numpy
from .checkpoint import atomic_write_text
from .losses import predict
from .runs import load_data_once, load_run, net_dirs
from .vgg import receptive_field

LANDMARK_GROUPS = ("head", "back", "tail")
LAYER_NAMES = ("top", "new")
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

    The layers are run one by one so the output of layer ``index`` (a ReLU: post-ReLU,
    pre-mask) can be read without changing the model.

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
            x = to_device(batch["x"], device)
            for i, layer in enumerate(model.layers):
                x = layer.forward(x)
                if i in parts:
                    b, f, h, w = x.shape
                    flat = x.reshape(b, f, h * w)
                    arg = to_numpy(flat.argmax(axis=2))  # first index on ties
                    parts[i]["max"].append(to_numpy(flat.max(axis=2)))
                    parts[i]["units"].append(np.stack([arg // w, arg % w], axis=-1))
                    sides[i] = (h, w)
            preds.append(to_numpy(predict(x)))
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
    oracle, oracle_own, oracle_distance = [], [], []
    for k in range(n_lm):
        cell = np.floor((landmarks3[:, k] - (start - jump / 2)) / jump).astype(np.int64)
        units = np.clip(cell[:, ::-1], 0, n - 1)  # (x, y) -> (row, col)
        absent = ~visible3[:, k]
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


# ----------------------------------------------------------------------------- one model

def _jsonable(obj):
    """Plain Python for json: arrays -> lists, NumPy scalars -> Python, NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def evaluate_model(model, ds, mean, std, device="cpu", top_k=100, seed=0, batch_size=64,
                   protocol="ours"):
    """Accuracy and location instability (with controls) of ``model`` on ``ds``.

    ``protocol``: "ours" measures every image of ``ds`` on head, back and tail; "authors"
    the fixed sample :func:`authors_sample` of ``ds`` on back, forehead and tail (then
    "accuracy" and "images" are the sample's).
    ``model`` must already live on ``device``. Returns a JSON-able dict:
        accuracy, images, top_k, seed, diagonal, landmarks (names), visible_images
        (per landmark), layers: {"top": {...}, "new": {...}}, reference: {...}.
    Each layer holds: index, n, receptive_field, instability, control, ratio (to control),
    centre_share, border_share, tracking (below_0.8 / below_0.9 / compared / min_ratio),
    offset (:func:`part_offsets`: the tracking filters' distance to the part they follow
    and how many of them sit on the outer ring), dead_filters, dropped_filters, filters,
    per_landmark and control_per_landmark (by name), per_filter and per_filter_control
    (None for dropped filters), per_filter_border (:func:`top_k_border_share`).
    Undefined values (NaN) are None.
    """
    if protocol == "authors":
        ds = ds.subset(authors_sample(len(ds)))
    landmarks3, visible3, names = landmark_groups(ds, protocol)
    maps = collect_maps(model, ds, mean, std, device=device, batch_size=batch_size)
    h, w = ds.images.shape[1:3]
    diagonal = math.hypot(h, w)
    layers, grid = {}, None
    for j, index in enumerate(model.interpretable_indices):
        name = LAYER_NAMES[j] if j < len(LAYER_NAMES) else f"layer{index}"
        m = maps["layers"][index]
        start, jump, size = receptive_field(model, index)
        positions = unit_centres(m["units"], start, jump)
        inst = location_instability(positions, m["max"], landmarks3, visible3, None, diagonal, top_k)
        ctrl = shuffled_control(positions, m["max"], landmarks3, visible3, None, diagonal, top_k,
                                seed=seed)
        ratio = inst["value"] / ctrl["value"] if ctrl["value"] > 0 else float("nan")
        ring = top_k_border_share(m["units"], m["max"], m["n"], top_k)
        layers[name] = {
            "index": int(index), "n": m["n"],
            "receptive_field": {"start": start, "jump": jump, "size": size},
            "instability": inst["value"], "control": ctrl["value"], "ratio": ratio,
            "centre_share": centre_share(m["units"], m["n"], m["max"] > 0),
            "border_share": border_share(m["units"], m["n"], m["max"] > 0),
            "tracking": tracking_counts(inst["per_filter"], ctrl["per_filter"]),
            "offset": part_offsets(inst, ctrl, ring_share=ring),
            "dead_filters": inst["dead_filters"], "dropped_filters": inst["dropped_filters"],
            "filters": inst["filters"],
            "per_landmark": dict(zip(names, inst["per_landmark"])),
            "control_per_landmark": dict(zip(names, ctrl["per_landmark"])),
            "per_filter": inst["per_filter"], "per_filter_control": ctrl["per_filter"],
            "per_filter_border": ring,
        }
        if grid is None:
            grid = (m["n"], start, jump)
    reference = None
    if grid is not None:
        ref = reference_values(landmarks3, visible3, *grid, diagonal, top_k=top_k, seed=seed)
        ref["landmark_oracle"] = dict(zip(names, ref["landmark_oracle"]))
        ref["landmark_oracle_own"] = dict(zip(names, ref["landmark_oracle_own"]))
        ref["landmark_oracle_distance"] = dict(zip(names, ref["landmark_oracle_distance"]))
        ref["grid"] = {"n": grid[0], "start": grid[1], "jump": grid[2]}
        reference = ref
    n_img = len(ds)
    return _jsonable({
        "accuracy": float((maps["pred"] == maps["labels"]).mean()) if n_img else float("nan"),
        "correct": int((maps["pred"] == maps["labels"]).sum()), "images": n_img,
        "top_k": int(top_k), "seed": int(seed), "diagonal": diagonal, "protocol": protocol,
        "landmarks": list(names),
        "visible_images": dict(zip(names, visible3.sum(axis=0).tolist())),
        "layers": layers, "reference": reference,
    })


# --------------------------------------------------------------------------------- table

def _f(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def format_table(results_by_net):
    """Plain-text table: one row per (net, layer), then the reference values (printed once
    per distinct set; nets evaluated on the same images share them)."""
    head = ("net", "layer", "acc", "instab.", "control", "ratio", "centre", "border", "<0.8x ctl",
            "<0.9x ctl", "dist", "ring", "dropped")
    rows = []
    for net, res in results_by_net.items():
        for layer, r in res["layers"].items():
            t = r["tracking"]
            rows.append((net, layer, _f(res["accuracy"]), _f(r["instability"]), _f(r["control"]),
                         _f(r["ratio"]), _f(r["centre_share"], ".2f"),
                         _f(r.get("border_share"), ".2f"),
                         f"{t['below_0.8']}/{t['compared']}", f"{t['below_0.9']}/{t['compared']}",
                         _f((r.get("offset") or {}).get("mean_distance")),
                         _f((r.get("offset") or {}).get("on_ring"), "d"),
                         str(r["dropped_filters"])))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    out += ["",
            "instab.: location instability (std over each filter's top-K images of the "
            "landmark distance / diagonal;",
            "  mean over landmarks, then filters; dead and undefined filters dropped). "
            "control: the same with each",
            "  filter's positions shuffled among its own top-K images. ratio = instab. / "
            "control. centre: share of",
            "  argmaxes in the central quarter of the map; border: on its outer ring (the zero "
            "padding's reach).",
            "  <0.8x / <0.9x ctl: filters below that fraction of their",
            "  own control, of those compared; only < 0.8x counts as tracking a part. dist: "
            "mean distance / diagonal",
            "  from a tracking filter's inferred position to the landmark it follows best "
            "(near the landmark oracle's",
            "  distance: it sits on the part; far: it follows the part from an offset). ring: how many "
            "tracking filters",
            "  put at least half of their top-K argmaxes on the outer ring (a part's row or column "
            "at the padded edge)."]
    accuracy_notes = [f"  {net}: {res['accuracy_note']}" for net, res in results_by_net.items()
                      if res.get("accuracy_note")]
    if accuracy_notes:
        out += ["", "acc:"] + accuracy_notes
    groups = []  # [(reference, [nets], a result)] for each distinct set of reference values
    for net, res in results_by_net.items():
        ref = res.get("reference")
        if ref is None:
            continue
        for g in groups:
            if g[0] == ref:
                g[1].append(net)
                break
        else:
            groups.append((ref, [net], res))
    for ref, nets, res in groups:
        grid = ref["grid"]
        vis = ", ".join(f"{k} {v}" for k, v in res["visible_images"].items())
        names = "/".join(res["landmarks"])
        whose = f" (for {', '.join(nets)})" if len(groups) > 1 else ""
        rows = [("random argmax", _f(ref["random_argmax"])),
                (f"fixed unit: mean over units / best {tuple(ref['best_unit'])} / centre "
                 f"{tuple(ref['centre_unit'])}",
                 " / ".join(_f(ref[k]) for k in ("fixed_unit_mean", "fixed_unit_best",
                                                  "fixed_unit_centre"))),
                (f"landmark oracle ({names}), all landmarks",
                 " / ".join(_f(v) for v in ref["landmark_oracle"].values())),
                (f"landmark oracle ({names}), its own landmark",
                 " / ".join(_f(v) for v in ref["landmark_oracle_own"].values())),
                (f"landmark oracle ({names}), mean distance to its landmark",
                 " / ".join(_f(v) for v in (ref.get("landmark_oracle_distance") or {}).values())
                 or "-"),
                ("centre share of a uniform argmax", _f(ref["uniform_centre_share"], ".2f")),
                ("border share of a uniform argmax", _f(ref.get("uniform_border_share"), ".2f"))]
        width = max(len(r[0]) for r in rows)
        out += ["", f"reference values{whose}: no network; {res['images']} {res.get('split', '')}"
                f"{' ' if res.get('split') else ''}images, top-K "
                f"{res['top_k']}, {grid['n']}x{grid['n']} grid; visible: {vis}"]
        out += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(out)


# ----------------------------------------------------------------------------- run folder

def evaluation_files(protocol="ours"):
    """The report's file names: evaluation.json / .txt, or evaluation-authors.json / .txt."""
    stem = "evaluation" if protocol == "ours" else f"evaluation-{protocol}"
    return f"{stem}.json", f"{stem}.txt"


def evaluate_runs(run_root, split="test", device="cpu", top_k=100, seed=0, data=None,
                  protocol="ours"):
    """Evaluate every net in ``run_root``: each subfolder holding ``checkpoint.npz``
    (ordinary first, then interpretable, then others by name; ``run_root`` itself when it
    holds one). Each net is evaluated on ``split`` of its own config's data, normalised with
    its training split's mean/std. Writes ``evaluation.json`` and ``evaluation.txt`` into
    ``run_root`` (atomically) and returns {net: evaluate_model result} (each with "split"
    and "run_dir" added).

    Bird vs. not (``task="bird"``): filters are measured on the split's birds only (the
    negatives have no parts); "accuracy" is over all of the split's images, and "recall"
    gives each class's ({"bird": .., "not a bird": ..}).

    ``data``: an optional dict {data_key(cfg): load_data(cfg)} of data already loaded; what
    is loaded here is added to it (``train`` hands the report its data this way).
    ``protocol="authors"`` (:func:`evaluate_model`) writes evaluation-authors.json / .txt."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(run_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: run folder does not exist")
    dirs = list(net_dirs(root).values())
    if (root / "checkpoint.npz").is_file():
        dirs.insert(0, root)
    if not dirs:
        raise FileNotFoundError(f"{root}: no checkpoint.npz in it or in any subfolder")
    data_cache, results = ({} if data is None else data), {}
    for run_dir in dirs:
        model, cfg, _meta = load_run(run_dir, device)
        _ds, train, test, mean, std = load_data_once(cfg, data_cache)
        ds = train if split == "train" else test
        if cfg.task == "bird":
            res = _evaluate_bird_task(model, ds, mean, std, device, top_k, seed, protocol)
        else:
            res = evaluate_model(model, ds, mean, std, device=device, top_k=top_k, seed=seed,
                                 protocol=protocol)
        res["split"], res["run_dir"], res["task"] = split, str(run_dir), cfg.task
        results[run_dir.name] = res
    json_name, txt_name = evaluation_files(protocol)
    atomic_write_text(root / json_name, json.dumps(results, indent=1, allow_nan=False))
    atomic_write_text(root / txt_name, format_table(results) + "\n")
    return results


def _evaluate_bird_task(model, ds, mean, std, device, top_k, seed, protocol="ours"):
    """evaluate_model on the birds of ``ds``, with the accuracy and each class's recall
    over all of ``ds`` (birds and non-birds)."""
    birds, others = ds.subset(ds.labels == 1), ds.subset(ds.labels == 0)
    res = evaluate_model(model, birds, mean, std, device=device, top_k=top_k, seed=seed,
                         protocol=protocol)
    # evaluate_model's accuracy on the birds alone is their recall (unless it measured a
    # sample of them); the non-birds still need a forward pass
    right_birds = res["correct"] if res["images"] == len(birds) else \
        int((collect_predictions(model, birds, mean, std, device) == 1).sum())
    right_others = int((collect_predictions(model, others, mean, std, device) == 0).sum())
    res["accuracy"] = (right_birds + right_others) / len(ds) if len(ds) else None
    res["correct"], res["accuracy_images"] = right_birds + right_others, len(ds)
    recall = {"not a bird": right_others / len(others) if len(others) else None,
              "bird": right_birds / len(birds) if len(birds) else None}
    res["recall"] = recall
    res["negatives"] = len(others)
    res["accuracy_note"] = (f"bird vs. not over {len(ds)} images (recall: birds "
                            f"{_f(recall.get('bird'))}, non-birds {_f(recall.get('not a bird'))}); "
                            f"filters measured on {res['images']} of the {len(birds)} birds")
    return res


def class_recalls(pred, labels, num_classes):
    """The share of each class's images predicted as that class ((K,) list; None where a
    class has no image). For bird vs. not: [recall of non-birds, recall of birds]."""
    return [float((pred[labels == k] == k).mean()) if (labels == k).any() else None
            for k in range(num_classes)]


COLLAPSED_RECALL = 0.05  # a class's recall below this: the net calls (almost) everything the other


def has_collapsed(recalls):
    """Whether a classifier has collapsed onto one class: some class that has images is
    (almost) never predicted (recall below ``COLLAPSED_RECALL``), as a bird-vs-not net does
    that calls every image a bird. Its filters' figures describe a broken net."""
    return any(r is not None and r < COLLAPSED_RECALL for r in recalls)


def collect_predictions(model, ds, mean, std, device="cpu", batch_size=64):
    """Predicted classes (N,) int64 of ``model`` in eval mode on ``ds`` (NumPy)."""
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        out = [to_numpy(predict(model.forward(to_device(b["x"], device))))
               for b in ds.batches(batch_size, shuffle=False, flip=False, mean=mean, std=std)]
    finally:
        model.train(was_training)
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


# ---------------------------------------------------------------------------- command line

def add_evaluate_parser(sub):
    """Add ``evaluate RUN [--split] [--top-k] [--device] [--seed]`` to ``sub``."""
    from .cli import add_parser, int_at_least, nonnegative_int

    p = add_parser(sub, "evaluate", help="accuracy and location instability (with controls) "
                                         "of every net in a run folder")
    p.add_argument("run", help="run folder (holding ordinary/, interpretable/, ...)")
    p.add_argument("--split", choices=["test", "train"], default="test", help="the images measured")
    p.add_argument("--top-k", type=int_at_least(2), default=100, metavar="K",
                   help="images per filter and landmark")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where the nets run")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the controls and references")
    p.add_argument("--protocol", choices=list(PROTOCOLS), default="ours",
                   help="ours: every test image, head (forehead, else crown), back, tail -> "
                        "evaluation.json; authors: back, forehead, tail on a fixed sample of 2,000 "
                        "test images, as the authors' code -> evaluation-authors.json")
    p.set_defaults(func=cmd_evaluate)
    return p


def cmd_evaluate(args):
    results = evaluate_runs(args.run, split=args.split, device=args.device,
                            top_k=args.top_k, seed=args.seed, protocol=args.protocol)
    print(format_table(results))
    json_name, txt_name = evaluation_files(args.protocol)
    print(f"\nwrote {Path(args.run) / json_name} and {txt_name}")
    return 0
