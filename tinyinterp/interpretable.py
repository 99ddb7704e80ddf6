"""InterpretableMask: the mask and the filter loss of one interpretable conv layer (paper Sec. 3).

Put it right after the ReLU of the layer to make interpretable
(docs/paper.md#decision-10-where-the-masks-go)::

    Sequential(..., Conv2d(64, 128, 3, padding=1), ReLU(), InterpretableMask(128, 8, num_classes=10),
               Conv2d(128, 128, 3, padding=1), ReLU(), InterpretableMask(128, 8, num_classes=10), ...)

Forward (Sec. 3, docs/paper.md#decision-4-the-mask): x_masked = x * max(T_mu_hat / tau, 0)
(a TemplateMask).
Backward (Eq. 3): the gradient at the layer's input is

    dL/dx = mask * dout + lambda_t * dLoss_f/dx,

the task gradient through the (constant) mask plus the filter loss's gradient on the
pre-mask map x. In eval mode no filter loss is computed and backward is mask * dout.

Why a mask layer and not a conv block: the paper defines the mask and the loss on a
filter's map after ReLU, wherever that filter sits (the top conv layer *and* the new
3x3 conv above it). As its own layer it drops into any Sequential after any ReLU, the
conv stays an ordinary Conv2d, and the pre-mask maps it caches are what evaluation
reads. The authors' conv_mask (mask, then conv) fuses the two only as a convenience.

lambda_t (docs/paper.md#decision-8-lambda, Sec. 5): "lambda proportional to
(1/t) mean_{x in X} max_ij x" in epoch t. Here, per filter,
lambda_f = lambda0 * mean_b max_ij x_bf / t, where t is the ``epoch`` attribute (set by
the trainer, from 1), evaluated in forward and held constant in backward. Or pass a
fixed ``lam``. ``filter_decay=False`` (ours, not the paper's) holds t at 1: the filter
loss then pushes as hard in every epoch as in the first, for the exact loss and for the
authors' rule, whose 1 / (10 t) is the same decay.
"""
from ._checks import check_array, check_channels
from .backend import get_array_module
from .filter_loss import (AUTHORS_TEMPERATURE, CATEGORY_MOMENTUM, MIN_SCALE, FilterCategories,
                          MutualInformationLoss)
from .backend import host_zeros, to_device
from .layers import Layer
from .mask import BETA_CENTROID, TemplateMask, beta_target
from .templates import BETA

# The paper gives no constant for lambda. The prototype trained stably with a fixed
# lambda = 1e-3 (docs/calibration.md#the-scale-normalised-loss; peak activations ~20); with
# lambda = lambda0 * mean max x / t, lambda0 = 1e-4 gives about that in epoch 1.
LAMBDA0 = 1e-4
AUTHORS_LAMBDA = 1.0  # the authors' rule carries its own scale (filter_loss.authors_rule)
# Learned slopes: after each step beta_c += BETA_RATE * (target - beta_c). The authors' code
# moves beta_c by lr * 0.05 (its learning-rate multiplier) * 10000 (its gradient's scale)
# * (target - beta_c): 0.05 of the way at its first epoch's lr 1e-4, before momentum.
BETA_RATE = 0.05


