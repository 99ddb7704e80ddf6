"""Stochastic gradient descent with momentum and weight decay."""
from .backend import get_array_module, to_device, to_numpy, device_of
from .cuda_kernels import sgd_update


class SGD:
    """v <- momentum * v + (g + weight_decay * p);  p <- p - lr * v   (PyTorch's convention).

    ``params`` is the model's flat dict (``model.params()``); updates are in place, so
    build the optimiser after moving the model to its device. Weight decay applies to
    weights only (arrays with 2 or more dimensions), never to biases. With momentum, each
    parameter's update is one pass (``cuda_kernels.sgd_update``: one kernel on a GPU, its
    NumPy twin on the CPU).
    """

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0):
        self.params = params
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocity = {}  # created lazily, with the parameter's own array module

    def step(self, grads):
        for k, p in self.params.items():
            if k not in grads:
                continue
            g = grads[k]
            decay = self.weight_decay if p.ndim >= 2 else 0.0
            if self.momentum:
                if k not in self.velocity:
                    self.velocity[k] = get_array_module(p).zeros_like(p)
                sgd_update(p, g, self.velocity[k], self.lr, self.momentum, decay)
                continue
            if decay:
                g = g + decay * p
            p -= self.lr * g

    def state_dict(self):
        return {k: to_numpy(v).copy() for k, v in self.velocity.items()}  # a snapshot

    def load_state_dict(self, state):
        unknown = sorted(set(state) - set(self.params))
        if unknown:
            raise ValueError(f"SGD.load_state_dict: no parameter named {unknown}")
        for k, v in state.items():
            if tuple(v.shape) != tuple(self.params[k].shape):
                raise ValueError(
                    f"SGD.load_state_dict: velocity {k!r} has shape {tuple(v.shape)}, "
                    f"parameter has {tuple(self.params[k].shape)}"
                )
            p = self.params[k]
            self.velocity[k] = to_device(v, device_of(p)).astype(p.dtype)
