"""A decoded-image cache for small on-disk sets, so that repeated epochs do not decode the JPEGs again.

:class:`DecodedImageCache` wraps a dataset that loads an image separately from transforming it
(:class:`RawImageSource`: ``load_image(i)`` decodes, ``make_item(i, image)`` applies the transform
and attaches the target; :class:`~mec_eval.data.transfer.TransferDataset` has both, torchvision
``DatasetFolder`` sets get them from :func:`raw_source`). The decoded images are kept as uint8 RGB
pixels, before any random transform, so an item built from the cache is the item built from the
file: the same transform runs on the same pixels under the same random draws.

Design:
- Key: the list of image files. Datasets over the same files (a split built once with the training
  transform and once with the test transform) share one store of pixels in the process.
- Limit: ``limit_mb`` bounds the pixels all live stores of one process hold together (a store is
  freed with the last dataset that uses it). Images are kept in index order while they fit; the
  first one that does not fit ends the fill, the rest are decoded on every read, and a one-line
  message says how many were kept. Under torchrun each process keeps its own store (the limit is
  per process).
- Workers: the store is filled in the main process when the dataset is built (decoding spread
  over ``workers`` loader processes), never inside a loader worker: the training engine makes a
  new DataLoader each epoch, so a store filled in a worker would die with it at the epoch's end.
  The pixels live in a few large uint8 tensors, which loader workers share instead of copying:
  fork shares the pages, and spawn / forkserver pass torch storages through shared memory.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import DatasetFolder

MIB = 1 << 20
CHUNK_BYTES = 64 * MIB  # pixels are packed into tensors of this size (a larger image gets its own)


class RawImageSource(Protocol):
    """A dataset whose items are ``make_item(i, load_image(i))``; ``image_paths`` names the files read."""

    image_paths: Sequence[str]

    def __len__(self) -> int: ...

    def load_image(self, index: int) -> Image.Image: ...

    def make_item(self, index: int, image: Image.Image) -> Any: ...


class _FolderSource:
    """The raw-image hooks of a torchvision ``DatasetFolder`` (``ImageFolder``), read from its public fields."""

    def __init__(self, folder: DatasetFolder):
        self.folder = folder
        self.image_paths = [path for path, _ in folder.samples]

    def __len__(self) -> int:
        return len(self.folder.samples)

    def load_image(self, index: int) -> Image.Image:
        return self.folder.loader(self.folder.samples[index][0])

    def make_item(self, index: int, image: Image.Image):
        # DatasetFolder.__getitem__ after its loader call.
        target = self.folder.samples[index][1]
        if self.folder.transform is not None:
            image = self.folder.transform(image)
        if self.folder.target_transform is not None:
            target = self.folder.target_transform(target)
        return image, target


def raw_source(dataset: Dataset) -> RawImageSource | None:
    """``dataset``'s raw-image hooks, or None for a set without files to decode (CIFAR, embedded sets)."""
    if isinstance(dataset, DatasetFolder):
        return _FolderSource(dataset)
    if all(hasattr(dataset, name) for name in ("image_paths", "load_image", "make_item")):
        return dataset
    return None


class DecodedImages:
    """The uint8 RGB pixels of the first ``len(self)`` images of a set, packed into a few flat tensors.

    Filled by :meth:`add` calls, then closed by :meth:`finish`; read by :meth:`image`.
    """

    def __init__(self):
        self.chunks: list[torch.Tensor] = []
        self._places: list | torch.Tensor = []  # (chunk, offset, height, width) per image; [N, 4] after finish
        self._fill = 0  # bytes used in the last chunk
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._places)

    def add(self, pixels: np.ndarray) -> None:
        """Append one image, [H, W, 3] uint8."""
        size = pixels.size
        if not self.chunks or self._fill + size > len(self.chunks[-1]):
            self._close_last()
            # torch.empty commits pages only when written: an unused tail costs no memory.
            self.chunks.append(torch.empty(max(CHUNK_BYTES, size), dtype=torch.uint8))
            self._fill = 0
        self.chunks[-1][self._fill:self._fill + size].numpy()[:] = pixels.reshape(-1)  # PIL's array is read-only
        self._places.append((len(self.chunks) - 1, self._fill, *pixels.shape[:2]))
        self._fill += size
        self.nbytes += size

    def finish(self) -> None:
        """End the fill: trim the last chunk, and hold the places in a tensor, which workers share like the pixels."""
        self._close_last()
        self._places = torch.tensor(self._places, dtype=torch.int64).reshape(-1, 4)

    def _close_last(self) -> None:
        # A spawned or forkserver worker maps a chunk's whole storage, written or not: keep only what is used.
        if self.chunks and self._fill < len(self.chunks[-1]):
            self.chunks[-1] = self.chunks[-1][:self._fill].clone()

    def image(self, index: int) -> Image.Image:
        chunk, offset, height, width = self._places[index].tolist()
        pixels = self.chunks[chunk][offset:offset + height * width * 3].view(height, width, 3).numpy()
        return Image.fromarray(pixels)  # [H, W, 3] uint8 reads as RGB


