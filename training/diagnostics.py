"""Learning diagnostics in TensorBoard: the effects the textbooks describe, on your own runs.

One Lightning callback per diagnostic, each switched on or off in the
``callbacks`` config group (``callbacks=diagnostics``; ``callbacks.grad_norms=null``
drops one). Each writes to the run's TensorBoard logger and does nothing when
the run has none.

| callback | writes | the effect it shows |
|---|---|---|
| ``LearningCurves`` | custom-scalars charts (train and val on one chart), ``watch/generalization_gap`` | overfitting: train accuracy climbs while validation stalls, the gap widens |
| ``GradientNorms`` | ``watch/grad_norm_log10/<layer>`` every N steps | vanishing gradients: with sigmoid the first layers get orders of magnitude less gradient than the last |
| ``DeadUnits`` | ``watch/dead_units/<layer>`` after each validation | dying ReLUs: units that output zero for every input and so never learn again |
| ``Histograms`` | ``xray/weights/<layer>``, ``xray/activations/<layer>`` every N epochs | saturation (sigmoid outputs piling up at 0 and 1), weight growth or decay |
| ``AugmentedImages`` | ``xray/augmented_images``, once | what the network really sees after augmentation |
| ``ValConfusionMatrix`` | ``xray/confusion_matrix`` after each validation | which classes are confused with which, as training goes |
| ``ActivationMeans`` | ``watch/activation_mean/<layer>`` after each validation | sigmoid's outputs are not zero-centred, tanh's are |
| ``WeightSparsity`` | ``watch/sparsity/<layer>``, ``watch/sparsity/all`` each epoch | L1 drives weights to zero, L2 only shrinks them |
| ``Margins`` | ``xray/margins``, ``watch/inside_margin`` after each validation | the hinge's margin: which examples are still inside it |

Pictures of what the network learned (filters, feature maps, Grad-CAM) are in
``training/features.py``.

Every diagnostic scalar is under ``watch/`` and every picture and histogram under
``xray/``: TensorBoard's Time Series and Scalars tabs sort tag groups by name, so
loss and accuracy (``train/``, ``val/``) open first, the scalars to watch follow
(``w`` sorts after ``v``), then the test numbers (``x_test/``, training/loggers.py),
then the pictures and histograms (``xray/``).

Layer tags are ``<index>_<module name>``, the index counting layers (or
activations) in the order the network registers them, so TensorBoard sorts
them from the input to the output.

Nothing here runs on every training step: the per-step diagnostic (gradient
norms) runs every N steps; the rest run at epoch and validation ends, or on
one validation batch.
"""  # noqa: E501 -- the table's rows are one line each

from __future__ import annotations

import math
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from core.errors import check_number
from core.figures import confusion_matrix_figure
from models.layers import ACTIVATIONS

# Activations with an exact zero for every negative input: the ones whose units can die.
RELU_LIKE: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)
# Every activation the zoo builds (models/layers.py), for the activation histograms.
# nn.Identity is left out: models also use it as "no batchnorm here".
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = tuple(
    {cls for cls in ACTIVATIONS.values() if isinstance(cls, type) and cls is not nn.Identity}
)


# shared helpers ------------------------------------------------------------
def tensorboard(trainer: L.Trainer):
    """The run's TensorBoard ``SummaryWriter``, or None when it logs elsewhere or nowhere."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def network(pl_module: L.LightningModule) -> nn.Module:
    """The zoo model inside the classifier (``ImageClassifier.net``), else the module itself."""
    return getattr(pl_module, "net", pl_module)


def indexed(named: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """Tag each module ``<index>_<name>``, zero-padded so the tags sort by depth."""
    width = len(str(max(len(named) - 1, 0)))
    return [(f"{i:0{width}d}_{name}", module) for i, (name, module) in enumerate(named)]


def weight_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers with a weight matrix or kernel (convolutions, linear layers), input first.

    Norm layers (1-d ``weight``) and PReLU slopes are left out."""
    return indexed([
        (name, m) for name, m in net.named_modules()
        if isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.ndim >= 2
    ])