class InterpretableMask(Layer):
    """TemplateMask + filter loss (Eq. 1-4) + lambda schedule, for maps (B, F, n, n).

    Args:
        num_filters: F. size: n, the side of the (square) feature map.
        num_classes: categories the filters are assigned to (FilterCategories); 1 for a
            single-category (or binary, e.g. bird vs. not) task.
        lam: a fixed lambda; None (default) for the paper's lambda_t = lambda0 * mean max
            x / epoch. With gradient="authors" None means 1.0: that rule already carries
            1e-5 * 0.1 / epoch. The code's task gradient is per image (its loss is a batch
            sum); with a batch-mean task loss, lam = 1/B reproduces its balance.
        lambda0: see LAMBDA0. mode: "argmax" (paper) or "centroid" (authors' code).
        learn_beta: learn the mask's slope per channel as the authors' code does
            (docs/paper.md#learned-mask-slopes; mask.py:
            beta_c starts at 2 and after each training step, :meth:`step_beta`, moves
            ``beta_rate`` of the way to its target). Off: the fixed ``beta``.
        gradient, tau, alpha, beta, scale_normalise, min_scale, scale_gradient,
            logz_momentum: passed to MutualInformationLoss.
        category_momentum: the EMA momentum of FilterCategories.
        inner_parts: the mask's part position off the map's outer ring (TemplateMask's
            ``inner``; argmax mode and the authors' rule only: the exact and the paper's
            loss score templates at every cell, ring included).
        authors_temperature: the authors' rule's temperature a (default the code's 0.5;
            docs/paper.md#the-rules-temperature): a net whose maps are k times larger is
            pushed at k a as one of the original scale at a.
        filter_decay: divide the filter loss's strength by the epoch t (default: the
            paper's lambda_t and the authors' 1 / (10 t)); False holds it at t = 1
            (docs/paper.md#the-filter-losss-decay). A fixed ``lam`` with the exact or the
            paper's loss has no decay either way.

    The trainer calls ``set_labels(labels)`` before each forward: (B,) class ids, (B,)
    binary targets when num_classes = 1, or (B, C) targets. Without labels every image
    counts as every filter's category and the categories are not updated.

    For logging after a training forward: ``last_filter_loss`` (sum over filters),
    ``last_lambda`` (mean over filters), both 0-d arrays on the maps' device (``float()``
    reads one; on a GPU that is a host sync, so the trainer reads them once per logging
    interval), and ``lam_values`` (F,).
    """

    def __init__(self, num_filters, size, num_classes=1, lam=None, lambda0=LAMBDA0,
                 mode="argmax", gradient="exact", beta=BETA, tau=None, alpha=None,
                 scale_normalise=False, min_scale=MIN_SCALE, scale_gradient="frozen",
                 logz_momentum=None, category_momentum=CATEGORY_MOMENTUM, learn_beta=False,
                 beta_rate=BETA_RATE, inner_parts=False, authors_temperature=AUTHORS_TEMPERATURE,
                 filter_decay=True):
        super().__init__()
        if inner_parts and gradient != "authors":
            raise ValueError(f"InterpretableMask: inner_parts moves the mask the authors' rule reads; "
                             f"the {gradient!r} loss scores templates at every cell, ring included")
        self.num_filters, self.size, self.num_classes = num_filters, size, num_classes
        if lam is None and gradient == "authors":
            lam = AUTHORS_LAMBDA
        self.lam, self.lambda0 = lam, lambda0
        self.template_mask = TemplateMask(beta=beta, mode=mode, inner=inner_parts)
        self.filter_loss = MutualInformationLoss(
            size, tau=tau, beta=beta, alpha=alpha, gradient=gradient,
            scale_normalise=scale_normalise, min_scale=min_scale,
            scale_gradient=scale_gradient, logz_momentum=logz_momentum,
            num_filters=num_filters, authors_temperature=authors_temperature)
        self.category_tracker = FilterCategories(num_filters, num_classes, category_momentum)
        self.learn_beta, self.beta_rate = learn_beta, beta_rate
        self.own_buffers = {}
        if learn_beta:
            self.own_buffers["beta_c"] = host_zeros((num_filters,)) + BETA_CENTROID
        self._beta_target = None
        self.epoch = 1
        self.filter_decay = filter_decay
        self.labels = None
        self.lam_values = self.last_filter_loss = None
        self._loss_ready = False
        self._link_buffers()

    def _link_buffers(self):
        # one flat dict for Sequential.state_dict; the arrays are the sub-objects' own
        self.buffers = {**self.category_tracker.buffers, **self.filter_loss.buffers, **self.own_buffers}

    def set_labels(self, labels):
        """Labels of the next batch(es): kept until replaced (None: no labels)."""
        self.labels = labels

    @property
    def categories(self):
        """(F,) int: each filter's category."""
        return self.category_tracker.categories

    @property
    def mu_hat(self):
        return self.template_mask.mu_hat

    @property
    def mask(self):
        return self.template_mask.mask

    def forward(self, x):
        name = repr(self)
        check_array(name, x, 4)
        check_channels(name, x, self.num_filters)
        if x.shape[2:] != (self.size, self.size):
            raise ValueError(f"{name}: expected maps of {self.size}x{self.size}, got shape {tuple(x.shape)}")
        # one compact copy first (the same axis order, no gaps): the maps usually arrive as
        # a strided view of a conv's output on its padded grid, and the mask and the loss
        # read them several times
        x = x.copy(order="K")
        self.template_mask.channel_beta = self.buffers["beta_c"] if self.learn_beta else None
        out = self.template_mask.forward(x)
        self._loss_ready = self.training
        if self.training:
            self._filter_loss_forward(x)
        return out

    def _filter_loss_forward(self, x):
        xp = get_array_module(x)
        targets = None
        if self.labels is not None:
            targets = self.category_tracker.label_matrix(self.labels, xp)
            if targets.shape[0] != x.shape[0]:
                raise ValueError(f"{self!r}: {targets.shape[0]} labels for a batch of {x.shape[0]}; "
                                 "call set_labels() with this batch's labels")
            self.category_tracker.update(x, targets)
        self.filter_loss.epoch = self.t
        loss = self.filter_loss.forward(x, targets, self.categories,
                                        mask=self.template_mask.signed_mask)
        if self.learn_beta:  # where the slopes go after this step (step_beta applies it)
            positives = xp.ones(x.shape[:2], dtype=x.dtype) if targets is None \
                else targets[:, self.categories].astype(x.dtype)
            mask = self.template_mask  # the centroid mode has the centroids already
            self._beta_target = beta_target(x, mask.signed_mask, positives, self.buffers["beta_c"],
                                            mask.mu_hat if mask.mode == "centroid" else None)
        self.lam_values = self._lambda(x)
        self.last_filter_loss = loss.sum()  # on the device: read when logged

    @property
    def t(self):
        """The epoch the filter loss's strength is divided by: the trainer's ``epoch``, or 1
        without ``filter_decay``."""
        return self.epoch if self.filter_decay else 1

    @property
    def last_lambda(self):
        """The mean of ``lam_values`` (a 0-d device array, computed when asked: logging
        reads it once an epoch), None before a training forward."""
        return None if self.lam_values is None else self.lam_values.mean()

    def _lambda(self, x):
        """(F,) lambda per filter, in x's dtype (docs/paper.md#decision-8-lambda)."""
        xp = get_array_module(x)
        B, F = x.shape[:2]
        if self.lam is not None:
            return xp.full((F,), self.lam, dtype=x.dtype)
        peak = x.reshape(B, F, -1).max(axis=2).mean(axis=0)  # mean_x max_ij x, per filter
        return (self.lambda0 * peak / self.t).astype(x.dtype, copy=False)

    def step_beta(self):
        """After a training step (the trainer calls it beside the optimiser's step): each
        learned slope moves ``beta_rate`` of the way to the target of the last training
        forward. Without ``learn_beta``, or before any training forward, nothing changes.
        (Apart from backward, so that a gradient check sees one fixed mask.)"""
        if self.learn_beta and self._beta_target is not None:
            beta = self.buffers["beta_c"]
            beta += self.beta_rate * (self._beta_target - beta)
            self._beta_target = None

    def backward(self, dout):
        dx = self.template_mask.backward(dout)
        if self._loss_ready:
            dx = dx + self.filter_loss.backward(self.lam_values)  # sum_f lambda_f dLoss_f/dx
        return dx

    def to(self, device):
        self.category_tracker.to(device)
        self.filter_loss.to(device)
        self.own_buffers = {k: to_device(v, device) for k, v in self.own_buffers.items()}
        self._link_buffers()
        self.grads = {}
        return self

    def astype(self, dtype):
        """Float state follows (the layer has no parameters); maps set the compute dtype."""
        self.category_tracker.astype(dtype)
        self.filter_loss.astype(dtype)
        self.own_buffers = {k: v.astype(dtype) for k, v in self.own_buffers.items()}
        self._link_buffers()
        self.grads = {}
        return self

    def __repr__(self):
        lam = f"lam={self.lam}" if self.lam is not None else f"lambda0={self.lambda0}"
        extra = ", scale_normalise=True" if self.filter_loss.scale_normalise else ""
        mode = "" if self.template_mask.mode == "argmax" else ", mode='centroid'"
        learned = ", learn_beta=True" if self.learn_beta else ""
        inner = ", inner_parts=True" if self.template_mask.inner else ""
        a = self.filter_loss.authors_temperature
        temp = f", authors_temperature={a:g}" if a != AUTHORS_TEMPERATURE else ""
        decay = "" if self.filter_decay else ", filter_decay=False"
        return (f"InterpretableMask({self.num_filters}, {self.size}, num_classes={self.num_classes}, "
                f"{lam}, gradient={self.filter_loss.gradient!r}{mode}{extra}{learned}{inner}{temp}{decay})")
