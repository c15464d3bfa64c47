"""Data with known factors: data=sprites (our rasteriser), data=dsprites (the published file's layout), a folder
with a factors.csv, and the factors' way through the cache, the subsets and the splits."""

from __future__ import annotations

import csv
import hashlib
import math

import numpy as np
import pytest
import torch
from PIL import Image

from aebench import config, data
from aebench.data import cache, dsprites, factor_table, grid, sprites
from aebench.errors import ConfigError, DataError

from conftest import read_metrics, run_in_process

CPU = torch.device("cpu")
# One thread: on a busy 2-core machine two threads wait on each other at every small product (50x slower here).
FAST = ["epochs=4", "train.batch_size=32", "threads=1", "progress=false", "probe.label_budgets=[]",
        "probe.every_epoch=false", "probe.pixel_baseline=false", "figures=false", "arch.hidden=[64]", "latent=5"]
SMALL = dict(scales=2, orientations=4, positions=4, image_size=16)  # 3 x 2 x 4 x 4 x 4 = 384 images


def render(values, size=64) -> tuple[np.ndarray, np.ndarray]:
    """Every image of the grid ``values`` (n, S, S) holding 0/255, and the classes."""
    blocks = list(sprites.render(values, size))
    return np.concatenate([b[0][:, 0] for b in blocks]), np.concatenate([b[1] for b in blocks])


def one(shape: int, scale: float, orientation: float, x: float, y: float, size: int = 64) -> np.ndarray:
    """One sprite as a (S, S) 0/1 array."""
    values = (grid.SHAPES[: shape + 1], (scale,), (orientation,), (x,), (y,))
    return render(values, size)[0][-1] // 255


def centroid(image: np.ndarray) -> tuple[float, float]:
    """(x, y) of an image's on pixels, in canvas pixel units (pixel k spans [k, k + 1))."""
    rows, cols = np.nonzero(image)
    return cols.mean() + 0.5, rows.mean() + 0.5


# --------------------------------------------------------------------------- the rasteriser
def test_the_hearts_constants_are_its_measured_area_and_centroid():
    n = 2000
    axis = np.linspace(-1.5, 1.5, n)
    x, y = np.meshgrid(axis, axis)
    inside = (x * x + y * y - 1) ** 3 - x * x * y**3 <= 0
    area = inside.sum() * (axis[1] - axis[0]) ** 2
    assert area == pytest.approx(sprites.HEART_AREA, abs=2e-3)
    assert y[inside].mean() == pytest.approx(sprites.HEART_CENTROID_Y, abs=1e-3)