def modules_of(net: nn.Module, types: tuple[type[nn.Module], ...]) -> list[tuple[str, nn.Module]]:
    return indexed([(name, m) for name, m in net.named_modules() if isinstance(m, types)])


class ForwardProbe:
    """Forward hooks on some modules, handing each output to ``record(tag, output)``.

    A module called more than once in one forward (a shared activation) gets
    its later calls tagged ``<tag>#2``, ``<tag>#3``, ...; call ``new_batch()``
    before each forward."""

    def __init__(self, modules: list[tuple[str, nn.Module]], record: Callable[[str, torch.Tensor], None]) -> None:
        self.record, self.calls = record, {}
        self.handles = [module.register_forward_hook(self._hook(tag)) for tag, module in modules]

    def _hook(self, tag: str):
        def hook(module, inputs, output) -> None:
            calls = self.calls[tag] = self.calls.get(tag, 0) + 1
            if isinstance(output, torch.Tensor):
                self.record(tag if calls == 1 else f"{tag}#{calls}", output.detach())
        return hook

    def new_batch(self) -> None:
        self.calls = {}

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def check_every(name: str, value: int) -> int:
    return check_number(name, value, "a positive integer", lambda v: v >= 1, integer=True)


# 1. learning curves and the generalization gap --------------------------------
class LearningCurves(L.Callback):
    """Train and validation curves on shared charts, and the generalization gap.

    Lightning logs ``train/loss`` and ``val/loss`` as separate TensorBoard
    charts; this callback writes a custom-scalars layout (TensorBoard's
    "Custom Scalars" tab) that draws them on one chart, the same for
    ``train/acc`` and ``val/acc``, plus one chart of every layer's gradient
    norm and one of the dead-unit fractions when those callbacks run. It also
    logs ``watch/generalization_gap`` = train/acc - val/acc at each
    epoch end: near zero while the model underfits, growing as it overfits
    (Goodfellow, Bengio & Courville 2016, Deep Learning, section 5.2). The gap
    is logged like any metric (``pl_module.log``), so it also lands in
    ``metrics.json`` and other callbacks can monitor it. ``train/acc`` is the
    average over the epoch's batches, taken while the weights still change and
    with dropout and augmentation on, so in the first epochs the gap is
    usually negative; overfitting is the gap turning positive and growing.

    Lightning 2.x runs the validation loop before ``on_train_epoch_end``, so
    both accuracies of the same epoch are in ``trainer.callback_metrics``
    there; an epoch without validation (``check_val_every_n_epoch`` > 1) logs
    no gap.
    """

    LAYOUT = {
        "learning curves": {
            "loss (train, val)": ["Multiline", ["train/loss", "val/loss"]],
            "accuracy (train, val)": ["Multiline", ["train/acc", "val/acc"]],
            "generalization gap (train acc - val acc)": ["Multiline", ["watch/generalization_gap"]],
        },
        "layers": {
            "log10 of the weight-gradient norm per layer": ["Multiline", [r"watch/grad_norm_log10/.*"]],
            "fraction of dead ReLU units per layer": ["Multiline", [r"watch/dead_units/.*"]],
        },
    }

    def __init__(self) -> None:
        self._validated_epoch = -1

    def on_fit_start(self, trainer, pl_module) -> None:
        writer = tensorboard(trainer)
        if writer is not None:
            writer.add_custom_scalars(self.LAYOUT)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = trainer.callback_metrics
        if self._validated_epoch != trainer.current_epoch or "train/acc" not in metrics or "val/acc" not in metrics:
            return
        gap = float(metrics["train/acc"]) - float(metrics["val/acc"])
        pl_module.log("watch/generalization_gap", gap, on_step=False, on_epoch=True,
                      logger=trainer.logger is not None)


