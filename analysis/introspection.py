"""What a model is made of, layer by layer: parameters, output sizes, MACs and
the receptive field, at any input size.

    rows, totals = summarize(model, (3, 32, 32))
    print(render(rows, totals, "table"))
    params, macs = count_parameters_and_macs(model, (3, 32, 32))

One forward pass of one image in eval mode is watched three ways, all with
torch's own tools:

- forward hooks on every module give one row per leaf module call (its
  output shape, its parameters), in execution order;
- ``torch.utils.flop_counter.FlopCounterMode`` counts the multiply-adds; its
  running total is read before and after each leaf call, so a row's MACs are
  exactly what torch counted inside it (one MAC = two FLOPs; the counter
  covers matrix products and convolutions, not BatchNorm, pooling or
  activations, the usual convention of fvcore and torchinfo);
- a ``TorchFunctionMode`` sees every torch function the model calls
  (``conv2d``, ``max_pool2d``, ``cat``, ``+``, slicing, ...) and carries a
  receptive field along with each tensor, so branching networks need no
  special cases.

No library does all three: torchinfo and fvcore give shapes, parameters and
FLOPs but no receptive field, and their module-order view cannot follow a
tensor through a shortcut. Hence this small tracer.

The textbook formulas (CS231n, "Convolutional Neural Networks"), shown next
to the measured values so the two can be compared:
- parameters of a convolution with N filters of F x F over D input channels
  (in groups of g): N * F * F * D / g + N (the bias); of a linear layer with
  D inputs and N outputs: N * D + N;
- output size: (W - F + 2P) / S + 1, rounded down (rounded up for a
  ceil-mode pooling layer, as torch does), F the effective kernel d(F-1)+1.

Receptive field (Araujo, Norris, Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019): the input pixels that can
change a unit. Per axis, each tensor carries the interval of input pixels
seen by its unit 0, [lo, hi], and the jump j (the distance in input pixels
between neighbouring units, the product of the strides so far). A
convolution or pooling layer of kernel k, stride s, padding p, dilation d
maps it to

    lo' = lo - p * j,   hi' = hi + (d (k - 1) - p) * j,   j' = j * s

so r = hi - lo + 1 follows the standard recursion r' = r + (k_eff - 1) j.
Unit u of a tensor sees [lo + u j, hi + u j]; pixels outside the image are
zero padding. Where paths meet (the sum of a residual block, the
concatenation of Inception branches or of DenseNet layers), the result sees
the union of what its inputs see: the interval from the smallest lo to the
largest hi. So a residual block's output has the receptive field of its
widest branch, and the shortcut of a downsampling block (1x1, stride 2) sets
the jump exactly as the main path does. This is the set of pixels that can
reach a unit along any path, which is what the gradient measures:
``empirical_receptive_field`` (tests/analysis/empirical.py) checks it.

Two choices, documented here because they are choices:
- Global operations (global average pooling, flatten, linear layers) make a
  unit see the whole input: such rows are marked ``global``.
- A squeeze-and-excitation gate (a 1x1 map computed from the global pool,
  broadcast over the feature map) is not counted: it rescales channels
  rather than mixing positions, and counting it would make every layer after
  EfficientNet's first block "global". Only inputs of the same spatial size
  as the result are merged. The empirical field of such a net is the whole
  image; the analytic one here is that of its convolutional paths.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakIdKeyDictionary

from core.formatting import human

Pair = tuple[int, int]


# --- the receptive field carried by a tensor ---------------------------------------------------
@dataclass(frozen=True)
class Field:
    """Per axis (height, width): the input pixels [lo, hi] that unit 0 sees, and the jump."""

    lo: Pair
    hi: Pair
    jump: Pair
    is_global: bool = False

    @property
    def size(self) -> Pair:
        return (self.hi[0] - self.lo[0] + 1, self.hi[1] - self.lo[1] + 1)

    def through(self, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair = (1, 1)) -> Field:
        """After a convolution or pooling window (the recursion in the module docstring)."""
        return Field(
            lo=tuple(self.lo[a] - padding[a] * self.jump[a] for a in (0, 1)),
            hi=tuple(self.hi[a] + (dilation[a] * (kernel[a] - 1) - padding[a]) * self.jump[a] for a in (0, 1)),
            jump=tuple(self.jump[a] * stride[a] for a in (0, 1)),
            is_global=self.is_global,
        )

    def spread(self, spatial: Pair) -> Field:
        """Every unit of a map of ``spatial`` size mixed into one (global pooling, flatten)."""
        hi = tuple(self.hi[a] + (spatial[a] - 1) * self.jump[a] for a in (0, 1))
        return Field(self.lo, hi, self.jump, is_global=True)

    @staticmethod
    def union(fields: Sequence[Field]) -> Field:
        return Field(
            lo=tuple(min(f.lo[a] for f in fields) for a in (0, 1)),
            hi=tuple(max(f.hi[a] for f in fields) for a in (0, 1)),
            jump=tuple(max(f.jump[a] for f in fields) for a in (0, 1)),
            is_global=any(f.is_global for f in fields),
        )


def _pair(value) -> Pair:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


# torch functions that slide a window: name -> the order of their positional arguments
WINDOW_OPS = {
    "conv2d": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "max_pool2d": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "max_pool2d_with_indices": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "avg_pool2d": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    "lp_pool2d": ("input", "norm_type", "kernel_size", "stride", "ceil_mode"),
}
ADAPTIVE_OPS = ("adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices")


@dataclass(frozen=True)
class Window:
    """The geometry of one sliding-window op on one input."""

    op: str
    kernel: Pair
    stride: Pair
    padding: Pair
    dilation: Pair = (1, 1)
    ceil_mode: bool = False

    def output_size(self, size: Pair) -> Pair:
        """(W - F + 2P) / S + 1 with F = d(k-1)+1, rounded down; or, for ceil-mode pooling,
        rounded up unless the last window would start past the input (torch's rule)."""
        out = []
        for a in (0, 1):
            span = size[a] + 2 * self.padding[a] - (self.dilation[a] * (self.kernel[a] - 1) + 1)
            if span < 0 and not self.ceil_mode:
                out.append(0)  # the window does not fit at all
                continue
            n = (span + (self.stride[a] - 1 if self.ceil_mode else 0)) // self.stride[a] + 1
            if self.ceil_mode and (n - 1) * self.stride[a] >= size[a] + self.padding[a]:
                n -= 1
            out.append(n)
        return tuple(out)

    def formula(self, size: Pair) -> str:
        """The textbook formula with this layer's numbers, per axis where they differ."""
        def one(a: int) -> str:
            f = self.dilation[a] * (self.kernel[a] - 1) + 1
            return f"({size[a]} - {f} + 2*{self.padding[a]})/{self.stride[a]} + 1"
        same = size[0] == size[1] and all(v[0] == v[1] for v in (self.kernel, self.stride, self.padding, self.dilation))
        return one(0) if same else f"{one(0)} x {one(1)}"


def _window(name: str, args: tuple, kwargs: dict) -> Window | None:
    """The window of a conv / pooling call, from its arguments (None for other ops)."""
    if name not in WINDOW_OPS:
        return None
    bound = dict(zip(WINDOW_OPS[name], args), **kwargs)
    x = bound.get("input")
    if not isinstance(x, Tensor) or x.dim() != 4:
        return None
    if name == "conv2d":
        kernel = tuple(bound["weight"].shape[-2:])
        padding = bound.get("padding", 0)
        if isinstance(padding, str):  # "valid" or "same" (stride 1)
            dilation = _pair(bound.get("dilation", 1))
            padding = (0, 0) if padding == "valid" else tuple(dilation[a] * (kernel[a] - 1) // 2 for a in (0, 1))
        return Window("conv", kernel, _pair(bound.get("stride", 1)), _pair(padding), _pair(bound.get("dilation", 1)))
    kernel = _pair(bound["kernel_size"])
    stride = bound.get("stride") or kernel  # pooling: stride defaults to the kernel
    return Window(name.split("_")[0] + "_pool", kernel, _pair(stride), _pair(bound.get("padding", 0)),
                  _pair(bound.get("dilation", 1)), bool(bound.get("ceil_mode", False)))


def _tensors(obj) -> Iterator[Tensor]:
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


class FeatureMapVanishes(ValueError):
    """The input is too small: a window no longer fits somewhere in the net."""

    def __init__(self, layer: str, kind: str, size: Pair, out: Pair, input_size: Pair) -> None:
        self.layer, self.kind, self.size, self.out, self.input_size = layer, kind, size, out, input_size
        super().__init__(self.describe("the model"))

    def describe(self, model_name: str, smallest: int | None = None) -> str:
        (h, w), (a, b), (c, d) = self.input_size, self.size, self.out
        text = (f"input {h}x{w} is too small for {model_name}: the feature map vanishes at "
                f"{self.layer} ({self.kind}: {a}x{b} -> {c}x{d})")
        return text + (f"; use input_size >= {smallest}" if smallest else "")


class _Tracer(TorchFunctionMode):
    """Carries a ``Field`` along with every tensor the model computes, checks
    that every window fits, and notes the windows each module call slides."""

    def __init__(self, input_size: Pair) -> None:
        super().__init__()
        self.fields: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.input_size = input_size
        self.stack: list[tuple[str, nn.Module]] = []  # the module calls under way, outermost first
        self.windows: list[list[tuple[Window, Pair, Pair]]] = []  # per open leaf call: (window, in, out)
        self.last_map: tuple[str, tuple[int, ...], Field] | None = None  # the last spatial map computed

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        window = _window(name, args, kwargs)
        x = args[0] if args else None
        if window is not None:
            size = tuple(x.shape[-2:])
            out = window.output_size(size)
            if min(out) <= 0:
                layer, module = self.stack[-1] if self.stack else ("input", None)
                kind = type(module).__name__ if module is not None else name
                raise FeatureMapVanishes(layer, kind, size, out, self.input_size)
            if self.windows:
                self.windows[-1].append((window, size, out))
        result = func(*args, **kwargs)
        self._carry(name, window, args, kwargs, result)
        return result

    def _carry(self, name: str, window: Window | None, args: tuple, kwargs: dict, result) -> None:
        outputs = list(_tensors(result))
        inputs = [t for t in _tensors((args, kwargs)) if t in self.fields]
        if not outputs or not inputs:
            return
        x = args[0] if args and isinstance(args[0], Tensor) else None
        new = None
        if window is not None and x in self.fields:
            new = self.fields[x].through(window.kernel, window.stride, window.padding, window.dilation)
        elif name in ADAPTIVE_OPS and x in self.fields and x.dim() == 4:
            new = self._adaptive(self.fields[x], tuple(x.shape[-2:]), tuple(outputs[0].shape[-2:]))
        elif name == "__getitem__" and x in self.fields:
            new = self._slice(self.fields[x], x, args[1], outputs[0])
        elif name == "pad" and x in self.fields and x.dim() == 4 and outputs[0].dim() == 4:
            pad = list(args[1] if len(args) > 1 else kwargs["pad"]) + [0, 0, 0, 0]
            new = Field(tuple(self.fields[x].lo[a] - pad[2 - 2 * a] * self.fields[x].jump[a] for a in (0, 1)),
                        tuple(self.fields[x].hi[a] - pad[2 - 2 * a] * self.fields[x].jump[a] for a in (0, 1)),
                        self.fields[x].jump, self.fields[x].is_global)
        if new is None:
            new = self._merge(inputs, outputs[0])
        if new is not None:
            if not new.is_global and outputs[0].dim() == 4:
                self.last_map = (self.stack[-1][0] if self.stack else "input", tuple(outputs[0].shape), new)
            for out in outputs:
                if out.dim() == 4 or new.is_global:
                    self.fields[out] = new

    def _adaptive(self, f: Field, size: Pair, out: Pair) -> Field | None:
        if out == (1, 1):
            return f.spread(size)
        if size[0] % out[0] or size[1] % out[1]:
            return None  # uneven windows: no single kernel and stride
        k = (size[0] // out[0], size[1] // out[1])
        return f.through(k, k, (0, 0))

    def _slice(self, f: Field, x: Tensor, index, out: Tensor) -> Field | None:
        index = index if isinstance(index, tuple) else (index,)
        if index.count(Ellipsis) == 1:  # x[..., ::2, ::2]
            at = index.index(Ellipsis)
            index = index[:at] + (slice(None),) * (x.dim() - len(index) + 1) + index[at + 1:]
        if x.dim() != 4 or out.dim() != 4 or len(index) < 3 or not all(isinstance(i, slice) for i in index):
            return None
        starts, steps = [], []
        for i in list(index[2:4]) + [slice(None)] * (4 - len(index)):
            if (i.start or 0) < 0 or (i.step or 1) < 1:
                return None
            starts.append(i.start or 0)
            steps.append(i.step or 1)
        return Field(tuple(f.lo[a] + starts[a] * f.jump[a] for a in (0, 1)),
                     tuple(f.hi[a] + starts[a] * f.jump[a] for a in (0, 1)),
                     tuple(f.jump[a] * steps[a] for a in (0, 1)), f.is_global)

    def _merge(self, inputs: list[Tensor], out: Tensor) -> Field | None:
        """Pointwise ops, concatenation, sums: the union over inputs of the result's spatial size.
        A result without the 4 dims of a feature map (flatten, linear) sees the whole input."""
        if out.dim() != 4:
            spread = [self.fields[t].spread(tuple(t.shape[-2:])) if t.dim() == 4 and not self.fields[t].is_global
                      else self.fields[t] for t in inputs]
            return Field.union(spread)
        same = [self.fields[t] for t in inputs if t.dim() == 4 and t.shape[-2:] == out.shape[-2:]]
        if same:
            return Field.union(same)
        if tuple(out.shape[-2:]) == (1, 1):  # a reduction over the map (mean, amax)
            return Field.union([self.fields[t].spread(tuple(t.shape[-2:])) if t.dim() == 4 else self.fields[t]
                                for t in inputs])
        return None  # an op that resizes in a way not modelled here (interpolation): unknown


# --- one row per layer --------------------------------------------------------------------------
@dataclass
class LayerRow:
    """One call of a leaf module (or a leaf that did not run in eval mode, ``ran`` False)."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    params: int
    formula_params: int | None  # N*F*F*D/g + N (convolution) or N*D + N (linear); None for other layers
    macs: int
    rf: Pair | None  # receptive field (height, width) in input pixels, unclipped; None: unknown
    jump: Pair | None  # effective stride: input pixels between neighbouring units
    rf_start: Pair | None  # first input pixel that unit (0, 0) sees (negative: padding)
    rf_global: bool  # every unit sees the whole input (after global pooling, flatten)
    formula_size: Pair | None  # (W - F + 2P)/S + 1 for a convolution or pooling layer
    formula_text: str | None
    ran: bool = True

    def rf_interval(self, unit: Pair, image: Pair) -> tuple[Pair, Pair]:
        """The input rows and columns [first, last] that ``unit`` sees, clipped to the image."""
        assert self.rf is not None and self.rf_start is not None and self.jump is not None
        out = []
        for a in (0, 1):
            lo = self.rf_start[a] + unit[a] * self.jump[a]
            out.append((max(lo, 0), min(lo + self.rf[a] - 1, image[a] - 1)))
        return tuple(out)


@dataclass
class Totals:
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...] | None
    params: int
    trainable_params: int
    macs: int  # every MAC torch counted in the forward pass
    macs_outside_layers: int  # of which done by a container's own forward (included in macs)
    layers: int  # leaf module calls
    # the last spatial feature map (before global pooling or flatten): the module that computed it,
    # its shape, receptive field, jump and first pixel of unit (0, 0), as in LayerRow
    last_map: str | None = None
    last_map_shape: tuple[int, ...] | None = None
    last_map_rf: Pair | None = None
    last_map_jump: Pair | None = None
    last_map_start: Pair | None = None
    not_run: list[str] = field(default_factory=list)


def formula_params(module: nn.Module) -> int | None:
    """The textbook count: N*F*F*D/groups + N for a convolution, N*D + N for a linear layer."""
    if isinstance(module, nn.Conv2d):
        n, (fh, fw), d, g = module.out_channels, module.kernel_size, module.in_channels, module.groups
        return n * fh * fw * d // g + (n if module.bias is not None else 0)
    if isinstance(module, nn.Linear):
        n, d = module.out_features, module.in_features
        return n * d + (n if module.bias is not None else 0)
    return None


def _input_shape(input_shape: Sequence[int]) -> tuple[int, int, int, int]:
    shape = tuple(input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W) of positive integers, got {input_shape!r}")
    return shape


def _example(model: nn.Module, shape: Sequence[int]) -> Tensor:
    p = next(model.parameters(), None)
    return torch.zeros(shape, device=p.device if p is not None else "cpu",
                      dtype=p.dtype if p is not None and p.is_floating_point() else torch.float32)


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def summarize(model: nn.Module, input_shape: Sequence[int]) -> tuple[list[LayerRow], Totals]:
    """One row per leaf module call of a forward pass in eval mode, and the totals.

    Raises ``FeatureMapVanishes`` (a ValueError) when the input is too small."""
    shape = _input_shape(input_shape)
    x = _example(model, shape)
    tracer = _Tracer(tuple(shape[-2:]))
    tracer.fields[x] = Field((0, 0), (0, 0), (1, 1))
    rows: list[LayerRow] = []
    seen_params: set[int] = set()
    calls: dict[str, int] = {}
    counter = FlopCounterMode(display=False)
    before: list[int] = []

    def pre(name: str, module: nn.Module):
        def hook(_module, _args):
            tracer.stack.append((name, module))
            if _is_leaf(module):
                tracer.windows.append([])
                before.append(counter.get_total_flops())
        return hook

    def post(name: str, module: nn.Module):
        def hook(_module, _args, output):
            tracer.stack.pop()
            if not _is_leaf(module):
                return
            windows, flops = tracer.windows.pop(), counter.get_total_flops() - before.pop()
            calls[name] = calls.get(name, 0) + 1
            new = [p for p in module.parameters() if id(p) not in seen_params]
            seen_params.update(id(p) for p in new)
            out = next(_tensors(output), None)
            f = tracer.fields.get(out) if out is not None else None
            window, size, _ = windows[-1] if windows else (None, None, None)
            rows.append(LayerRow(
                name=name if calls[name] == 1 else f"{name} (call {calls[name]})",
                type=type(module).__name__,
                output_shape=tuple(out.shape) if out is not None else None,
                params=sum(p.numel() for p in new),
                formula_params=formula_params(module) if calls[name] == 1 else None,
                macs=flops // 2,
                rf=f.size if f else None,
                jump=None if f is None or f.is_global else f.jump,
                rf_start=f.lo if f else None,
                rf_global=bool(f and f.is_global),
                formula_size=window.output_size(size) if window else None,
                formula_text=window.formula(size) if window else None,
            ))
        return hook

    named = list(model.named_modules())
    handles = [h for name, module in named for h in (
        module.register_forward_pre_hook(pre(name or type(model).__name__, module)),
        module.register_forward_hook(post(name or type(model).__name__, module)))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter, tracer:
            output = model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    not_run = [name for name, m in named if _is_leaf(m) and name not in calls and any(True for _ in m.parameters())]
    for name in not_run:  # e.g. GoogLeNet's auxiliary heads: their parameters still count
        module = model.get_submodule(name)
        new = [p for p in module.parameters() if id(p) not in seen_params]
        seen_params.update(id(p) for p in new)
        rows.append(LayerRow(name, type(module).__name__, None, sum(p.numel() for p in new), formula_params(module),
                             0, None, None, None, False, None, None, ran=False))
    rest = [p for p in model.parameters() if id(p) not in seen_params]  # held by a container itself
    if rest:
        rows.append(LayerRow("(container parameters)", "Parameter", None, sum(p.numel() for p in rest), None,
                             0, None, None, None, False, None, None, ran=False))
    total = counter.get_total_flops() // 2
    last = tracer.last_map
    out = next(_tensors(output), None)
    totals = Totals(
        input_shape=tuple(shape), output_shape=tuple(out.shape) if out is not None else None,
        params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        macs=total, macs_outside_layers=total - sum(r.macs for r in rows), layers=sum(r.ran for r in rows),
        last_map=last[0] if last else None, last_map_shape=last[1] if last else None,
        last_map_rf=last[2].size if last else None, last_map_jump=last[2].jump if last else None,
        last_map_start=last[2].lo if last else None,
        not_run=not_run,
    )
    return rows, totals


def count_parameters_and_macs(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, int]:
    """(parameters, multiply-accumulates per image) of ``model`` on an input of
    ``input_shape`` ((C, H, W) or (N, C, H, W); MACs are per image), counted
    by ``torch.utils.flop_counter`` in eval mode. For logging with the
    hyper-parameters; no hooks, one forward pass."""
    shape = _input_shape(input_shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(_example(model, shape))
    finally:
        model.train(was_training)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2 // shape[0]


def smallest_input_size(model: nn.Module, in_channels: int, start: int = 1, limit: int = 8192) -> int | None:
    """The smallest square input side > ``start`` on which the model runs, found
    on the meta device (shapes only, no arithmetic). None if none up to ``limit``."""
    meta = {name: torch.empty_like(t, device="meta") for name, t in [*model.named_parameters(), *model.named_buffers()]}

    def runs(side: int) -> bool:
        try:
            with torch.no_grad(), _Tracer((side, side)):
                torch.func.functional_call(model, meta, (torch.empty(1, in_channels, side, side, device="meta"),))
            return True
        except (RuntimeError, ValueError, IndexError):  # FeatureMapVanishes, or a size the net cannot take
            return False

    was_training = model.training
    model.eval()
    try:
        low, high = start, start + 1
        while not runs(high):
            low, high = high, high * 2
            if high > limit:
                return None
        while high - low > 1:  # the smallest size that runs lies in (low, high]
            mid = (low + high) // 2
            low, high = (low, mid) if runs(mid) else (mid, high)
        return high
    finally:
        model.train(was_training)


# --- output: table, csv, json, markdown ---------------------------------------------------------
FORMATS = ("table", "csv", "json", "markdown")
COLUMNS = ("layer", "type", "output", "params", "N*F*F*D+N", "MACs", "RF", "jump", "(W-F+2P)/S+1")


def _pair_text(p: Pair | None) -> str:
    return "—" if p is None else str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _cells(row: LayerRow) -> list[str]:
    shape = "not run (eval)" if not row.ran else "x".join(map(str, row.output_shape[1:])) if row.output_shape else "?"
    rf = "global" if row.rf_global else _pair_text(row.rf) if row.ran else "—"
    fsize = "—" if row.formula_size is None else "x".join(map(str, row.formula_size))
    fparams = "—" if row.formula_params is None else f"{row.formula_params:,}"
    return [row.name, row.type, shape, f"{row.params:,}", fparams, f"{row.macs:,}", rf, _pair_text(row.jump), fsize]


def total_lines(totals: Totals, model_name: str = "the model") -> list[str]:
    shape = "x".join(map(str, totals.input_shape[1:]))
    lines = [
        f"{model_name} at {shape}: {totals.params:,} parameters ({totals.trainable_params:,} trainable, "
        f"{totals.params * 4 / 2**20:.2f} MiB in float32), {totals.macs:,} MACs per image ({human(totals.macs)}), "
        f"{totals.layers} layer calls",
    ]
    if totals.last_map:
        lines.append(f"receptive field of the last feature map ({totals.last_map}): {_pair_text(totals.last_map_rf)} "
                     f"pixels, jump {_pair_text(totals.last_map_jump)}")
    if totals.macs_outside_layers:
        lines.append(f"{totals.macs_outside_layers:,} of the MACs are done outside any leaf layer")
    if totals.not_run:
        lines.append(f"{len(totals.not_run)} layers with parameters do not run in eval mode (counted in the total)")
    return lines


def _row_dict(row: LayerRow) -> dict:
    d = asdict(row)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def render(rows: list[LayerRow], totals: Totals, fmt: str = "table", model_name: str = "the model") -> str:
    """The summary as text: an aligned ``table``, ``csv``, ``json`` or ``markdown``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "json":
        t = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(totals).items()}
        return json.dumps({"model": model_name, "layers": [_row_dict(r) for r in rows], "totals": t}, indent=1)
    if fmt == "csv":
        buffer = io.StringIO()
        names = list(_row_dict(rows[0]).keys()) if rows else ["name"]
        writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "x".join(map(str, v)) if isinstance(v, list) else v for k, v in _row_dict(row).items()})
        writer.writerow({"name": "total", "params": totals.params, "macs": totals.macs})
        return buffer.getvalue()
    cells = [_cells(r) for r in rows]
    right = {3, 4, 5, 6, 7, 8}
    if fmt == "markdown":
        rule = "|" + "|".join("---:" if i in right else "---" for i in range(len(COLUMNS))) + "|"
        lines = ["| " + " | ".join(COLUMNS) + " |", rule]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines + [""] + [f"- {line}" for line in total_lines(totals, model_name)]) + "\n"
    widths = [max(len(c) for c in col) for col in zip(COLUMNS, *cells)]

    def fit(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "-" * len(fit(COLUMNS))
    return "\n".join([fit(COLUMNS), rule, *map(fit, cells), rule, *total_lines(totals, model_name)]) + "\n"


def depth_profile(rows: list[LayerRow], totals: Totals) -> list[tuple[int, str, int, int]]:
    """(depth, layer, receptive field, feature-map height) for the input (depth 0) and every
    layer with a spatial output, in execution order: what the plot of summarize.py shows."""
    spatial = [r for r in rows if r.ran and r.output_shape and len(r.output_shape) == 4 and r.rf and not r.rf_global]
    return [(0, "input", 1, totals.input_shape[2])] + [(i + 1, r.name, r.rf[0], r.output_shape[2])
                                                       for i, r in enumerate(spatial)]


__all__ = ["LayerRow", "Totals", "FeatureMapVanishes", "summarize", "count_parameters_and_macs", "render",
           "smallest_input_size", "depth_profile", "formula_params", "FORMATS"]
