"""The device-resident data path (``data.pipeline=tensor``).

CIFAR's images are so small that on a modern GPU the usual per-image
pipeline (index one image, augment it, normalize it, collate, copy to the
GPU) sets the pace, not the network. The fastest public CIFAR-10 trainers
keep the whole data set on the GPU as uint8 and augment whole batches there
(David Page, "How to train your ResNet", 2018; Keller Jordan's airbench,
2024). This module does the same for every data module of the zoo:

- each split's images are held once, as one uint8 tensor (N, C, H, W) on
  the training device, with their labels;
- a batch is drawn by index; random crop with zero padding and horizontal
  flip are ONE gather over the batch (the crop offset and the mirroring are
  both just a map from output to input pixel); the uint8 batch is then
  turned into floats and normalized in place (``x * a - b`` per channel,
  the same affine map as ``ToDtype(scale=True)`` + ``Normalize``); cutout
  is a mask over the normalized batch;
- nothing is decoded, copied per image or pinned: a batch is born on the
  device and Lightning's ``transfer_batch_to_device`` finds nothing to move.

The augmentations draw from the same distributions as the torchvision path
(``datamodules/transforms.py``): crop offsets uniform over the 2p+1 x 2p+1
positions of the zero-padded image, flips with p = 0.5, cutout centres
uniform over the image with the square allowed to hang over the border.
AutoAugment and RandAugment have no batched form here (their per-image
policies pick different operations per image): ``base.py`` refuses them
with ``data.pipeline=tensor`` and falls back to torchvision with ``auto``.

Randomness comes from ``torch.Generator``s on the device, seeded from
(seed, epoch[, rank]): the same seed gives the same batches, epoch after
epoch, and a resumed run continues with the batches it would have had.
Lightning calls ``loader.sampler.set_epoch(epoch)`` at every epoch start
(as it does for a DistributedSampler); a plain loop may call it too, or let
the epoch advance by one after each full pass.

Distributed (DDP): every rank draws the same permutation and takes a
strided shard of it (as DistributedSampler does), dropping the tail so that
every rank runs the same number of batches; validation and test splits are
strided without padding, so each image is scored exactly once. Each rank
holds the whole data set on its device (fine for CIFAR's 150 MB; a limit
for large image folders). Tested with two CPU processes (gloo), not on GPUs.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from .transforms import DataError

TENSOR_AUGMENTATIONS = ("none", "crop", "standard", "cutout")


def seeded_generator(device: torch.device, *seed_parts: int) -> torch.Generator:
    """A generator on ``device`` seeded from a tuple of ints (hash of ints is stable across runs)."""
    return torch.Generator(device=device).manual_seed(hash(seed_parts) & 0x7FFF_FFFF_FFFF_FFFF)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator, flip: bool = False) -> torch.Tensor:
    """Random ``H x W`` crops of the zero-padded batch, as one gather.

    ``images``: (N, C, H, W), any dtype (uint8 here). Each image gets its own
    offset (dy, dx), uniform over {0..2p}^2 in the padded image, and with
    ``flip`` is mirrored left-right with p = 0.5 (torchvision's
    RandomCrop(padding=p) then RandomHorizontalFlip()). Dtype and shape are kept.
    """
    n, c, h, w = images.shape
    device = images.device
    dy = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    cols = torch.arange(w, device=device)
    if flip:
        mirrored = torch.rand(n, 1, generator=generator, device=device) < 0.5
        cols = torch.where(mirrored, w - 1 - cols, cols)  # (N, W): output column -> crop column
    padded = F.pad(images, (padding,) * 4) if padding else images
    hp, wp = h + 2 * padding, w + 2 * padding
    rows = dy + torch.arange(h, device=device)  # (N, H) rows of the padded image
    pixel = (rows[:, :, None] * wp + (dx + cols)[:, None, :]).view(n, 1, h * w)  # (N, 1, H*W)
    out = torch.gather(padded.reshape(n, c, hp * wp), 2, pixel.expand(n, c, h * w))
    return out.view(n, c, h, w)


def cutout(batch: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017) on a batch, in place: one ``size`` x
    ``size`` square per image zeroed at a uniformly random centre, clipped
    by the border (``transforms.Cutout``, batch-wise)."""
    n, _, h, w = batch.shape
    device = batch.device
    cy = torch.randint(0, h, (n, 1), generator=generator, device=device)
    cx = torch.randint(0, w, (n, 1), generator=generator, device=device)
    ys, xs = torch.arange(h, device=device), torch.arange(w, device=device)
    in_rows = (ys >= cy - size // 2) & (ys < cy + size - size // 2)  # (N, H)
    in_cols = (xs >= cx - size // 2) & (xs < cx + size - size // 2)  # (N, W)
    return batch.masked_fill_((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0)


@contextlib.contextmanager
def one_thread(enabled: bool = True):
    """Run the block on one CPU thread. A CIFAR batch costs well under a
    millisecond on one core; spread over OpenMP threads it only adds
    synchronization, and on a busy machine, where a thread waits for a core,
    it cost 20 to 70 times more (an epoch of digits: 3 ms on one thread,
    50-200 ms on two, measured on the 2-core development machine)."""
    threads = torch.get_num_threads()
    if enabled:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class EpochSampler:
    """Which of a split's images each epoch visits, in which order.

    Shuffled: a permutation drawn from (seed, epoch), the same on every rank,
    of which rank r takes items r, r + world_size, ...; the tail that does not
    divide evenly is dropped so every rank runs the same number of steps.
    Not shuffled: the split in order, strided over the ranks.
    """

    def __init__(self, size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.world_size if self.shuffle else len(range(self.rank, self.size, self.world_size))

    def order(self, device: torch.device) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.rank, self.size, self.world_size, device=device)
        generator = seeded_generator(device, self.seed, self.epoch)
        permutation = torch.randperm(self.size, generator=generator, device=device)
        return permutation[self.rank : len(self) * self.world_size : self.world_size]


class DeviceLoader:
    """Batches (normalized float images, int64 labels) made on the images' device.

    ``images``: uint8 (M, C, H, W), already on the training device; ``targets``:
    (M,) labels; ``indices``: which of them form this split (validation and
    training share one tensor). ``shift`` / ``scale``: the per-channel
    normalization of ``transforms.channel_stats``. ``augment``: one of
    ``TENSOR_AUGMENTATIONS``; "none" for validation and test.
    Iterable any number of times; ``len`` is the number of batches.
    """

    batch_sampler = None  # Lightning inspects loaders for one; there is none

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        indices: torch.Tensor,
        batch_size: int,
        shift: list[float],
        scale: list[float],
        augment: str = "none",
        shuffle: bool = False,
        crop_padding: int = 4,
        cutout_size: int = 16,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if augment not in TENSOR_AUGMENTATIONS:
            raise DataError(f"augment={augment!r} has no batched form; valid: {', '.join(TENSOR_AUGMENTATIONS)}")
        assert images.dtype == torch.uint8 and images.ndim == 4, "images must be uint8 (N, C, H, W)"
        self.device = images.device
        self.images, self.targets = images, targets.to(self.device, torch.int64)
        self.indices = torch.as_tensor(indices, dtype=torch.int64, device=self.device)
        self.batch_size, self.augment, self.seed, self.rank = batch_size, augment, seed, rank
        self.crop_padding, self.cutout_size = crop_padding, cutout_size
        scale_t = torch.tensor(scale, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        shift_t = torch.tensor(shift, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        # (x / 255 - shift) / scale == x * a - b, one multiply and one subtract in place
        self.mul, self.sub = 1.0 / (255.0 * scale_t), shift_t / scale_t
        self.sampler = EpochSampler(len(self.indices), shuffle, seed, rank, world_size)

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def transform(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 batch -> augmented, normalized float32 batch (same shape)."""
        if self.augment != "none":
            batch = random_crop(batch, self.crop_padding, generator, flip=self.augment != "crop")
        batch = batch.float().mul_(self.mul).sub_(self.sub)
        if self.augment == "cutout":
            batch = cutout(batch, self.cutout_size, generator)
        return batch

    def __iter__(self):
        epoch, on_cpu = self.sampler.epoch, self.device.type == "cpu"
        with one_thread(on_cpu):
            order = self.indices[self.sampler.order(self.device)]
        generator = seeded_generator(self.device, self.seed, epoch, self.rank, 1)
        for start in range(0, len(order), self.batch_size):
            with one_thread(on_cpu):  # the model's steps between batches keep every thread
                index = order[start : start + self.batch_size]
                batch = self.transform(self.images[index], generator), self.targets[index]
            yield batch
        self.sampler.epoch = epoch + 1  # a plain loop gets a new epoch without calling set_epoch