# 2. per-layer gradient norms ---------------------------------------------------
class GradientNorms(L.Callback):
    """The L2 norm of each layer's weight gradient, as its log10 (``watch/grad_norm_log10/<layer>``: -8 is 1e-8), every
    N steps: the orders of magnitude between layers are what it shows, and a linear axis hides all but the largest.

    Shows vanishing gradients: backpropagation multiplies by each layer's
    activation derivative, at most 1/4 for the logistic sigmoid, so in a deep
    plain network (no batchnorm, no shortcuts) the first layers' gradients
    are orders of magnitude smaller than the last layers' (Glorot & Bengio
    2010, Understanding the difficulty of training deep feedforward neural
    networks; Hochreiter 1991). With ReLU they stay comparable across depth.

    Read in ``on_before_optimizer_step``: after backward (and after the
    mixed-precision unscaling and gradient accumulation), before gradient
    clipping and the step. L-BFGS evaluates its closure several times per
    step; only the first evaluation, the gradient at the current weights,
    is logged.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = check_every("callbacks.grad_norms.every_n_steps", every_n_steps)
        self._layers: list[tuple[str, nn.Module]] = []
        self._logged_step = -1

    def on_fit_start(self, trainer, pl_module) -> None:
        self._layers = weight_layers(network(pl_module))
        self._logged_step = -1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or step == self._logged_step:
            return
        writer = tensorboard(trainer)
        if writer is None:
            return
        self._logged_step = step
        grads = [(tag, layer.weight.grad) for tag, layer in self._layers if layer.weight.grad is not None]
        if not grads:
            return
        norms = torch.stack([torch.linalg.vector_norm(g.detach().float()) for _, g in grads]).tolist()  # one sync
        for (tag, _), norm in zip(grads, norms):
            # 1e-8 and 1e-3 apart on one axis
            writer.add_scalar(f"watch/grad_norm_log10/{tag}", math.log10(max(norm, 1e-30)), step)


# 3. dead ReLU units ------------------------------------------------------------
class ValidationProbe(L.Callback):
    """Forward hooks on the modules of ``watched`` types that exist only during a validation epoch
    (never during training): ``reset`` before it, ``_record(tag, output)`` per module output, and
    ``report(trainer, writer)`` after it, with TensorBoard's writer."""

    watched: tuple = ()

    def __init__(self) -> None:
        self._probe: ForwardProbe | None = None

    def reset(self) -> None:
        raise NotImplementedError

    def _record(self, tag: str, output: torch.Tensor) -> None:
        raise NotImplementedError

    def report(self, trainer, writer) -> None:
        raise NotImplementedError

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or tensorboard(trainer) is None:
            return
        self.reset()
        self._probe = ForwardProbe(modules_of(network(pl_module), self.watched), self._record)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self._probe is not None:
            self._probe.new_batch()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._probe is None:
            return
        self.teardown(trainer, pl_module, "validate")
        self.report(trainer, tensorboard(trainer))

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._probe is not None:
            self._probe.remove()
            self._probe = None


class DeadUnits(ValidationProbe):
    """Per ReLU layer, the fraction of its units that are dead: ``watch/dead_units/<layer>``.

    A unit (a channel of a convolution's output, a feature of a linear
    layer's) is dead when its ReLU outputs exactly zero for every example of
    the validation epoch and every spatial position: its input is negative
    on all the data, so no gradient reaches its weights and it never
    recovers. Too large a learning rate or a large negative bias kills units
    this way (Lu et al. 2019, Dying ReLU and initialization; Karpathy, CS231n
    notes "Neural Networks Part 1"; the motivation for leaky ReLU, Maas et al. 2013).

    Measured over the whole validation set (fixed, never augmented, the same
    every epoch, so epochs compare), with forward hooks that exist only during
    validation: the training steps are untouched. ReLU and ReLU6 modules are
    watched; activations without an exact zero (leaky ReLU, ELU, GELU, ...)
    cannot die this way.
    """

    watched = RELU_LIKE

    def __init__(self) -> None:
        super().__init__()
        self._active: dict[str, torch.Tensor] = {}
        self.fractions: dict[str, float] = {}  # the last epoch's values, by tag

    def reset(self) -> None:
        self._active = {}

    def _record(self, tag: str, output: torch.Tensor) -> None:
        if output.ndim < 2:
            return
        active = output.ne(0).any(dim=0)  # (C, ...): this batch has a non-zero somewhere
        if active.ndim > 1:
            active = active.flatten(1).any(dim=1)  # (C,): at any spatial position
        seen = self._active.get(tag)
        self._active[tag] = active if seen is None or seen.shape != active.shape else seen | active

    def report(self, trainer, writer) -> None:
        self.fractions = {}
        for tag, active in self._active.items():
            active = trainer.strategy.reduce(active.float(), reduce_op="sum") > 0  # alive on any device
            self.fractions[tag] = 1.0 - active.float().mean().item()
            writer.add_scalar(f"watch/dead_units/{tag}", self.fractions[tag], trainer.global_step)
        self._active = {}