def test_the_rasteriser_draws_the_same_pixels_every_time():
    values = sprites.values_of(data.as_config("sprites", **SMALL))
    first, classes = render(values, 16)
    again, _ = render(values, 16)
    assert np.array_equal(first, again) and set(np.unique(first)) == {0, 255}
    # The pixels themselves are pinned: a change in the drawing must bump sprites.RENDER_VERSION (the cache keys on it)
    # and this digest together.
    assert sprites.RENDER_VERSION == 1
    assert hashlib.sha1(first.tobytes()).hexdigest()[:16] == "558f7edb84cca5b8", hashlib.sha1(first.tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("shape", [0, 1, 2], ids=grid.SHAPES)
def test_each_shape_is_centred_where_its_position_says(shape):
    for x, y in [(0.0, 0.0), (1.0, 0.0), (0.5, 0.5), (0.0, 1.0), (1.0, 1.0), (0.3, 0.8)]:
        for orientation in (0.0, 1.0, 2.5):
            cx, cy = centroid(one(shape, 1.0, orientation, x, y))
            want = 64 * (sprites.POSITION_LO + sprites.POSITION_SPAN * np.array([x, y]))
            assert abs(cx - want[0]) < 0.35 and abs(cy - want[1]) < 0.35, (x, y, orientation, cx, cy, want)


@pytest.mark.parametrize("shape", [0, 1, 2], ids=grid.SHAPES)
def test_area_grows_with_scale_and_equals_the_other_shapes(shape):
    areas = [one(shape, s, 0.3, 0.5, 0.5).sum() for s in np.linspace(0.5, 1.0, 6)]
    assert all(a < b for a, b in zip(areas, areas[1:])), areas
    # area ~ scale^2: the largest is 4x the smallest; every shape covers (1/4)^2 of the canvas at scale 1
    assert areas[-1] / areas[0] == pytest.approx(4.0, rel=0.08)
    assert areas[-1] == pytest.approx((64 * sprites.UNIT) ** 2, rel=0.05)


def test_orientation_turns_the_shape_counter_clockwise_and_2pi_is_0():
    def long_axis(image):
        rows, cols = np.nonzero(image)
        dx, dy_up = cols - cols.mean(), -(rows - rows.mean())
        cov = np.cov(np.stack([dx, dy_up]))
        w, v = np.linalg.eigh(cov)
        return math.atan2(v[1, 1], v[0, 1]) % math.pi

    for t in (0.0, 0.4, 1.2, 2.0):  # the ellipse's long axis lies at the orientation (modulo pi)
        got = long_axis(one(1, 1.0, t, 0.5, 0.5))
        assert min(abs(got - t % math.pi), math.pi - abs(got - t % math.pi)) < 0.05, (t, got)
    for shape in range(3):  # dSprites' first and last orientations, 0 and 2 pi, draw the same image
        assert np.array_equal(one(shape, 0.8, 0.0, 0.2, 0.7), one(shape, 0.8, 2 * math.pi, 0.2, 0.7))
    heart = one(2, 1.0, 0.0, 0.5, 0.5)
    assert not np.array_equal(heart, one(2, 1.0, math.pi, 0.5, 0.5))  # (the heart has no symmetry of a half turn)
    assert np.array_equal(heart, heart[:, ::-1])  # ... but a mirror one, about its upright axis


@pytest.mark.parametrize("size", [64, 32, 16])
def test_every_shape_stays_inside_the_canvas_at_the_largest_scale_and_the_extreme_positions(size):
    values = (grid.SHAPES, (1.0,), tuple(np.linspace(0, 2 * math.pi, 40)[:10]), (0.0, 1.0), (0.0, 1.0))
    images, classes = render(values, size)
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    assert not border.any()  # a margin of empty pixels all round
    if size == 64:  # dSprites' positions 0 and 1 are 31 whole pixels apart at 64x64: the four corners' images are
        counts = images.reshape(3, 10, 4, -1).sum(-1)  # translations of one another, none cut: the same count
        assert np.array_equal(counts.min(-1), counts.max(-1))


def test_the_full_grid_at_64_puts_dsprites_32_positions_one_pixel_apart():
    pixel, phase = sprites.placements(np.linspace(0, 1, 32), 64)
    assert pixel.tolist() == list(range(16, 48)) and set(phase.tolist()) == {sprites.SUPERSAMPLE // 2}


# --------------------------------------------------------------------------- data=sprites through the cache
def test_the_grid_is_complete_labelled_by_shape_and_split_once(tmp_path):
    ds = data.load(data.as_config("sprites", **SMALL), tmp_path, CPU)
    assert ds.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert ds.factor_sizes == (3, 2, 4, 4, 4) and ds.classes == grid.SHAPES
    assert ds.factors[1].values == (0.5, 1.0) and ds.factors[2].values[-1] == pytest.approx(2 * math.pi)
    both = np.concatenate([ds.train.factors, ds.test.factors])
    assert len(both) == 384 and len(np.unique(both, axis=0)) == 384  # every combination, once
    assert len(ds.test) == round(0.1 * 384)
    for split in (ds.train, ds.test):
        assert split.factors.dtype == np.int64 and np.array_equal(split.factors[:, 0], split.y.numpy())
    # each row holds the image of its own factors (the rasteriser's, 0/255 -> 0/1)
    images, classes = render(sprites.values_of(data.as_config("sprites", **SMALL)), 16)
    lookup = {tuple(c): i for i, c in enumerate(classes)}
    for split in (ds.train, ds.test):
        rows = [lookup[tuple(f)] for f in split.factors]
        assert torch.equal(split.x, torch.from_numpy(images[rows].reshape(len(rows), -1) / 255.0).float())
    assert ds.describe()["factors"][3] == {"name": "posX", "classes": 4, "values": [0.0, 1 / 3, 2 / 3, 1.0]}
    assert ds.label == "sprites:3x2x4x4x4@16px"


def test_a_second_load_reads_the_cache_and_subsets_keep_factors_with_their_images(tmp_path, monkeypatch):
    cfg = data.as_config("sprites", **SMALL)
    first = data.load(cfg, tmp_path, CPU)
    monkeypatch.setattr(sprites, "render", lambda *a: pytest.fail("drawn again although it is cached"))
    again = data.load(cfg, tmp_path, CPU)
    assert torch.equal(first.train.x, again.train.x) and np.array_equal(first.train.factors, again.train.factors)
    sub = data.load(data.as_config("sprites", train_subset=60, test_subset=30, **SMALL), tmp_path, CPU)
    assert np.bincount(sub.train.y.numpy()).tolist() == [20, 20, 20]  # class-stratified, fixed
    rows = [np.flatnonzero((first.train.factors == f).all(axis=1))[0] for f in sub.train.factors]
    assert torch.equal(sub.train.x, first.train.x[rows]) and np.array_equal(sub.train.factors[:, 0], sub.train.y)


def test_the_cache_writes_and_reads_the_factors_as_a_third_array(tmp_path):
    writer = cache.Writer(tmp_path, "train", 5, (1, 2, 2), labelled=True, factors=3)
    f = np.arange(15).reshape(5, 3)
    writer.add(np.zeros((2, 1, 2, 2), np.uint8), f[:2, 0], f[:2])
    writer.add(np.ones((3, 1, 2, 2), np.uint8), f[2:, 0], f[2:])
    writer.close()
    assert np.array_equal(cache.read_factors(tmp_path, ["train", "test"])["train"], f)
    assert "test" not in cache.read_factors(tmp_path, ["train", "test"])
    plain = cache.Writer(tmp_path, "test", 1, (1, 2, 2), labelled=False)
    plain.add(np.zeros((1, 1, 2, 2), np.uint8))
    plain.close()
    assert not (tmp_path / "test_f.npy").exists()


@pytest.mark.parametrize("variant", ["color", "noisy"])
def test_the_colour_and_noise_variants_paint_the_binary_sprites(variant, tmp_path):
    binary = data.load(data.as_config("sprites", **SMALL), tmp_path, CPU)
    painted = data.load(data.as_config("sprites", variant=variant, **SMALL), tmp_path, CPU)
    assert painted.image_shape == (3, 16, 16) and painted.label == f"sprites-{variant}:3x2x4x4x4@16px"
    on = binary.train.x.reshape(-1, 1, 16, 16).bool().expand(-1, 3, -1, -1)
    x = painted.train.x.reshape(-1, 3, 16, 16)
    assert np.array_equal(painted.train.factors, binary.train.factors)
    if variant == "color":  # black background; the shape one colour per image, each channel in [0.5, 1]
        assert torch.all(x[~on] == 0) and x[on].min() >= 127 / 255
        per_image = x.amax(dim=(2, 3))
        assert torch.all((x == per_image[:, :, None, None]) | ~on) and per_image.std(0).min() > 0.05
    else:  # white shape; uniform noise behind it
        assert torch.all(x[on] == 1) and abs(x[~on].mean().item() - 0.5) < 0.02 and x[~on].std() > 0.25
    again = data.load(data.as_config("sprites", variant=variant, **SMALL), tmp_path / "other", CPU)
    assert torch.equal(x, again.train.x.reshape(-1, 3, 16, 16))  # drawn from a seed per image: the same again


def test_sources_without_factors_hand_none(data_root):
    ds = data.load("mnist", data_root, CPU, train_subset=10, test_subset=10)
    assert ds.factors is None and ds.factor_names is None and ds.train.factors is None and ds.test.factors is None
    assert "factors" not in ds.describe()


@pytest.mark.parametrize("overrides, expected", [
    (["data=sprites", "data.variant=rainbow"], "data.variant='rainbow' is not accepted; choose one of: binary, color"),
    (["data=sprites", "data.positions=1"], "data.positions=1 is not accepted; give a whole number from 2 to dSprites' 32"),
    (["data=sprites", "data.orientations=41"], "data.orientations=41 is not accepted"),
    (["data=sprites", "data.image_size=8"], "data.image_size=8 is not accepted; it must be an integer >= 16"),
    (["data=mnist", "data.scales=3"], "data.scales=3 is not accepted for data=mnist; it applies to data=sprites and"),
    (["data=mnist", "data.variant=color"], "data.variant=color is not accepted for data=mnist"),
    (["data=sprites", "data.channels=3"], "data.channels=3 is not accepted for data=sprites"),
])
def test_bad_grid_settings_get_one_line(overrides, expected):
    with pytest.raises(ConfigError) as e:
        config.validate(config.compose(overrides))
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_the_sprites_presets_are_the_documented_grids():
    default, full = (data.label_of(config.compose([f"data={c}"]).data) for c in ("sprites", "sprites_full"))
    assert default == "sprites:3x6x10x16x16@32px" and full == "sprites"
    assert data.label_of(config.compose(["data=dsprites"]).data) == "dsprites:3x6x10x16x16@32px"
    assert data.label_of(config.compose(["data=dsprites_full"]).data) == "dsprites"


def test_a_sprites_run_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(["data=sprites", f"data.root={tmp_path / 'root'}", "data.train_subset=1500",
                                "data.test_subset=300", *FAST])
    assert code == 0, err
    run = next(tmp_path.glob("outputs/*/*"))
    m = read_metrics(run)
    assert m["data"]["classes"] == list(grid.SHAPES) and m["data"]["label"] == "sprites:3x6x10x16x16@32px"
    assert [f["name"] for f in m["data"]["factors"]] == list(grid.NAMES)
    assert [f["classes"] for f in m["data"]["factors"]] == [3, 6, 10, 16, 16]
    assert (m["data"]["train_images"], m["data"]["test_images"]) == (1500, 300)
    # shape is barely linear in the codes of so short a run (docs/data.md): the probe's number is a probability;
    # the reconstructions are learnt (below the 0.033 of predicting every pixel by its mean over the train images)
    assert 0.2 < m["probe_accuracy"] < 1 and 0.2 < m["knn_accuracy"] < 1
    assert 0 < m["recon_mse"] < 0.03
    with open(run / "history.csv") as f:
        losses = [float(row["test_loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 4 and all(a > b for a, b in zip(losses, losses[1:])), losses
    for name in ("metrics.json", "history.csv", "probe.npz", "aebench.log"):
        assert (run / name).is_file(), name


# --------------------------------------------------------------------------- data=dsprites: the file's exact layout
DSPRITES_GRID = (3, 2, 3, 4, 4)  # shape, scale, orientation, posX, posY: 288 images


def write_dsprites(root, tamper: str | None = None):
    """A small file in the exact layout of dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz: the same keys and dtypes,
    the same six columns (color first), images 0/1, a pickled metadata dict, dSprites' order (posY fastest)."""
    values = (grid.SHAPES, (0.5, 1.0), (0.0, math.pi, 2 * math.pi), tuple(np.linspace(0, 1, 4)), tuple(np.linspace(0, 1, 4)))
    images, classes = render(values)
    latents_classes = np.concatenate([np.zeros((len(classes), 1), np.int64), classes], axis=1)
    numeric = [np.arange(1.0, 4.0), *(np.array(v) for v in values[1:])]  # dSprites' shape values are 1, 2, 3
    latents_values = np.stack([np.ones(len(classes))] + [numeric[i][classes[:, i]] for i in range(5)], axis=1)
    arrays = {"imgs": (images // 255).astype(np.uint8), "latents_classes": latents_classes,
              "latents_values": latents_values.astype(np.float64),
              "metadata": np.array({"latents_sizes": np.array([1, *DSPRITES_GRID])}, dtype=object)}
    if tamper == "pixel 2":
        arrays["imgs"][100, 30, 30] = 2
    elif tamper == "no latents_values":
        del arrays["latents_values"]
    elif tamper == "rows differ":
        arrays["latents_classes"] = latents_classes[:-1]
        arrays["latents_values"] = arrays["latents_values"][:-1]
    elif tamper == "two colours":
        arrays["latents_classes"][5, 0] = 1
    path = dsprites.path_of(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return images, classes


def test_the_dsprites_reader_gives_the_files_images_and_factors(tmp_path):
    images, classes = write_dsprites(tmp_path)
    ds = data.load(data.as_config("dsprites"), tmp_path, CPU)
    assert ds.factor_names == grid.NAMES and ds.factor_sizes == DSPRITES_GRID and ds.classes == grid.SHAPES
    assert ds.factors[1].values == (0.5, 1.0) and ds.factors[0].values == grid.SHAPES  # values from latents_values
    assert ds.image_shape == (1, 64, 64) and len(ds.train) + len(ds.test) == 288
    for split in (ds.train, ds.test):  # each image where its factors say, 0/1 mapped to 0/255
        rows = [int(np.ravel_multi_index(tuple(f), DSPRITES_GRID)) for f in split.factors]
        assert torch.equal(split.x, torch.from_numpy(images[rows].reshape(len(rows), -1) / 255.0).float())
        assert np.array_equal(split.factors[:, 0], split.y.numpy())
    # a reduced grid keeps evenly spread classes (the first and the last); image_size resamples by area, still binary
    small = data.load(data.as_config("dsprites", positions=2, image_size=32), tmp_path, CPU)
    assert small.factor_sizes == (3, 2, 3, 2, 2) and small.factors[3].values == (0.0, 1.0)
    assert small.image_shape == (1, 32, 32) and set(torch.unique(small.train.x).tolist()) == {0.0, 1.0}
    full_rows = [int(np.ravel_multi_index((f[0], f[1], f[2], 3 * f[3], 3 * f[4]), DSPRITES_GRID))
                 for f in small.train.factors]
    expected = grid.resize_binary(images[full_rows], 32).reshape(len(full_rows), -1)
    assert torch.equal(small.train.x, torch.from_numpy(expected).float())


@pytest.mark.parametrize("tamper, expected", [
    ("pixel 2", "imgs holds the value 2 (image 100); dSprites' pixels are 0 and 1"),
    ("no latents_values", "it has no 'latents_values' array"),
    ("rows differ", "imgs has 288 images and latents_classes 287 rows"),
    ("two colours", "its color column holds 2 classes; dSprites has one"),
])
def test_a_damaged_dsprites_file_gets_one_line(tamper, expected, tmp_path):
    write_dsprites(tmp_path, tamper)
    with pytest.raises(DataError) as e:
        data.load(data.as_config("dsprites"), tmp_path, CPU)
    line = str(e.value)
    assert expected in line and str(dsprites.path_of(tmp_path)) in line and "\n" not in line
    assert "deepmind/dsprites-dataset" in line
    assert not list((tmp_path / "cache").glob("*/meta.json"))  # nothing half-built kept


def test_without_the_dsprites_file_the_command_says_which_file_goes_where(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(["data=dsprites", f"data.root={tmp_path / 'root'}", *FAST])
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert str(tmp_path / "root" / "dsprites" / dsprites.FILE) in lines[0]
    assert "github.com/deepmind/dsprites-dataset" in lines[0]


# --------------------------------------------------------------------------- a folder with factors.csv
def factor_folder(tmp_path):
    """Two class folders of small images, and a factors.csv: a named factor, a numeric one with few values, and a
    numeric one with many (binned)."""
    folder = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    rows = ["file,colour,size,angle"]
    files = []
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(15):
            name = f"{c}/{i:03d}.png"
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / name)
            rows.append(f"{name},{['red', 'green', 'blue'][i % 3]},{1 + i % 2},{i * 7.5 + (c == 'b')}")
            files.append(name)
    (folder / factor_table.FILE).write_text("\n".join(rows) + "\n")
    return folder, files


def test_a_folder_hands_the_factors_of_its_csv(tmp_path):
    folder, files = factor_folder(tmp_path)
    ds = data.load(data.as_config("folder", path=str(folder), test_fraction=0.2), tmp_path / "root", CPU)
    assert ds.factor_names == ("colour", "size", "angle") and ds.classes == ("a", "b")
    colour, size, angle = ds.factors
    assert colour.values == ("blue", "green", "red") and size.values == (1.0, 2.0)
    # 30 distinct angles from 0 to 106: more than 20, so 20 equal-width bins, each class its bin's centre
    assert len(angle.values) == 20 and "binned into 20 equal-width bins over [0, 106]" in angle.note
    assert angle.values[0] == pytest.approx(106 / 40) and angle.values[-1] == pytest.approx(106 - 106 / 40)
    listing = json_files(ds)
    for split, names in listing.items():
        f = getattr(ds, split).factors
        for row, name in zip(f, names):
            i = int(name[2:5])
            assert colour.values[row[0]] == ["red", "green", "blue"][i % 3] and size.values[row[1]] == 1 + i % 2
            value = i * 7.5 + (name[0] == "b")  # in its bin: within half a bin's width of the bin's centre
            assert abs(value - angle.values[row[2]]) <= 106 / 40 + 1e-9, (name, row)
    # the cache keys on the csv's content: a changed csv gives new factors
    text = (folder / factor_table.FILE).read_text().replace(",red,", ",crimson,")
    (folder / factor_table.FILE).write_text(text)
    again = data.load(data.as_config("folder", path=str(folder), test_fraction=0.2), tmp_path / "root", CPU)
    assert again.factors[0].values == ("blue", "crimson", "green")
    assert len([p for p in (tmp_path / "root" / "cache").iterdir() if not p.name.startswith(".")]) == 1


def json_files(ds) -> dict[str, list[str]]:
    import json
    from pathlib import Path

    return json.loads((Path(ds.describe()["cache"]) / "files.json").read_text())


@pytest.mark.parametrize("case", ["missing file", "empty value", "image left out"])
def test_a_bad_factors_csv_gets_one_line_naming_the_row_or_file(case, tmp_path, monkeypatch):
    folder, files = factor_folder(tmp_path)
    folder = folder.resolve()
    table = folder / factor_table.FILE
    lines = table.read_text().splitlines()
    if case == "missing file":
        lines[4] = lines[4].replace("a/003.png", "a/999.png")
        expected = [f"{table} line 5 names a/999.png, which is not an image in {folder}"]
    elif case == "empty value":
        lines[7] = "a/006.png,red,,45.0"
        expected = [f"{table} line 8 (a/006.png) has no value for the factor 'size'"]
    else:
        del lines[20]  # b/004.png
        expected = [f"{folder / 'b' / '004.png'} has no row in {table}", "give every image of the folder a row"]
    table.write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(["data=folder", f"data.path={folder}", f"data.root={tmp_path / 'root'}", *FAST])
    out = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(out) == 1 and out[0].startswith("aebench: error: "), err
    for text in expected:
        assert text in out[0], (text, out[0])
    assert not list((tmp_path / "root").glob("cache/*/meta.json"))  # nothing was decoded
