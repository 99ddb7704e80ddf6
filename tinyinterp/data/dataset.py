"""CubDataset: decoded bird crops with their labels and landmarks, in memory, and the
training batches drawn from them (normalised, flipped with the left and right parts
swapped, shifted with the landmarks moved along). ``cub.py`` reads a CUB-layout folder
into one; ``bird_task.py`` makes one of birds and non-birds.
"""
import numpy as np

def _flip_permutation(part_names):
    """Index permutation that swaps each "left X" part with its "right X" twin."""
    index = {name: j for j, name in enumerate(part_names)}
    perm = np.arange(len(part_names))
    for j, name in enumerate(part_names):
        for a, b in (("left ", "right "), ("right ", "left ")):
            if name.startswith(a) and b + name[len(a):] in index:
                perm[j] = index[b + name[len(a):]]
    return perm


class CubDataset:
    """Decoded, cropped CUB images with labels and landmarks (all NumPy, plain attributes).

    images     uint8 (N, S, S, 3)       labels   int64 (N,) in 0..K-1, order of class_ids
    class_ids  int64 (K,) original ids  class_names  list of K names
    is_train   bool (N,) official split image_ids    int64 (N,) original ids
    landmarks  float32 (N, P, 2) as (x, y) in continuous output-pixel coordinates
    visible    bool (N, P)              part_names   list of P names (parts.txt order;
                                                     P = 15 for CUB, see PART_NAMES)
    report     dict of counts: what was read, clipped, made invisible or skipped
    """

    def __init__(self, images, labels, class_ids, class_names, is_train, landmarks,
                 visible, image_ids, part_names, report):
        self.images = images
        self.labels = labels
        self.class_ids = class_ids
        self.class_names = list(class_names)
        self.is_train = is_train
        self.landmarks = landmarks
        self.visible = visible
        self.image_ids = image_ids
        self.part_names = list(part_names)
        self.report = report

    def __len__(self):
        return len(self.labels)

    @property
    def size(self):
        return self.images.shape[1]

    def subset(self, index):
        """A new dataset holding the rows ``index`` (a bool mask or integer array)."""
        index = np.asarray(index)
        return CubDataset(self.images[index], self.labels[index], self.class_ids,
                          self.class_names, self.is_train[index], self.landmarks[index],
                          self.visible[index], self.image_ids[index], self.part_names,
                          dict(self.report))

    def moved(self, shift, seed=0):
        """A copy with each image moved by its own (dx, dy), each drawn uniformly from
        [-shift, shift] pixels by ``seed`` (the same moves on every call), as
        ``batches(shift=)`` moves a training batch: the uncovered side filled with the edge
        pixels, the landmarks moved along (hidden where they leave the image). A filter that
        follows a part follows it when the bird moves inside the crop; one that follows the
        crop's frame does not (``evaluate --shift``)."""
        if not (isinstance(shift, (int, np.integer)) and 0 <= shift < self.size):
            raise ValueError(f"shift must be an integer in [0, {self.size}), got {shift!r}")
        moves = np.random.default_rng(seed).integers(-shift, shift + 1, (len(self), 2))
        images, landmarks, visible = _shift_images(self.images, self.landmarks, self.visible, moves)
        return CubDataset(images, self.labels, self.class_ids, self.class_names, self.is_train,
                          landmarks, visible, self.image_ids, self.part_names,
                          dict(self.report, moved=int(shift)))

    def split(self, name):
        """The official "train" or "test" part (labels and class list unchanged)."""
        if name not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {name!r}")
        part = self.subset(self.is_train if name == "train" else ~self.is_train)
        part.report["subset"] = name
        return part

    def mean_std(self):
        """Per-channel mean and std (float32, (3,), in [0, 1] units) of these images."""
        total = np.zeros(3)
        total_sq = np.zeros(3)
        for start in range(0, len(self), 256):  # chunks keep float64 copies small
            chunk = self.images[start:start + 256].reshape(-1, 3).astype(np.float64) / 255.0
            total += chunk.sum(0)
            total_sq += (chunk * chunk).sum(0)
        count = max(len(self) * self.size * self.size, 1)
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
        return mean.astype(np.float32), std.astype(np.float32)

    def batches(self, batch_size, seed=0, shuffle=True, flip=True, mean=None, std=None,
                drop_last=False, shift=0):
        """Yield dicts of batches: x float32 (B, 3, S, S) = (img/255 - mean)/std, labels,
        landmarks, visible, index. mean/std default to 0 and 1 (pass the training set's
        ``mean_std()`` for both splits). With ``flip`` each image is mirrored with
        probability 1/2: x -> S - x for its landmarks, left/right parts swapped. With
        ``shift`` > 0 each image is then moved by (dx, dy), each drawn uniformly from
        [-shift, shift] pixels, the uncovered side filled with the edge pixels; its
        landmarks move with it, and one moved off the image counts as hidden."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not (isinstance(shift, (int, np.integer)) and 0 <= shift < self.size):
            raise ValueError(f"shift must be an integer in [0, {self.size}), got {shift!r}")
        rng = np.random.default_rng(seed)
        mean = np.zeros(3, np.float32) if mean is None else np.asarray(mean, np.float32)
        std = np.ones(3, np.float32) if std is None else np.asarray(std, np.float32)
        order = rng.permutation(len(self)) if shuffle else np.arange(len(self))
        perm = _flip_permutation(self.part_names)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if drop_last and len(idx) < batch_size:
                return
            yield self._make_batch(idx, rng, flip, perm, mean, std, shift)

    def _make_batch(self, idx, rng, flip, perm, mean, std, shift=0):
        imgs = self.images[idx]
        pts = self.landmarks[idx].copy()
        vis = self.visible[idx].copy()
        if flip:
            mirror = rng.random(len(idx)) < 0.5
            imgs = imgs.copy()
            imgs[mirror] = imgs[mirror, :, ::-1]
            flipped = pts[mirror][:, perm]
            flipped[..., 0] = self.size - flipped[..., 0]
            pts[mirror] = flipped
            vis[mirror] = vis[mirror][:, perm]
            pts[~vis] = 0.0  # invisible landmarks stay at (0, 0)
        if shift:  # drawn after the flips, so a run without shift draws what it always drew
            imgs, pts, vis = _shift_images(imgs, pts, vis, rng.integers(-shift, shift + 1, (len(idx), 2)))
        x = (imgs.astype(np.float32) / np.float32(255.0) - mean) / std
        return {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2)),
                "labels": self.labels[idx], "landmarks": pts, "visible": vis,
                "index": idx}


def _shift_images(imgs, pts, vis, moves):
    """Each image (B, S, S, 3) moved by moves[b] = (dx, dy) pixels: out[y, x] =
    img[clip(y - dy), clip(x - dx)] (the edge pixel where the move uncovers the side);
    landmarks (x, y) += (dx, dy), hidden where they leave [0, S)."""
    S = imgs.shape[1]
    out = np.empty_like(imgs)
    pts, vis = pts.copy(), vis.copy()
    for b, (dx, dy) in enumerate(moves):
        rows = np.clip(np.arange(S) - dy, 0, S - 1)
        cols = np.clip(np.arange(S) - dx, 0, S - 1)
        out[b] = imgs[b][rows][:, cols]
        pts[b] += (dx, dy)
        inside = ((pts[b] >= 0) & (pts[b] < S)).all(axis=1)
        vis[b] &= inside
    pts[~vis] = 0.0
    return out, pts, vis
