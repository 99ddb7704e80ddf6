"""Classification losses: ``forward(logits, targets) -> scalar``, ``backward() -> dlogits``.

- SoftmaxCrossEntropy: one class per image (integer labels), mean over the batch.
- LogisticLoss: independent sigmoid outputs, the paper's single-category (one output,
  bird vs. not) and multi-category (one binary output per class, footnote 4) loss.

The scalar is a 0-d array on the logits' device; ``float(loss)`` reads it.

``forward`` checks its input: the logits finite, the targets of the right kind
(``check_targets``). On a GPU each check is a host sync (it reads a device value), so the
training loop checks the targets on the host before they are uploaded and calls
``forward(..., check=False)``, and keeps its own finite check on the device
(train.train_step).
"""
from .backend import get_array_module
from ._checks import check_array, check_finite


def log_softmax(z, axis=-1):
    """Stable log-softmax: shift by the max so exp never overflows."""
    xp = get_array_module(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def _check_logits(owner, logits):
    if not hasattr(logits, "ndim") or logits.ndim not in (1, 2):
        shape = getattr(logits, "shape", None)
        raise ValueError(f"{owner}: expected logits of shape (N, K) or (N,), got {shape}")
    check_array(owner, logits, logits.ndim, "logits")
    check_finite(owner, logits, "logits")


class SoftmaxCrossEntropy:
    """L = -(1/N) sum_n log softmax(z_n)[y_n], with integer labels y_n in [0, K)."""

    def check_targets(self, shape, labels):
        """ValueError unless ``labels`` are (N,) integers in [0, K) for logits of ``shape``
        (N, K). Reads the labels: do it where they are on the host."""
        owner = "SoftmaxCrossEntropy"
        N, K = shape
        if labels.shape != (N,) or labels.dtype.kind not in "iu":
            raise ValueError(
                f"{owner}: expected integer labels of shape ({N},), "
                f"got shape {tuple(labels.shape)} dtype {labels.dtype}"
            )
        if N and (int(labels.min()) < 0 or int(labels.max()) >= K):
            raise ValueError(
                f"{owner}: labels must lie in [0, {K}), got range "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )

    def forward(self, logits, labels, check=True):
        owner = "SoftmaxCrossEntropy"
        check_array(owner, logits, 2, "logits")
        xp = get_array_module(logits)
        labels = xp.asarray(labels)
        if check:
            check_finite(owner, logits, "logits")
            self.check_targets(logits.shape, labels)
        N = logits.shape[0]
        logp = log_softmax(logits)
        rows = xp.arange(N)
        self.cache = (xp.exp(logp), labels)
        return -logp[rows, labels].mean()

    def backward(self):
        """dL/dz = (softmax(z) - onehot(y)) / N."""
        probs, labels = self.cache
        xp = get_array_module(probs)
        N = probs.shape[0]
        dlogits = probs.copy()
        dlogits[xp.arange(N), labels] -= 1
        return dlogits / probs.dtype.type(N)


class LogisticLoss:
    """L = (1/N) sum_n sum_k log(1 + exp(-y_nk z_nk)), targets y in {0, 1} or {-1, +1}.

    0/1 targets are read as -1/+1. Logits (N,) or (N, K), targets of the same shape.
    """

    def check_targets(self, shape, targets):
        """ValueError unless ``targets`` have the logits' ``shape`` and are all in {0, 1}
        or all in {-1, +1}. Reads the targets: do it where they are on the host."""
        owner = "LogisticLoss"
        t = targets
        if t.shape != tuple(shape):
            raise ValueError(
                f"{owner}: targets must have the logits' shape {tuple(shape)}, "
                f"got {tuple(t.shape)}"
            )
        is01 = bool(((t == 0) | (t == 1)).all())
        ispm = bool(((t == -1) | (t == 1)).all())
        if not (is01 or ispm):
            raise ValueError(f"{owner}: targets must all be in {{0, 1}} or all in {{-1, +1}}")

    def forward(self, logits, targets, check=True):
        owner = "LogisticLoss"
        xp = get_array_module(logits)
        t = xp.asarray(targets)
        if check:
            _check_logits(owner, logits)
            self.check_targets(logits.shape, t)
        # 0 -> -1, and +-1 stay: the same y for either encoding, chosen without reading t
        y = xp.where(t == 0, -1, t).astype(logits.dtype)
        margin = y * logits
        self.cache = (y, margin)
        # log(1 + exp(-m)) = logaddexp(0, -m): exact and overflow-free for any m
        return xp.logaddexp(0, -margin).sum() / logits.dtype.type(logits.shape[0])

    def backward(self):
        """dL/dz = -y * sigmoid(-y z) / N."""
        y, margin = self.cache
        xp = get_array_module(y)
        sig = xp.exp(-xp.logaddexp(0, margin))  # sigmoid(-margin), stable
        return -y * sig / y.dtype.type(y.shape[0])

