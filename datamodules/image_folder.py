"""Any folder of images in torchvision's ImageFolder layout:

    <root>/train/<class>/<image>   (the validation split is drawn from here)
    <root>/test/<class>/<image>

so you can train the zoo on your own images. Every image is brought to
``image_size`` (resize of the shorter side, centre crop).

On the torchvision path images are decoded lazily, one at a time, at every
epoch. On the tensor path (the default wherever it fits, see
``tensor_path``) the whole folder is decoded ONCE, with ``num_workers``
processes, through the very same Resize and CenterCrop, into one uint8
tensor per split, and cached as ``<data_dir>/image_folder_cache/<key>-<split>.pt``
where the key is a hash of the resolved root and ``image_size``; each cache
also records every file's name, size and modification time of its split and
is rebuilt when they change. Both paths see identical pixels. An evaluation
with given statistics (a weights card's) reads the test split alone.

The normalization statistics come from ``stats_samples`` training images
drawn with the seed (all of them if there are fewer), to keep start-up short
on large folders; both paths draw the same images, so they get the same
statistics.

The folder is checked where it is read, before any training: both splits
must hold the same class folders, and every image is decoded once when the
data module is set up (on the tensor path that decoding is the cache; on the
torchvision path it is a check, repeated at every set-up). A missing class,
a file that does not decode (truncated, or not an image at all) or an image
whose pixels are not 8-bit (16-bit, 32-bit or float modes) gets one line
naming the file or the class and what was expected. Symbolic links inside the
folder are not followed (one warning line counts them): a link loop would read
the same images again and again, a link out of the tree files that are not its.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets
from torchvision.transforms import v2

from core.errors import check_number

from .base import ClassificationDataModule, TensorImages
from .transforms import DataError

log = logging.getLogger(__name__)
# PIL modes of 8-bit images, brought to RGB as torchvision's ImageFolder does; others (I;16, I, F) would be clipped
MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")


def read_image(path: str) -> tuple[Image.Image | None, str]:
    """(the image as RGB, "") or (None, what is wrong with the file)."""
    try:
        with Image.open(path) as image:
            if image.mode not in MODES:
                return None, f"{path} has mode {image.mode}; expected an 8-bit image (RGB, grey, palette or CMYK)"
            image.load()  # decodes all of it: a truncated file fails here, not in the middle of training
            return image.convert("RGB"), ""
    except Exception as error:  # noqa: BLE001 -- whatever PIL raises on these bytes, the file is what is wrong
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return None, f"{path} is not a readable image ({reason}); expected a decodable JPEG, PNG, ... file"


class Checked(Dataset):
    """Every image of ``samples`` decoded, with what is wrong with it instead of an exception (which a
    DataLoader worker would turn into a traceback): (uint8 image through ``transform`` or an empty
    tensor, target, problem or "")."""

    def __init__(self, samples: list[tuple[str, int]], transform=None) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        image, problem = read_image(path)
        if image is None or self.transform is None:
            return torch.zeros(0, dtype=torch.uint8), target, problem
        return self.transform(image).as_subclass(torch.Tensor), target, problem


def by_value(items: list) -> tuple:
    """A batch of ``Checked`` items as (images as NumPy arrays, targets, problems): a worker sends NumPy
    arrays by value, where every tensor would hold a file descriptor until the main process lets it go
    (60,000 images exhausted the descriptors on a 16-core GPU machine: 'received 0 items of ancdata')."""
    images, targets, problems = zip(*items)
    return [image.numpy() for image in images], targets, problems


class LinkFreeImageFolder(datasets.ImageFolder):
    """torchvision's ImageFolder that follows no symbolic link: a linked class folder, sub-folder or file
    (a loop back into the tree, ``ln -s .. train/cat/loop``, or a way out of it) is skipped and counted in
    ``skipped_links``, never read. Classes and files come in torchvision's order (sorted)."""

    skipped_links: list[str] = []

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = sorted(e.name for e in os.scandir(directory) if e.is_dir(follow_symlinks=False))
        if not classes:
            raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
        return classes, {name: i for i, name in enumerate(classes)}

    @staticmethod
    def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        samples, found, links = [], set(), []
        for name in sorted(class_to_idx):
            for top, folders, files in sorted(os.walk(os.path.join(directory, name), followlinks=False)):
                links += [os.path.join(top, f) for f in folders + files if os.path.islink(os.path.join(top, f))]
                for file in sorted(files):
                    path = os.path.join(top, file)
                    if not os.path.islink(path) and datasets.folder.has_file_allowed_extension(path, extensions):
                        samples.append((path, class_to_idx[name]))
                        found.add(name)
        LinkFreeImageFolder.skipped_links += links
        empty = sorted(set(class_to_idx) - found)
        if empty and not allow_empty:
            raise FileNotFoundError(f"Found no valid file for the classes {', '.join(empty)}. "
                                    f"Supported extensions are: {', '.join(extensions or ())}")
        return samples


