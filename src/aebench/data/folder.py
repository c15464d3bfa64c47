"""Your own images: ``data=folder data.path=DIR``, in torchvision's ImageFolder layout.

- ``DIR/<class>/<image>``: one subfolder per class, class names from the folder names (sorted).
- ``DIR/train/<class>/...`` and ``DIR/test/<class>/...``: those splits as they are.  Otherwise a
  class-stratified hold-out of ``data.test_fraction`` becomes the test split, drawn with a fixed
  seed (the same for every run, whatever its ``seed``), so runs are compared on the same images.
- Images directly in ``DIR`` (no class subfolders), or one class only: unlabelled; the autoencoder
  trains and draws, the read-outs that need labels are skipped.
- ``DIR/factors.csv``: each image's known factors (:mod:`.factor_table`), handed beside the labels.

Every image is decoded once into the cache (:mod:`.cache`), keyed by the folder's files (paths,
sizes, modification times), its factors.csv (its bytes) and the preprocessing; a changed folder is
noticed and decoded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from ..errors import DataError
from . import cache, factor_table, images
from .base import Arrays, label_of

log = logging.getLogger(__name__)

HOLDOUT_SEED = 0  # the test images of a folder without train/ and test/: fixed per folder, not per run
CHUNK = 1024  # images decoded between two writes into the cache


def _listing(folder: Path) -> tuple[list[str] | None, list[tuple[Path, int]]]:
    """(class names or None when unlabelled, [(image path, class index)]) for one split folder."""
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    class_dirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    loose = [p for p in entries if p.is_file() and images.is_image(p)]
    labelled = []
    classes = []
    for c in class_dirs:
        files = sorted((p for p in c.rglob("*") if p.is_file() and images.is_image(p)), key=lambda p: str(p))
        if files:
            labelled.append((c.name, files))
            classes.append(c.name)
    if labelled:
        if loose:
            log.warning("%d image(s) directly in %s are not in a class folder and are left out (e.g. %s)",
                        len(loose), folder, loose[0].name)
        return classes, [(f, i) for i, (_, files) in enumerate(labelled) for f in files]
    return None, [(f, -1) for f in loose]


def _fingerprint(files: list[Path]) -> str:
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _scan(path: Path) -> tuple[list[str] | None, dict[str, list[tuple[Path, int]]]]:
    if not path.exists():
        raise DataError(f"data.path={path} does not exist; give a folder of images "
                        "(<dir>/<class>/<image>, or images directly in it for an unlabelled set)")
    if not path.is_dir():
        raise DataError(f"data.path={path} is not a folder; give a folder of images (<dir>/<class>/<image>)")
    if (path / "train").is_dir() and (path / "test").is_dir():
        train_classes, train = _listing(path / "train")
        test_classes, test = _listing(path / "test")
        if not train or not test:
            empty = path / ("train" if not train else "test")
            raise DataError(f"{empty} holds no images ({', '.join(images.IMAGE_SUFFIXES)}); "
                            "put the images in <dir>/train/<class>/ and <dir>/test/<class>/")
        if train_classes != test_classes:
            raise DataError(f"{path}/train and {path}/test have different class folders "
                            f"({train_classes} against {test_classes}); give both the same classes")
        return train_classes, {"train": train, "test": test}
    classes, listed = _listing(path)
    if not listed:
        raise DataError(f"data.path={path} holds no images ({', '.join(images.IMAGE_SUFFIXES)}), "
                        "directly or in class subfolders; give a folder of images")
    return classes, {"all": listed}


def _holdout(labels: np.ndarray, fraction: float) -> np.ndarray:
    """A boolean mask of the test images: ``fraction`` of every class (at least one of a class of two or more)."""
    rng = np.random.default_rng(HOLDOUT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = int(round(fraction * len(members)))
        k = min(max(k, 1 if len(members) > 1 else 0), len(members) - 1)
        test[rng.permutation(members)[:k]] = True
    return test


def _channels_and_size(files: list[Path], cfg: DictConfig) -> tuple[int, int | None, tuple[int, int]]:
    """The channels and output (H, W) of every image, from the headers alone."""
    sizes: dict[tuple[int, int], Path] = {}
    all_grey = True
    for f in files:
        with images.open_image(f) as im:
            sizes.setdefault(im.size, f)
            if all_grey and not images.is_grey(im):
                all_grey = False
    channels = 1 if all_grey else 3
    if cfg.channels != "auto":
        channels = int(cfg.channels)
    size = cfg.image_size
    if size is None and len(sizes) > 1:
        (s1, f1), (s2, f2) = list(sizes.items())[:2]
        raise DataError(f"the images differ in size ({f1.name} is {s1[0]}x{s1[1]}, {f2.name} is {s2[0]}x{s2[1]}); "
                        "set data.image_size=N to resize the shorter side to N and crop the centre to NxN")
    w, h = next(iter(sizes))
    return channels, size, images.shape_after(w, h, size)


def arrays(cfg: DictConfig, root: Path, splits: tuple[str, ...] = ("train", "test")) -> Arrays:
    path = Path(cfg.path).expanduser().resolve()
    classes, listed = _scan(path)
    every_file = [f for part in listed.values() for f, _ in part]
    table = factor_table.read(path, every_file)
    if classes is not None and len(classes) < 2:
        log.warning("%s has one class folder only (%s): a probe on one class is meaningless, so the images are "
                    "treated as unlabelled", path, classes[0])
        classes = None
    # The key holds the settings as given (channels "auto"): what they resolve to follows from the files, so a
    # cached folder is not opened again image by image.
    size = cfg.image_size
    fields = {"source": "folder", "path": str(path), "files": _fingerprint(every_file), "image_size": size,
              "channels": str(cfg.channels), "test_fraction": cfg.test_fraction if "all" in listed else None}
    if table is not None:  # (only then: the entries of folders without factors keep their keys)
        fields["factors_csv"] = table.digest
    label = label_of(cfg)

    def build(folder: Path) -> dict[str, Any]:
        channels, _, (h, w) = _channels_and_size(every_file, cfg)
        if "all" in listed:
            labels = np.array([c for _, c in listed["all"]])
            test_mask = _holdout(labels, cfg.test_fraction) if classes is not None else \
                np.random.default_rng(HOLDOUT_SEED).random(len(labels)) < cfg.test_fraction
            parts = {"train": [e for e, t in zip(listed["all"], test_mask) if not t],
                     "test": [e for e, t in zip(listed["all"], test_mask) if t]}
        else:
            parts = listed
        if not parts["test"] or not parts["train"]:
            raise DataError(f"{path} has {len(every_file)} image(s): too few for a train and a test split; "
                            "add images, or set data.test_fraction")
        files = {}
        bar = tqdm(total=len(every_file), desc=f"decoding {path.name}", unit="image", disable=None, leave=False)
        with bar:
            for split, entries in parts.items():
                writer = cache.Writer(folder, split, len(entries), (channels, h, w), classes is not None,
                                      factors=len(table.factors) if table is not None else 0)
                for start in range(0, len(entries), CHUNK):
                    chunk = entries[start : start + CHUNK]
                    pixels = np.stack([images.load(f, channels, size) for f, _ in chunk])
                    if pixels.shape[1:] != (channels, h, w):  # a file that changed size since the scan
                        raise DataError(f"an image in {path} changed while it was read; run again")
                    writer.add(pixels, np.array([c for _, c in chunk]) if classes is not None else None,
                               table.of([f for f, _ in chunk], path) if table is not None else None)
                    bar.update(len(chunk))
                writer.close()
                files[split] = [str(f.relative_to(path)) for f, _ in entries]
        (folder / "files.json").write_text(json.dumps(files))
        return {"source": "folder", "path": str(path), "classes": classes, "channels": channels,
                "factors": [f.describe() for f in table.factors] if table is not None else None}

    def same_source(meta: dict[str, Any]) -> bool:
        f = meta.get("fields", {})
        return f.get("source") == "folder" and f.get("path") == str(path) and f.get("image_size") == size \
            and f.get("channels") == fields["channels"] \
            and (f.get("files"), f.get("factors_csv")) != (fields["files"], fields.get("factors_csv"))

    folder, meta = cache.entry(root, f"folder-{path.name}", fields, build, same_source)
    read = cache.read(folder, splits)
    title = f"{path.name} (folder)"
    notes = {"path": str(path), "image_size": size, "channels": meta["channels"], "cache": str(folder),
             "split": "train/ and test/ folders" if "all" not in listed else
             f"class-stratified hold-out of {cfg.test_fraction:g} (fixed per folder)"}
    if table is not None:
        notes["factors_csv"] = str(path / factor_table.FILE)
    return Arrays("folder", title, label, f"folder-{key_of_entry(folder)}", tuple(classes) if classes else None,
                  read, notes=notes, factors=table.factors if table is not None else None,
                  factor_classes=cache.read_factors(folder, splits) if table is not None else {})


def key_of_entry(folder: Path) -> str:
    return folder.name.rsplit("-", 1)[-1]
