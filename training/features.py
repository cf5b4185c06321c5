"""What a trained network has learned, as pictures: first-layer filters, feature
maps stage by stage, and class-activation maps (Grad-CAM).

| callback (``callbacks=diagnostics`` node) | TensorBoard image | the idea it shows |
|---|---|---|
| ``FirstLayerFilters`` (``filters``) | ``xray/filters`` | convolution as a learned feature detector: one tile per first-layer filter (oriented edges, colour blobs; Zeiler & Fergus 2014, fig. 2) |
| ``FeatureMaps`` (``feature_maps``) | ``xray/feature_maps/<i>_<layer>`` | the hierarchy of features: one fixed validation image through each stage, fine edges early, coarse parts late |
| ``GradCAM`` (``grad_cam``) | ``xray/grad_cam_correct``, ``xray/grad_cam_misclassified`` | where the network looks for the class it predicts (Selvaraju et al. 2017) |

The same pictures as PNG files: ``write_pngs`` (``python evaluate.py ...
visualize=true``). The drawing functions return tensors in [0, 1]; matplotlib
is imported only where a PNG is written or a colour map applied.
"""  # noqa: E501 -- the table's rows are one line each

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import UserError
from core.files import save_figure

from .diagnostics import check_every, image_grid, network, tensorboard, unnormalize


def first_conv(net: nn.Module) -> nn.Conv2d | None:
    """The first convolution the network registers (its first layer), or None (a linear model)."""
    return next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)


def stretch(x: torch.Tensor) -> torch.Tensor:
    """Each image of (N, C, H, W) scaled to [0, 1] on its own (a constant one becomes 0.5)."""
    flat = x.flatten(1)
    lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-12), torch.full_like(x, 0.5))


