"""Sequential: a list of layers run forward in order and backward in reverse."""
from ._checks import check_same_device
from .backend import get_array_module, to_numpy
from .checkpoint import load_checkpoint, save_checkpoint
from .layers import Conv2d, ReLU


class Sequential:
    """Chain of layers. Parameters are exposed as one flat dict keyed "index.name"
    (e.g. "0.W", "0.b", "3.W"), the same keys in ``params()``, ``grads()`` and
    ``state_dict()``.

    Fusion: a Conv2d directly followed by a ReLU runs as one step,
    ``conv.forward(x, relu=True)``. The conv rectifies each chunk of its output while the
    chunk is still in the CPU cache, and its backward applies the ReLU's mask while it
    copies dout onto its grid (conv_engine.py). The numbers are the same as running the two
    layers one after the other, bit for bit. The ReLU's forward then reads cached chunks
    instead of the whole output, and its backward needs no pass of its own: 3-5% of a
    training step of the small VGG (benchmarks/README.md). The ReLU stays in the list
    (same indices, same checkpoint keys); only its work moves into the conv.
    ``fuse=False`` runs every layer on its own.
    """

    def __init__(self, *layers, fuse=True):
        self.layers = list(layers)
        self.training = True
        self.fuse = fuse
        self._fused = set()  # indices of the ReLUs that the last forward ran inside a conv

    def _fuses_with_next(self, i):
        # exact types: a subclass may change what forward does
        return (self.fuse and i + 1 < len(self.layers) and type(self.layers[i]) is Conv2d
                and type(self.layers[i + 1]) is ReLU)

    def forward(self, x):
        state = next((p for layer in self.layers for p in layer.params.values()), None)
        if state is not None:
            check_same_device("Sequential", x, state)
        self._fused = set()
        i = 0
        while i < len(self.layers):
            if self._fuses_with_next(i):
                x = self.layers[i].forward(x, relu=True)
                self.layers[i + 1].mask = None  # no stale mask for a backward run by hand
                self._fused.add(i + 1)
                i += 2
            else:
                x = self.layers[i].forward(x)
                i += 1
        return x

    __call__ = forward

    def forward_keep(self, x, indices, to_end=True):
        """Run the layers one by one and keep the outputs of the layers ``indices``:
        returns (output, {index: that layer's output}). Nothing is fused, so the output of
        a ReLU can be kept (post-ReLU, before whatever follows); the numbers are the same
        as :meth:`forward`'s. ``to_end=False`` stops after the last kept layer (the output
        is then that layer's). Evaluation and the pictures read the watched layers this
        way without changing the model."""
        indices = set(indices)
        last = max(indices, default=-1) if not to_end else len(self.layers) - 1
        kept = {}
        for i, layer in enumerate(self.layers[:last + 1]):
            x = layer.forward(x)
            if i in indices:
                kept[i] = x
        return x, kept

    def backward(self, dout, input_grad=True):
        """dL/d(input) from dL/d(output), setting every layer's grads on the way.

        ``input_grad=False`` is for training, where the input is data: the first layer
        then computes only its parameter gradients (``backward_params``), and this
        returns None. A ReLU that the last forward fused into its conv is skipped: the
        conv's backward does its work.
        """
        if not self.layers:  # the identity
            return dout if input_grad else None
        for i in range(len(self.layers) - 1, 0, -1):
            if i not in self._fused:
                dout = self.layers[i].backward(dout)
        if not input_grad:
            self.layers[0].backward_params(dout)
            return None
        return self.layers[0].backward(dout)

    def train(self, mode=True):
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        for layer in self.layers:
            layer.to(device)
        return self

    def astype(self, dtype):
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def _flat(self, attr):
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in getattr(layer, attr).items()}

    def params(self):
        """The live parameter arrays (updating them in place updates the model)."""
        return self._flat("params")

    def grads(self):
        return self._flat("grads")

    def state_dict(self):
        """NumPy copies of every parameter and buffer."""
        state = self._flat("params")
        state.update(self._flat("buffers"))
        return {k: to_numpy(v).copy() for k, v in state.items()}

    def load_state_dict(self, state):
        """Copy ``state`` into the model in place; refuse unless keys and shapes match."""
        targets = self._flat("params")
        targets.update(self._flat("buffers"))
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        wrong = [f"{k}: model {tuple(targets[k].shape)}, given {tuple(state[k].shape)}"
                 for k in sorted(set(targets) & set(state))
                 if tuple(targets[k].shape) != tuple(state[k].shape)]
        if missing or unexpected or wrong:
            raise ValueError(
                "load_state_dict: state does not match the model"
                + (f"; missing keys {missing}" if missing else "")
                + (f"; unexpected keys {unexpected}" if unexpected else "")
                + (f"; shape mismatch {wrong}" if wrong else "")
            )
        for k, target in targets.items():
            xp = get_array_module(target)
            target[...] = xp.asarray(state[k], dtype=target.dtype)

    def save(self, path, meta=None):
        """Atomic .npz checkpoint of ``state_dict()`` (see checkpoint.py)."""
        save_checkpoint(path, self.state_dict(), meta)

    def load(self, path):
        """Load weights saved by :meth:`save`; returns the checkpoint's meta dict."""
        arrays, meta = load_checkpoint(path)
        self.load_state_dict(arrays)
        return meta

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        inner = "\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"