class ImageFolderDataModule(ClassificationDataModule):
    name = "image_folder"
    in_channels = 3
    resize = True
    tensor_max_bytes = 4 << 30  # pipeline=auto: a folder bigger than this decoded stays on the torchvision path

    def __init__(self, root: str, stats_samples: int = 5000, **kwargs) -> None:
        super().__init__(**kwargs)
        check_number("data.stats_samples", stats_samples, "an integer >= 1", lambda v: v >= 1, integer=True)
        self.root = Path(root)
        for split in ("train", "test"):
            if not (self.root / split).is_dir():
                raise DataError(
                    f"data.root={root!r} has no {split}/ folder; expected {root}/train/<class>/* and "
                    f"{root}/test/<class>/*"
                )
        self.classes = sorted(p.name for p in (self.root / "train").iterdir() if p.is_dir() and not p.is_symlink())
        tested = sorted(p.name for p in (self.root / "test").iterdir() if p.is_dir() and not p.is_symlink())
        for name, has, lacks in [(c, "train", "test") for c in self.classes if c not in tested] + [
                (c, "test", "train") for c in tested if c not in self.classes]:
            raise DataError(f"data.root={root!r}: class {name!r} has a {has}/ folder but no {lacks}/{name}/ folder; "
                            f"expected the same class folders under train/ and test/")
        if len(self.classes) < 2:
            raise DataError(f"data.root={root!r}: train/ holds {len(self.classes)} class folders, need at least 2")
        self.num_classes = len(self.classes)
        self.stats_samples = stats_samples
        self._fits_in_memory = True

    @property
    def tensor_path(self) -> bool:
        if self.pipeline == "auto" and not self._fits_in_memory:
            return False
        return super().tensor_path

    def to_size(self) -> v2.Compose:
        return v2.Compose([v2.ToImage(), v2.Resize(self.image_size, antialias=True), v2.CenterCrop(self.image_size)])

    def folder(self, split: str) -> datasets.ImageFolder:
        LinkFreeImageFolder.skipped_links = []
        try:
            found = LinkFreeImageFolder(str(self.root / split))
        except FileNotFoundError as error:  # torchvision: a class folder without a single image file
            raise DataError(f"data.root={str(self.root)!r}: {split}/: {str(error).splitlines()[0]}") from None
        links = LinkFreeImageFolder.skipped_links
        if links:
            log.warning(f"data.root={str(self.root)!r}: {len(links)} symbolic links in {split}/ not followed "
                        f"(first: {os.path.relpath(links[0], self.root)}); only the files and folders of "
                        "the tree are read")
        return found

    def check(self, checked: Checked) -> list:
        """Decode every image of ``checked`` once (``num_workers`` processes); the batches, or
        DataError naming the first bad file."""
        batches = list(DataLoader(checked, batch_size=256, num_workers=self.num_workers, collate_fn=by_value))
        problems = [p for _, _, found in batches for p in found if p]
        if problems:
            more = f" (and {len(problems) - 1} more bad files)" if len(problems) > 1 else ""
            raise DataError(f"data.root={str(self.root)!r}: {problems[0]}{more}")
        return batches

    def load(self):
        train, test = self.folder("train"), self.folder("test")
        splits = self.read({"train": train, "test": test})
        return splits["train"], torch.as_tensor(train.targets), splits["test"]

    def load_test(self):
        return self.read({"test": self.folder("test")})["test"]

    def read(self, folders: dict[str, datasets.ImageFolder]) -> dict:
        """Each split decoded into a tensor (the cache) on the tensor path; on the torchvision path the folders
        themselves, every file checked now (they are decoded lazily at every epoch, not in the middle of
        training)."""
        decoded_bytes = sum(len(f) for f in folders.values()) * self.in_channels * self.image_size**2
        self._fits_in_memory = decoded_bytes <= self.tensor_max_bytes
        if self.pipeline == "auto" and not self._fits_in_memory:
            log.info(f"data.pipeline=auto: {self.root} would take {decoded_bytes / 2**30:.1f} GiB decoded; "
                     "torchvision path")
        if self.tensor_path:
            return {name: self.decoded(name, folder) for name, folder in folders.items()}
        self.check(Checked([sample for folder in folders.values() for sample in folder.samples]))
        return folders

    def cache_path(self, split: str) -> Path:
        key = hashlib.sha1(f"{self.root.resolve()}|{self.image_size}".encode()).hexdigest()[:16]
        return Path(self.data_dir) / "image_folder_cache" / f"{key}-{split}.pt"

    def decoded(self, split: str, folder: datasets.ImageFolder) -> TensorImages:
        """The split as a uint8 tensor, from its cache or decoded once and cached."""
        files = hashlib.sha1()
        for path, _ in folder.samples:
            stat = os.stat(path)
            files.update(f"{os.path.relpath(path, self.root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        path = self.cache_path(split)
        cached = torch.load(path, weights_only=True) if path.is_file() else None
        if cached is not None:
            if cached["files"] == files.hexdigest() and cached["image_size"] == self.image_size:
                return TensorImages(cached["images"], cached["targets"])
            log.info(f"{path} is stale ({self.root}/{split} changed); decoding again")
        log.info(f"decoding {len(folder)} images of {self.root}/{split} once into {path}")
        earlier = path.with_name(path.name.rsplit("-", 1)[0] + ".pt")  # both splits in one file, before per split
        if earlier.is_file():
            log.warning(f"{earlier} ({earlier.stat().st_size / 2**20:.0f} MiB) is an earlier version's cache of "
                        "this folder, no longer read; delete it to free the space")
        batches = self.check(Checked(folder.samples, self.to_size()))
        images = torch.from_numpy(np.stack([image for images, _, _ in batches for image in images]))
        targets = torch.tensor([target for _, targets, _ in batches for target in targets])
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")  # renamed when complete: no half-written cache
        torch.save({"root": str(self.root.resolve()), "split": split, "image_size": self.image_size,
                    "files": files.hexdigest(), "images": images, "targets": targets}, partial)
        partial.replace(path)
        return TensorImages(images, targets)

    def fingerprint(self) -> str:
        """sha256 of the images this module reads, both splits, in the order it reads them: each file's path under
        the root, its size and its bytes. It names a copy of a data set by what it holds, whatever its folder is
        called or wherever it lies (the exporter recognises the CIFAR-10 JPEG copy by it); about 4 s for the
        60,000 files of that copy here."""
        digest = hashlib.sha256()
        for split in ("train", "test"):
            for path, _ in self.folder(split).samples:
                data = Path(path).read_bytes()
                digest.update(f"{Path(path).relative_to(self.root).as_posix()}\0{len(data)}\0".encode())
                digest.update(data)
        return digest.hexdigest()

    def train_images_for_stats(self, pool, indices):
        generator = torch.Generator().manual_seed(self.seed)
        chosen = torch.tensor(indices)[torch.randperm(len(indices), generator=generator)[: self.stats_samples]]
        if isinstance(pool, TensorImages):  # already decoded, through the same Resize and CenterCrop
            return pool.images[chosen]
        to_size = self.to_size()
        return torch.stack([to_size(pool[int(i)][0]) for i in chosen])