def filter_grid(conv: nn.Conv2d, tile: int = 24, per_row: int = 8) -> torch.Tensor:
    """One tile per filter of ``conv``: RGB when it reads 3 channels, else the mean over
    its input channels in grey; each tile stretched to [0, 1] and enlarged to ``tile`` pixels."""
    w = conv.weight.detach().float().cpu()  # (out, in/groups, k, k)
    w = w if w.shape[1] in (1, 3) else w.mean(1, keepdim=True)
    scale = max(1, tile // max(w.shape[-2:]))
    tiles = F.interpolate(stretch(w), scale_factor=scale, mode="nearest")
    return image_grid(tiles, per_row)


def stage_outputs(net: nn.Module, image: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(name, output) of the last leaf module at each spatial resolution, in the order the
    network runs: the end of each stage. ``image``: (1, C, H, W)."""
    outputs: list[tuple[str, torch.Tensor]] = []
    names = {m: n for n, m in net.named_modules()}

    def hook(module, inputs, output):
        if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[-1] > 1:
            outputs.append((names[module], output.detach()))

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(image)
    finally:
        for handle in handles:
            handle.remove()
    stages: dict[tuple[int, int], tuple[str, torch.Tensor]] = {}
    for name, output in outputs:
        stages.pop(tuple(output.shape[-2:]), None)  # re-inserted: the last at this resolution, in order
        stages[tuple(output.shape[-2:])] = (name, output)
    return list(stages.values())


def feature_map_grids(net: nn.Module, image: torch.Tensor, channels: int = 16,
                      per_row: int = 8) -> list[tuple[str, torch.Tensor]]:
    """For each stage, its first ``channels`` maps for one image, each stretched to [0, 1] and
    enlarged to the input's size: [(layer name, grid)]."""
    size = image.shape[-2:]
    grids = []
    for name, output in stage_outputs(net, image):
        maps = output[0, :channels, None].float().cpu()  # (channels, 1, h, w)
        grids.append((name, image_grid(F.interpolate(stretch(maps), size=size, mode="nearest"), per_row)))
    return grids


def last_spatial_layer(net: nn.Module, image: torch.Tensor) -> nn.Module | None:
    """The module whose output is the last feature map wider than 1x1 (Grad-CAM's layer)."""
    stages = stage_outputs(net, image[:1])
    return net.get_submodule(stages[-1][0]) if stages else None


def grad_cam(net: nn.Module, images: torch.Tensor, classes: torch.Tensor | None = None,
             layer: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM (Selvaraju et al. 2017): for each image, ReLU(sum_k alpha_k A_k) with A the
    feature maps of ``layer`` (default: the last one wider than 1x1) and alpha_k the spatial mean
    of d score_c / d A_k, c the class in ``classes`` (default: the predicted one). Returns the
    maps upsampled to the input's size, each scaled to [0, 1] (non-negative), and the logits.
    The network runs in eval mode; its mode and parameter gradients are left as they were."""
    was_training = net.training
    net.eval()
    layer = layer or last_spatial_layer(net, images)
    if layer is None:
        raise UserError("grad_cam needs a network with a spatial feature map (a convolutional one)")
    captured = []
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        with torch.enable_grad():
            logits = net(images.detach().clone())
            classes = logits.argmax(1) if classes is None else classes
            score = logits.gather(1, classes[:, None]).sum()
            (grads,) = torch.autograd.grad(score, captured[0])  # parameter .grad untouched
    finally:
        handle.remove()
        net.train(was_training)
    weights = grads.mean(dim=(2, 3), keepdim=True)  # alpha_k: (N, K, 1, 1)
    cam = F.relu((weights * captured[0]).sum(1, keepdim=True)).detach()  # (N, 1, h, w)
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.view(-1, 1, 1)
    return torch.where(peak > 0, cam / peak.clamp_min(1e-12), cam), logits.detach()


def overlay(images: torch.Tensor, maps: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Images in [0, 1] (N, C, H, W) with heat maps (N, H, W) in [0, 1] over them, in the jet colours."""
    from matplotlib import colormaps

    heat = torch.from_numpy(colormaps["jet"](maps.cpu().numpy())[..., :3]).permute(0, 3, 1, 2).float()
    images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    return (1 - alpha) * images + alpha * heat


def cam_grids(net: nn.Module, images: torch.Tensor, targets: torch.Tensor, shift=None, scale=None,
              count: int = 4) -> dict[str, torch.Tensor]:
    """Grad-CAM of up to ``count`` correctly and ``count`` wrongly classified images:
    {"correct": grid, "misclassified": grid}, each row image above its map overlaid."""
    maps, logits = grad_cam(net, images)
    right = logits.argmax(1).cpu() == targets.cpu()
    pictures = unnormalize(images, shift, scale)
    grids = {}
    for kind, chosen in (("correct", right), ("misclassified", ~right)):
        picks = chosen.nonzero().flatten()[:count]
        if len(picks):
            shown = pictures[picks].expand(-1, 3, -1, -1)
            grids[kind] = image_grid(torch.cat([shown, overlay(pictures[picks], maps[picks].cpu())]), len(picks))
    return grids


def class_sample(loader, num_classes: int, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``per_class`` images of every class, in the loader's order: a test split sorted by class (an image
    folder) gives its first batch from one class only. Stops once every class has its share."""
    images, targets, counts = [], [], [0] * num_classes
    for batch in loader:
        x, y = batch[0], batch[1]
        for image, target in zip(x, y.tolist()):
            if counts[target] < per_class:
                counts[target] += 1
                images.append(image)
                targets.append(target)
        if min(counts) >= per_class:
            break
    return torch.stack(images), torch.tensor(targets)


def round_robin(targets: torch.Tensor, chosen: torch.Tensor, count: int) -> list[int]:
    """Up to ``count`` indices where ``chosen`` holds, one class after another, so that every class shows."""
    by_class: dict[int, list[int]] = {}
    for i in chosen.nonzero().flatten().tolist():
        by_class.setdefault(int(targets[i]), []).append(i)
    picks = []
    while len(picks) < count and any(by_class.values()):
        for c in sorted(by_class):
            if by_class[c] and len(picks) < count:
                picks.append(by_class[c].pop(0))
    return picks


def report_figures(net: nn.Module, images: torch.Tensor, targets: torch.Tensor, shift=None, scale=None,
                   classes: list[str] | None = None, model: str = "model", count: int = 8) -> dict:
    """The report figures (core/figures.py), titled, labelled and at least 800 pixels wide, by file name:
    filters.png (the first convolution's filters), feature_maps.png (the first image through each stage,
    fine to coarse) and grad_cam_correct.png, grad_cam_misclassified.png (up to ``count`` images each, one
    class after another, "true → predicted"). ``images`` should hold every class (``class_sample``)."""
    from core.figures import feature_maps_figure, filters_figure, grad_cam_figure

    names = [str(c) for c in classes] if classes else [str(i) for i in range(int(targets.max()) + 1)]
    images = images.to(next(net.parameters()).device)
    pictures = unnormalize(images, shift, scale)
    as_rgb = lambda x: x.permute(0, 2, 3, 1).squeeze(-1).numpy()  # noqa: E731  (N, H, W) or (N, H, W, 3)

    figures = {}
    conv = first_conv(net)
    if conv is not None:
        w = conv.weight.detach().float().cpu()
        tiles = stretch(w if w.shape[1] in (1, 3) else w.mean(1, keepdim=True))
        name = next(n for n, m in net.named_modules() if m is conv)
        channels = (f"{w.shape[1]} input channel{'s' if w.shape[1] > 1 else ''}"
                    + ("" if w.shape[1] in (1, 3) else ", their mean"))
        title = (f"{model}: the {w.shape[0]} filters of its first convolution ({name}, "
                 f"{'x'.join(map(str, w.shape[-2:]))}, {channels}), each scaled to its own range")
        figures["filters.png"] = filters_figure(as_rgb(tiles), title)
    was_training = net.training
    net.eval()
    try:
        stages = stage_outputs(net, images[:1])
    finally:
        net.train(was_training)
    if stages:
        rows = [(f"{name}\n{out.shape[1]} maps {out.shape[-2]}x{out.shape[-1]}",
                 stretch(out[0, :8, None].float().cpu())[:, 0].numpy())
                for name, out in stages]
        title = f"{model}: one test image through each stage, its first maps (each scaled to its own range)"
        figures["feature_maps.png"] = feature_maps_figure(as_rgb(pictures[:1])[0], rows, title,
                                                          f"input: {names[int(targets[0])]} (its true class)")
        maps, logits = grad_cam(net, images)
        predicted = logits.argmax(1).cpu()
        layer = stages[-1][0]
        for kind, chosen in (("correct", predicted == targets.cpu()), ("misclassified", predicted != targets.cpu())):
            picks = round_robin(targets, chosen, count)
            if not picks:
                continue
            # two lines: long names fit
            labels = [f"{names[int(targets[i])]}\n→ {names[int(predicted[i])]}" for i in picks]
            shown = pictures[picks].expand(-1, 3, -1, -1)
            title = (f"{model}: Grad-CAM of the predicted class (at {layer}), {len(picks)} {kind} test "
                     f"image{'s' if len(picks) > 1 else ''} (true → predicted)")
            overlays = as_rgb(overlay(pictures[picks], maps[picks].cpu()))
            figures[f"grad_cam_{kind}.png"] = grad_cam_figure(as_rgb(shown), overlays, labels, title)
    return figures


def write_pngs(net: nn.Module, images: torch.Tensor, targets: torch.Tensor, output_dir: Path, **options) -> list[Path]:
    """``report_figures`` as PNG files in ``output_dir`` (100 dpi); returns the paths written."""
    written = []
    for name, figure in report_figures(net, images, targets, **options).items():
        written.append(Path(output_dir) / name)
        save_figure(figure, written[-1], dpi=100)  # atomically, never through a link
    return written


# callbacks -----------------------------------------------------------------------
class _EveryNEpochs(L.Callback):
    """Runs ``draw`` at the end of epochs 1, N+1, 2N+1, ... (counted from 1) and the last (after validation)."""

    def __init__(self, name: str, every_n_epochs: int) -> None:
        self.every_n_epochs = check_every(f"callbacks.{name}.every_n_epochs", every_n_epochs)

    def due(self, trainer) -> bool:
        epoch, last = trainer.current_epoch, trainer.max_epochs
        return epoch % self.every_n_epochs == 0 or (last is not None and last > 0 and epoch == last - 1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        writer = tensorboard(trainer)
        if writer is not None and self.due(trainer):
            self.draw(writer, trainer, network(pl_module))

    def draw(self, writer, trainer, net: nn.Module) -> None:
        raise NotImplementedError


class _ValImages(_EveryNEpochs):
    """Keeps the first validation batch (the same images every epoch) for drawing."""

    def __init__(self, name: str, every_n_epochs: int, max_images: int) -> None:
        super().__init__(name, every_n_epochs)
        self.max_images = check_every(f"callbacks.{name}.max_images", max_images)
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and self.batch is None and isinstance(batch, (tuple, list)):
            self.batch = (batch[0][: self.max_images].detach().cpu(), batch[1][: self.max_images].detach().cpu())

    def images(self, pl_module) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.batch is None or self.batch[0].ndim != 4:
            return None
        return self.batch[0].clone().to(pl_module.device), self.batch[1].clone()  # clone: out of inference mode


class FirstLayerFilters(_EveryNEpochs):
    """``xray/filters``: every filter of the first convolution, one tile each."""

    def __init__(self, every_n_epochs: int = 5) -> None:
        super().__init__("filters", every_n_epochs)

    def draw(self, writer, trainer, net) -> None:
        conv = first_conv(net)
        if conv is not None:
            writer.add_image("xray/filters", filter_grid(conv), trainer.global_step, dataformats="CHW")


class FeatureMaps(_ValImages):
    """``xray/feature_maps/<i>_<layer>``: the first validation image's maps at the end of each stage
    (the last layer at each resolution), the first ``channels`` channels of each."""

    def __init__(self, every_n_epochs: int = 5, channels: int = 16) -> None:
        super().__init__("feature_maps", every_n_epochs, 1)
        self.channels = check_every("callbacks.feature_maps.channels", channels)

    def draw(self, writer, trainer, net) -> None:
        batch = self.images(trainer.lightning_module)
        if batch is None:
            return
        data = trainer.datamodule
        image = batch[0][:1]
        writer.add_image("xray/feature_maps/input",
                         unnormalize(image, getattr(data, "shift", None), getattr(data, "scale", None))[0],
                         trainer.global_step, dataformats="CHW")
        was_training = net.training
        net.eval()
        try:
            grids = feature_map_grids(net, image, self.channels)
        finally:
            net.train(was_training)
        width = len(str(max(len(grids) - 1, 0)))
        for i, (name, grid) in enumerate(grids):
            writer.add_image(f"xray/feature_maps/{i:0{width}d}_{name}", grid, trainer.global_step, dataformats="CHW")


class GradCAM(_ValImages):
    """``xray/grad_cam_correct`` and ``xray/grad_cam_misclassified``: up to ``count`` validation images of
    each, above their Grad-CAM maps for the predicted class, from the first validation batch."""

    def __init__(self, every_n_epochs: int = 5, count: int = 4) -> None:
        super().__init__("grad_cam", every_n_epochs, 256)
        self.count = check_every("callbacks.grad_cam.count", count)

    def draw(self, writer, trainer, net) -> None:
        batch = self.images(trainer.lightning_module)
        if batch is None or first_conv(net) is None:
            return
        data = trainer.datamodule
        grids = cam_grids(net, batch[0], batch[1], getattr(data, "shift", None),
                          getattr(data, "scale", None), self.count)
        for kind, grid in grids.items():
            writer.add_image(f"xray/grad_cam_{kind}", grid, trainer.global_step, dataformats="CHW")