# Stores alive in this process, by image file list; a store goes away with its last dataset.
_STORES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def held_bytes() -> int:
    """Bytes of pixels all live decoded-image stores of this process hold."""
    return sum(store.nbytes for store in list(_STORES.values()))


def _pixels(image: Image.Image) -> np.ndarray:
    # The hit path rebuilds a PIL RGB image; a loader returning anything else (a uint8 tensor from
    # data.decode) would get another type back from the cache, so it is refused here.
    if not isinstance(image, Image.Image) or image.mode != "RGB":
        raise TypeError(f"load_image must return a PIL RGB image to be cached, got {type(image).__name__} "
                        f"{getattr(image, 'mode', '')}".rstrip())
    return np.asarray(image)


class _Decoded(Dataset):
    """The pixels of image ``i`` of ``source``, for a fill spread over loader workers."""

    def __init__(self, source: RawImageSource):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(_pixels(self.source.load_image(index)).copy())


def _decoded_in_order(source: RawImageSource, workers: int):
    if workers == 0:
        return (_pixels(source.load_image(i)) for i in range(len(source)))
    # batch_size=None: one image per item (sizes differ); its own generator leaves torch's global RNG alone.
    loader = DataLoader(_Decoded(source), batch_size=None, num_workers=workers, generator=torch.Generator())
    return (pixels.numpy() for pixels in loader)


def _fill(source: RawImageSource, budget: int, workers: int) -> tuple[DecodedImages, int | None]:
    """A store of the images that fit in ``budget`` bytes, and the size of the first that did not."""
    store = DecodedImages()
    overflow = None
    for pixels in _decoded_in_order(source, workers):
        if store.nbytes + pixels.size > budget:
            overflow = pixels.size
            break
        store.add(pixels)
    store.finish()
    return store, overflow


def _shared_store(dataset: Dataset, source: RawImageSource, limit_mb: int, workers: int, label: str,
                  log: Callable[[str], None]) -> DecodedImages:
    # The same files read by another kind of dataset or loader may decode differently: not shared.
    key = (type(dataset), getattr(dataset, "loader", None), tuple(source.image_paths))
    store = _STORES.get(key)
    if store is not None:
        return store
    budget = limit_mb * MIB - held_bytes()
    store, overflow = _fill(source, max(budget, 0), workers)
    _STORES[key] = store
    if overflow is not None:
        n, kept = len(source), len(store)
        per_image = store.nbytes / kept if kept else overflow
        others = (held_bytes() - store.nbytes) / MIB
        log(f"decoded-image cache: {label} keeps {kept} of {n} images ({store.nbytes / MIB:.0f} MiB; "
            f"data.decoded_cache_mb={limit_mb}, other sets hold {others:.0f} MiB); the other {n - kept} are "
            f"decoded on every read; all {n} need about {per_image * n / MIB:.0f} MiB")
    return store


class DecodedImageCache(Dataset):
    """``dataset`` with its decoded images kept in memory (see the module docstring); same items, same order.

    Args:
        dataset: a set :func:`raw_source` knows (a ``TransferDataset`` or a torchvision ``DatasetFolder``).
        limit_mb: MiB of pixels all the decoded-image caches of this process may hold together.
        workers: loader processes that decode during the fill (0: this process).
        label: how the one-line message names the set ("flowers102/train").
        log: where that message goes.

    Attributes the tasks read (``classes``, ``targets``, ``samples``, ``split_source``, ...) are the
    wrapped dataset's.
    """

    def __init__(self, dataset: Dataset, limit_mb: int, workers: int = 0, label: str = "dataset",
                 log: Callable[[str], None] = print):
        source = raw_source(dataset)
        if source is None:
            raise TypeError(f"{type(dataset).__name__} has no raw-image hooks (load_image / make_item)")
        self.dataset, self.source = dataset, source
        self.store = _shared_store(dataset, source, limit_mb, workers, label, log)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        image = self.store.image(index) if 0 <= index < len(self.store) else self.source.load_image(index)
        return self.source.make_item(index, image)

    def __getattr__(self, name: str):
        # Only called for names not found on the wrapper; "dataset" itself is absent while unpickling.
        if name == "dataset" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)
