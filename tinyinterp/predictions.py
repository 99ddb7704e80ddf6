"""What a net predicts: class ids from logits, a whole dataset's predictions, each
class's recall, and whether a classifier has collapsed onto one class.

Training reads these after every test pass and evaluation beside its figures; neither
imports the other for them.
"""
import numpy as np

from .backend import get_array_module, to_device, to_numpy


def predict(logits):
    """Class predictions (N,) int64 from logits: the argmax of (N, K) logits, or, for a single
    logistic output (N, 1) or (N,) (bird vs. not), 1 where the logit is above 0."""
    xp = get_array_module(logits)
    if logits.ndim == 1 or logits.shape[1] == 1:
        return (logits.reshape(-1) > 0).astype(xp.int64)
    return logits.argmax(axis=1)


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


def accuracy(model, ds, mean, std, device, batch_size=64):
    """Top-1 accuracy of ``model`` (eval mode) on ``ds`` (for a logistic head: logit > 0
    predicts 1)."""
    pred = collect_predictions(model, ds, mean, std, device, batch_size)
    return float((pred == ds.labels).mean()) if len(ds) else 0.0


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