# 4. weight and activation histograms -------------------------------------------
class Histograms(L.Callback):
    """Histograms of each layer's weights and each activation's outputs, every N epochs.

    ``xray/weights/<layer>`` shows weights spreading, shrinking under weight decay,
    or collapsing; ``xray/activations/<layer>`` (outputs of every activation module
    on the first validation batch) shows saturation: sigmoid units piling up
    near 0 and 1 in deep layers, tanh near -1 and 1, where their derivative
    vanishes (Glorot & Bengio 2010, figures 2-4), and ReLU layers whose mass
    sits at zero. Logged on epochs 1, N+1, 2N+1, ... (counted from 1) and the last one.

    Large activation maps are subsampled to ``max_values`` values (a fixed
    random subset) so that a histogram costs milliseconds.
    """

    def __init__(self, every_n_epochs: int = 5, weights: bool = True, activations: bool = True,
                 max_values: int = 65536) -> None:
        self.every_n_epochs = check_every("callbacks.histograms.every_n_epochs", every_n_epochs)
        self.max_values = check_every("callbacks.histograms.max_values", max_values)
        self.weights, self.activations = weights, activations
        self._probe: ForwardProbe | None = None
        self._generator = torch.Generator().manual_seed(0)

    def _due(self, trainer) -> bool:
        epoch, last = trainer.current_epoch, trainer.max_epochs
        return epoch % self.every_n_epochs == 0 or (last is not None and last > 0 and epoch == last - 1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        writer = tensorboard(trainer)
        if not self.weights or writer is None or not self._due(trainer):
            return
        for tag, layer in weight_layers(network(pl_module)):
            writer.add_histogram(f"xray/weights/{tag}", self._sample(layer.weight.detach()), trainer.global_step)

    def _sample(self, values: torch.Tensor) -> torch.Tensor:
        values = values.flatten()
        if values.numel() > self.max_values:
            picks = torch.randint(values.numel(), (self.max_values,), generator=self._generator)
            values = values[picks.to(values.device)]
        return values.float().cpu()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if (batch_idx != 0 or dataloader_idx != 0 or not self.activations or trainer.sanity_checking
                or not self._due(trainer)):
            return
        writer = tensorboard(trainer)
        if writer is None:
            return
        step = trainer.global_step

        def record(tag: str, output: torch.Tensor) -> None:
            writer.add_histogram(f"xray/activations/{tag}", self._sample(output), step)

        self._probe = ForwardProbe(modules_of(network(pl_module), ACTIVATION_TYPES), record)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._probe is not None:
            self._probe.remove()
            self._probe = None

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._probe is not None:
            self._probe.remove()
            self._probe = None


# 5. a grid of augmented training images ------------------------------------------
def image_grid(images: torch.Tensor, per_row: int = 8, pad: int = 2) -> torch.Tensor:
    """(N, C, H, W) images in [0, 1] -> one (C, H', W') image, ``per_row`` to a row, white gaps."""
    n, channels, height, width = images.shape
    columns = min(n, per_row)
    rows = math.ceil(n / columns)
    grid = images.new_ones(channels, pad + rows * (height + pad), pad + columns * (width + pad))
    for i, image in enumerate(images):
        top, left = pad + (i // columns) * (height + pad), pad + (i % columns) * (width + pad)
        grid[:, top:top + height, left:left + width] = image
    return grid


def unnormalize(images: torch.Tensor, shift: list[float] | None, scale: list[float] | None) -> torch.Tensor:
    """Undo ``Normalize(shift, scale)`` (datamodules/base.py) back to [0, 1]; without
    the statistics, stretch the batch's range to [0, 1] instead."""
    images = images.detach().float().cpu()
    if shift is not None and scale is not None:
        images = images * torch.tensor(scale).view(1, -1, 1, 1) + torch.tensor(shift).view(1, -1, 1, 1)
    else:
        images = (images - images.min()) / (images.max() - images.min()).clamp_min(1e-12)
    return images.clamp(0.0, 1.0)


class AugmentedImages(L.Callback):
    """The first training batch as the network sees it: ``xray/augmented_images``, once.

    The images come after augmentation (crops, flips, cutout, AutoAugment, ...)
    and are un-normalized with the data module's ``shift`` and ``scale``, so a
    bad augmentation (a flipped digit, a crop that cuts the object away, a
    wrong normalization) is visible before hours of training are spent on it.
    """

    def __init__(self, max_images: int = 64, per_row: int = 8) -> None:
        self.max_images = check_every("callbacks.augmented_images.max_images", max_images)
        self.per_row = check_every("callbacks.augmented_images.per_row", per_row)
        self._done = False

    def on_fit_start(self, trainer, pl_module) -> None:
        self._done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._done:
            return
        self._done = True
        writer = tensorboard(trainer)
        if writer is None or not isinstance(batch, (tuple, list)) or batch[0].ndim != 4:
            return
        data = trainer.datamodule
        images = unnormalize(batch[0][: self.max_images], getattr(data, "shift", None), getattr(data, "scale", None))
        writer.add_image("xray/augmented_images", image_grid(images, self.per_row), trainer.global_step,
                         dataformats="CHW")


# 6. the validation confusion matrix ----------------------------------------------
class ValConfusionMatrix(L.Callback):
    """The confusion matrix of each validation epoch as an image: ``xray/confusion_matrix``.

    Rows are true classes, columns predicted ones. Stepping through epochs in
    TensorBoard's Images tab shows which classes the model separates first
    and which pairs it keeps confusing (CIFAR-10's cat and dog). Counted with
    torchmetrics from the logits and targets that ``ImageClassifier.validation_step``
    returns; drawn by ``core.figures.confusion_matrix_figure``.
    """

    def __init__(self) -> None:
        self._matrix: MulticlassConfusionMatrix | None = None
        self.counts: list[list[int]] | None = None  # the last epoch's matrix

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._matrix = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.sanity_checking or not isinstance(outputs, dict) or "logits" not in outputs:
            return
        if tensorboard(trainer) is None:
            return
        logits = outputs["logits"]
        if self._matrix is None:
            self._matrix = MulticlassConfusionMatrix(logits.shape[1]).to(logits.device)
        self._matrix.update(logits, outputs["target"])

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._matrix is None:
            return
        self.counts = self._matrix.compute().cpu().tolist()
        self._matrix = None
        classes = getattr(trainer.datamodule, "classes", None)
        if classes is None or len(classes) != len(self.counts):
            classes = [str(i) for i in range(len(self.counts))]
        figure = confusion_matrix_figure(self.counts, [str(c) for c in classes], title="confusion matrix (val)")
        # counted from 1, as the epoch lines
        figure.axes[0].set_title(f"confusion matrix (validation, epoch {trainer.current_epoch + 1})")
        tensorboard(trainer).add_figure("xray/confusion_matrix", figure, trainer.global_step)


# 7. the mean output of each activation ---------------------------------------------
class ActivationMeans(ValidationProbe):
    """``watch/activation_mean/<layer>``: the mean output of each activation module over the whole
    validation set, after each validation.

    The logistic sigmoid's outputs are all positive (mean near 0.5): the next layer's inputs
    are not zero-centred, so the gradients of one unit's incoming weights all share a sign and
    descent zig-zags (LeCun et al. 1998, Efficient BackProp, section 4.4; the reason tanh,
    whose mean sits near 0, trains better). Beside the ``xray/activations/`` histograms
    (saturation), this is the other half of sigmoid's trouble.
    """

    watched = ACTIVATION_TYPES

    def __init__(self) -> None:
        super().__init__()
        self._sums: dict[str, tuple] = {}
        self.means: dict[str, float] = {}  # the last epoch's values, by tag

    def reset(self) -> None:
        self._sums = {}

    def _record(self, tag: str, output: torch.Tensor) -> None:
        total, count = self._sums.get(tag, (0.0, 0))
        self._sums[tag] = (total + output.float().sum(), count + output.numel())

    def report(self, trainer, writer) -> None:
        self.means = {tag: float(total) / max(count, 1) for tag, (total, count) in self._sums.items()}
        for tag, mean in self.means.items():
            writer.add_scalar(f"watch/activation_mean/{tag}", mean, trainer.global_step)


# 8. the sparsity of the weights ---------------------------------------------------
def sparsity(net: nn.Module, threshold: float) -> dict[str, float]:
    """Per conv / linear layer, the fraction of its weights with |w| < threshold; ``all``: over every one."""
    fractions, small, total = {}, 0, 0
    for tag, layer in weight_layers(net):
        below = layer.weight.detach().abs().lt(threshold)
        fractions[tag] = below.float().mean().item()
        small, total = small + int(below.sum()), total + below.numel()
    fractions["all"] = small / max(total, 1)
    return fractions


class WeightSparsity(L.Callback):
    """``watch/sparsity/<layer>`` and ``watch/sparsity/all``: the fraction of weights with |w| < ``threshold``,
    at each epoch end.

    An L1 penalty pulls every weight toward 0 by the same step (its subgradient is
    lambda * sign(w)), so weights that the data does not hold up reach 0 and stay near it; L2's
    pull, 2 lambda w, shrinks in proportion and fades near 0, so weights get small but not zero
    (Tibshirani 1996, the lasso; Goodfellow et al. 2016, Deep Learning, section 7.1.2).
    """

    def __init__(self, threshold: float = 1e-3) -> None:
        self.threshold = check_number("callbacks.sparsity.threshold", threshold, "a number > 0", lambda t: t > 0)
        self.fractions: dict[str, float] = {}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        writer = tensorboard(trainer)
        if writer is None:
            return
        self.fractions = sparsity(network(pl_module), self.threshold)
        for tag, fraction in self.fractions.items():
            writer.add_scalar(f"watch/sparsity/{tag}", fraction, trainer.global_step)


# 9. classification margins ----------------------------------------------------------
def margins(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """s_y - max_{j != y} s_j per example: positive when classified right, at least the hinge's
    margin (1 by default) when outside it."""
    correct = logits.gather(1, target[:, None])[:, 0]
    others = logits.scatter(1, target[:, None], float("-inf"))
    return correct - others.max(1).values


class Margins(L.Callback):
    """``xray/margins`` (histogram) and ``watch/inside_margin``: the score margin of each
    validation example, and the fraction of examples with margin < ``margin``.

    The multi-class hinge loss (Weston & Watkins 1999; ``loss=hinge``) is zero for an example
    once its class's score beats every other by ``loss.margin``: the examples still inside the
    margin are the ones that shape the boundary, the support vectors of an SVM (Cortes & Vapnik
    1995). Cross-entropy never stops pushing, so its margins keep growing."""

    def __init__(self, margin: float = 1.0) -> None:
        self.margin = float(margin)
        self._values: list[torch.Tensor] = []
        self.inside: float | None = None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._values = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking and isinstance(outputs, dict) and "logits" in outputs:
            self._values.append(margins(outputs["logits"].float(), outputs["target"]).cpu())

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        writer = tensorboard(trainer)
        if writer is None or not self._values:
            return
        values = torch.cat(self._values)
        self.inside = values.lt(self.margin).float().mean().item()
        writer.add_histogram("xray/margins", values, trainer.global_step)
        writer.add_scalar("watch/inside_margin", self.inside, trainer.global_step)
        self._values = []
