"""The typed schema of an aebench run, registered in Hydra's ConfigStore.

Hydra merges the YAML files of ``conf/`` onto these dataclasses, so a value of
the wrong type or an unknown key is refused while the config is composed.
:func:`validate` then checks ranges and combinations, before any work starts.
Every error is one line saying what is wrong and what is accepted.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from .data import SOURCES, DataConfig, label_of
from .data import grid as factor_grid
from .errors import ConfigError
from .models import ACTIVATIONS, ARCHS, DIP_TYPES, NOISES, OBJECTIVES, SETTINGS

DATASETS = tuple(SOURCES)
PREPROCESSING_SOURCES = ("folder",)  # the sources that take data.channels
SIZED_SOURCES = ("folder", *factor_grid.GRID_SOURCES)  # the sources that take data.image_size
HOLDOUT_SOURCES = ("folder", *factor_grid.GRID_SOURCES)  # the sources that take data.test_fraction
SCHEDULERS = ("none", "step", "cosine")
FACTOR_PROTOCOLS = ("default", "exact")  # aebench.factors.DCI_PROTOCOLS: how DCI's boosted trees are fitted
PRECISIONS = ("auto", "fp32", "bf16")  # aebench.precision: auto follows the device's bf16 units
CONV_CHANNELS = (16, 32, 64)  # arch=conv's filters (conf/arch/conv.yaml)


@dataclass
class ArchConfig:
    """The network: an encoder to a feature vector and a decoder from a code."""

    name: str = MISSING  # mlp | conv
    hidden: List[int] = field(default_factory=lambda: [512, 256])  # dense widths, input side first
    decoder_hidden: Optional[List[int]] = None  # mlp: default hidden reversed
    activation: str = "gelu"  # relu | gelu | elu
    channels: List[int] = field(default_factory=lambda: list(CONV_CHANNELS))  # conv: filters of each stride-2 convolution


@dataclass
class ModelConfig:
    """The objective: what the code is and what is optimised."""

    name: str = MISSING  # ae | vae | dae | sae | beta_tcvae | factor_vae | dip_vae | annealed_vae
    code_activation: str = "none"  # ae, dae, sae: none | relu (the reference's ReLU on the code)
    recon_loss: str = "bce"  # ae, dae, sae: bce (summed over pixels) | mse (mean per pixel)
    beta: float = 1.0  # vae, factor_vae, dip_vae: weight of the KL term; beta_tcvae: of the total correlation
    noise: str = "mask"  # dae: mask (drop pixels) | gaussian (add noise)
    noise_level: float = 0.5  # dae: fraction of pixels dropped, or the noise's sigma
    sparsity: float = 1e-3  # sae: weight of the L1 penalty on the code
    alpha: float = 1.0  # beta_tcvae: weight of the index-code mutual information
    # beta_tcvae: weight of the dimension-wise KL; factor_vae: of the total correlation; annealed_vae: of |KL - C|
    gamma: float = 1.0
    discriminator_hidden: int = 1000  # factor_vae: units per hidden layer of the discriminator
    discriminator_layers: int = 6  # factor_vae: hidden layers of the discriminator
    discriminator_lr: float = 1e-4  # factor_vae: the discriminator's Adam learning rate (betas 0.5, 0.9)
    dip_type: str = "i"  # dip_vae: i (the covariance of mu) | ii (of z under q)
    lambda_od: float = 10.0  # dip_vae: weight of the covariance's off-diagonal entries
    lambda_d: float = 100.0  # dip_vae: weight of the diagonal's distance from 1
    capacity_max: float = 25.0  # annealed_vae: the capacity C reached, in nats
    capacity_ramp: float = 0.33  # annealed_vae: the share of the run's steps over which C grows from 0


@dataclass
class TrainConfig:
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.0
    scheduler: str = "cosine"  # none | step | cosine (annealed to 0 over the run)
    step_size: int = 6  # StepLR: epochs between decays
    gamma: float = 0.1  # StepLR: decay factor
    precision: str = "auto"  # auto (bf16 on a CPU with bf16 units, else fp32) | fp32 | bf16 (autocast)
    compile: bool = False  # torch.compile the model's loss


@dataclass
class ProbeConfig:
    l2: float = 1e-4  # L2 penalty of the logistic regression (mean loss + l2/2 |W|^2)
    tol: float = 1e-5  # converged when the largest gradient entry is below this
    max_iter: int = 1000
    knn_k: int = 5
    every_epoch: bool = True  # the accuracy curve: probe after every pretraining epoch
    pixel_baseline: bool = True  # probe on raw pixels (cached per dataset under the data root)
    label_budgets: List[int] = field(default_factory=lambda: [100, 1000, 10000])  # probes on few labels ([]: none)
    budget_draws: int = 5  # class-balanced draws per budget
    budget_penalty: float = 10.0  # budget probes: summed cross-entropy + budget_penalty/2 |W|^2
    factors: bool = True  # the factor read-outs (MIG, DCI, SAP, FactorVAE, BetaVAE) where the data have known factors
    factor_protocol: str = "default"  # DCI's classifier: default (quicker, agrees with exact) | exact (disentanglement_lib's)
    factor_points: Optional[int] = None  # at most this many points for every factor metric (null: disentanglement_lib's)


@dataclass
class TensorBoardConfig:
    """TensorBoard event files in ``<run dir>/tensorboard/`` (on with logger=tensorboard or logger=many)."""

    enabled: bool = False
    embedding_points: int = 2000  # test codes shown in the embedding projector (0: none)


@dataclass
class MLflowConfig:
    """One MLflow run per aebench run (on with logger=mlflow or logger=many)."""

    enabled: bool = False
    tracking_uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else MLflow's local default (sqlite:///mlflow.db)
    experiment_name: str = "aebench"


@dataclass
class LoggerConfig:
    """Run tracking: each logger's settings under its own name, so that several can be on together."""

    tensorboard: TensorBoardConfig = field(default_factory=TensorBoardConfig)
    mlflow: MLflowConfig = field(default_factory=MLflowConfig)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    latent: int = 20
    epochs: int = 20
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    threads: Optional[int] = None  # torch CPU threads (None: cores, split between parallel jobs)
    figures: bool = True
    progress: Optional[bool] = None  # progress bars (None: only on a terminal)
    resume: Optional[str] = None  # a run directory to continue from its checkpoint
    # Filled in by experiments for the record; free text.
    experiment_name: Optional[str] = None


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="aebench_schema", node=Config)


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config the ``aebench`` command composes for ``overrides`` (``aebench model=vae latent=10``:
    ``compose(["model=vae", "latent=10"])``), without Hydra's own settings: the one source of every
    default, for Python callers (notebooks, tests, benchmarks) as for the command."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register()
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app already: its config search path is aebench's
        return hydra_compose("config", overrides=list(overrides))
    with initialize_config_module(config_module="aebench.conf", version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads(cfg: DictConfig, launcher_threads: int | None = None) -> int:
    """Explicit ``threads``, else what the sweep launcher gives each job, else every usable core."""
    if cfg.threads:
        return int(cfg.threads)
    return launcher_threads or usable_cores()


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not accepted; choose one of: {', '.join(allowed)}")


def _positive(key: str, value: Any, minimum: float = 1, integer: bool = True) -> None:
    kind = "an integer" if integer else "a number"
    if value is None or (integer and not isinstance(value, int)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{key}={value!r} is not accepted; it must be {kind} >= {minimum}")


def validate(cfg: DictConfig | Config) -> None:
    """Check ranges and combinations that types alone cannot express."""
    _one_of("model", cfg.model.name, OBJECTIVES)
    _one_of("arch", cfg.arch.name, ARCHS)
    _one_of("data", cfg.data.name, DATASETS)
    _positive("latent", cfg.latent)
    _positive("epochs", cfg.epochs)
    if cfg.arch.name == "conv" and not list(cfg.arch.channels):
        raise ConfigError("arch.channels=[] is not accepted for arch=conv: it would build no convolution; give the filters "
                          "of each stride-2 stage (default [16, 32, 64]), or use arch=mlp")
    for key in ("hidden", "decoder_hidden", "channels"):
        for i, width in enumerate(cfg.arch.get(key) or []):
            _positive(f"arch.{key}[{i}]", width)
    _one_of("arch.activation", cfg.arch.activation, tuple(ACTIVATIONS))
    _one_of("model.code_activation", cfg.model.code_activation, ("none", "relu"))
    _one_of("model.recon_loss", cfg.model.recon_loss, ("bce", "mse"))
    for key in ("beta", "alpha", "gamma", "lambda_od", "lambda_d", "capacity_max"):
        value = cfg.model[key]
        if not (value >= 0 and math.isfinite(value)):
            raise ConfigError(f"model.{key}={value!r} is not accepted; it must be a finite number >= 0")
    if not 0 <= cfg.model.capacity_ramp <= 1:
        raise ConfigError(f"model.capacity_ramp={cfg.model.capacity_ramp!r} is not accepted; it is the share of the "
                          "run's steps over which the capacity grows, in [0, 1]")
    _one_of("model.dip_type", cfg.model.dip_type, DIP_TYPES)
    if cfg.model.name == "factor_vae":
        _positive("model.discriminator_hidden", cfg.model.discriminator_hidden)
        _positive("model.discriminator_layers", cfg.model.discriminator_layers, minimum=0)
        if not (cfg.model.discriminator_lr > 0 and math.isfinite(cfg.model.discriminator_lr)):
            raise ConfigError(f"model.discriminator_lr={cfg.model.discriminator_lr!r} is not accepted; "
                              "it must be a finite number > 0")
        if cfg.train.batch_size < 2:
            raise ConfigError(f"model=factor_vae needs train.batch_size >= 2 (got {cfg.train.batch_size}): its "
                              "discriminator tells codes from codes permuted across the batch")
    _one_of("model.noise", cfg.model.noise, NOISES)
    if cfg.model.noise == "mask" and not 0 <= cfg.model.noise_level < 1:
        raise ConfigError(f"model.noise_level={cfg.model.noise_level!r} is not accepted for model.noise=mask; "
                          "it is the fraction of pixels dropped, in [0, 1)")
    if not (cfg.model.noise_level >= 0 and math.isfinite(cfg.model.noise_level)):
        raise ConfigError(f"model.noise_level={cfg.model.noise_level!r} is not accepted; it must be a finite number >= 0")
    if not (cfg.model.sparsity >= 0 and math.isfinite(cfg.model.sparsity)):
        raise ConfigError(f"model.sparsity={cfg.model.sparsity!r} is not accepted; it must be a finite number >= 0")
    validate_data(cfg.data)
    _positive("train.batch_size", cfg.train.batch_size)
    if not (cfg.train.lr > 0 and math.isfinite(cfg.train.lr)):
        raise ConfigError(f"train.lr={cfg.train.lr!r} is not accepted; it must be a finite number > 0")
    if not cfg.train.weight_decay >= 0:
        raise ConfigError(f"train.weight_decay={cfg.train.weight_decay!r} is not accepted; it must be >= 0")
    _one_of("train.scheduler", cfg.train.scheduler, SCHEDULERS)
    _positive("train.step_size", cfg.train.step_size)
    if not 0 < cfg.train.gamma <= 1:
        raise ConfigError(f"train.gamma={cfg.train.gamma!r} is not accepted; it must be in (0, 1]")
    _one_of("train.precision", cfg.train.precision, PRECISIONS)
    if not cfg.probe.l2 >= 0:
        raise ConfigError(f"probe.l2={cfg.probe.l2!r} is not accepted; it must be >= 0")
    if not cfg.probe.tol > 0:
        raise ConfigError(f"probe.tol={cfg.probe.tol!r} is not accepted; it must be > 0")
    _positive("probe.max_iter", cfg.probe.max_iter)
    _positive("probe.knn_k", cfg.probe.knn_k)
    for i, n in enumerate(cfg.probe.label_budgets):
        _positive(f"probe.label_budgets[{i}]", n)
    _positive("probe.budget_draws", cfg.probe.budget_draws)
    if not (cfg.probe.budget_penalty > 0 and math.isfinite(cfg.probe.budget_penalty)):
        raise ConfigError(f"probe.budget_penalty={cfg.probe.budget_penalty!r} is not accepted; it must be a finite number > 0")
    _one_of("probe.factor_protocol", cfg.probe.factor_protocol, FACTOR_PROTOCOLS)
    if cfg.probe.factor_points is not None:
        _positive("probe.factor_points", cfg.probe.factor_points, minimum=100)
    if cfg.threads is not None:
        _positive("threads", cfg.threads)
    _positive("logger.tensorboard.embedding_points", cfg.logger.tensorboard.embedding_points, minimum=0)
    if cfg.logger.mlflow.enabled:
        if cfg.logger.mlflow.tracking_uri is not None and not cfg.logger.mlflow.tracking_uri.strip():
            raise ConfigError(f"logger.mlflow.tracking_uri={cfg.logger.mlflow.tracking_uri!r} is not accepted; give a URI "
                              "(http://host:port, sqlite:///file.db) or null for $MLFLOW_TRACKING_URI / the local default")
        if not cfg.logger.mlflow.experiment_name.strip():
            raise ConfigError(f"logger.mlflow.experiment_name={cfg.logger.mlflow.experiment_name!r} is not accepted; "
                              "give a name (default: aebench)")
    resolve_device(cfg.device)


def _sources(names: Sequence[str]) -> str:
    return " and ".join(", ".join(f"data={n}" for n in names).rsplit(", ", 1))


def validate_data(d: DictConfig | DataConfig) -> None:
    for key in ("train_subset", "test_subset"):
        value = getattr(d, key)
        if value is not None:
            _positive(f"data.{key}", value, minimum=2)
    if d.name == "folder" and not d.path:
        raise ConfigError("data=folder needs data.path=<a folder of images> (<dir>/<class>/<image>, "
                          "or <dir>/train/<class>/... and <dir>/test/<class>/...)")
    if d.image_size is not None:
        _positive("data.image_size", d.image_size,
                  minimum=factor_grid.MIN_IMAGE_SIZE if d.name in factor_grid.GRID_SOURCES else 1)
    _one_of("data.channels", str(d.channels), ("auto", "1", "3"))
    if d.name != "folder" and d.path is not None:
        raise ConfigError(f"data.path={d.path} is not accepted for data={d.name}; it applies to "
                          f"data=folder (data=folder data.path=<a folder of images>)")
    if d.name not in HOLDOUT_SOURCES and d.test_fraction != 0.1:
        raise ConfigError(f"data.test_fraction={d.test_fraction} is not accepted for data={d.name}, whose test split is "
                          f"given; it applies to {_sources(HOLDOUT_SOURCES)}")
    if d.name not in SIZED_SOURCES and d.image_size is not None:
        raise ConfigError(f"data.image_size={d.image_size} is not accepted for data={d.name}, whose images have one "
                          f"size; it applies to {_sources(SIZED_SOURCES)}")
    if d.name not in PREPROCESSING_SOURCES and str(d.channels) != "auto":
        raise ConfigError(f"data.channels={d.channels} is not accepted for data={d.name}, whose images have one mode; "
                          "it applies to data=folder")
    _one_of("data.variant", d.variant, factor_grid.VARIANTS)
    for key, full in zip(factor_grid.COUNT_KEYS, factor_grid.FULL_SIZES[1:4]):
        value = getattr(d, key)
        if d.name not in factor_grid.GRID_SOURCES and value is not None:
            raise ConfigError(f"data.{key}={value} is not accepted for data={d.name}; it applies to "
                              f"{_sources(factor_grid.GRID_SOURCES)}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= full):
            raise ConfigError(f"data.{key}={value!r} is not accepted; give a whole number from 2 to dSprites' {full} "
                              "(or null: all of them)")
    if d.name not in factor_grid.GRID_SOURCES and d.variant != "binary":
        raise ConfigError(f"data.variant={d.variant} is not accepted for data={d.name}; it applies to "
                          f"{_sources(factor_grid.GRID_SOURCES)}")
    if not 0 < d.test_fraction < 1:
        raise ConfigError(f"data.test_fraction={d.test_fraction!r} is not accepted; it must be in (0, 1)")
    if d.unlabeled and d.name != "stl10":
        raise ConfigError(f"data.unlabeled=true is not accepted for data={d.name}; only stl10 has unlabelled images")


def resolve_device(name: str) -> torch.device:
    """``auto`` → the first CUDA GPU if there is one, else the CPU; check the rest exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name} was asked for, but no CUDA GPU is available here; use device=cpu or device=auto")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={name} does not exist: this machine has {torch.cuda.device_count()} GPU(s) "
                f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})"
            )
        return torch.device("cuda", index)
    raise ConfigError(f"device={name!r} is not accepted; choose one of: auto, cpu, cuda, cuda:N")


def summary(cfg: DictConfig) -> dict[str, Any]:
    """The few settings that identify a run, for metrics.json and sweep summaries."""
    model = cfg.model.name
    return {
        "model": model,
        "arch": cfg.arch.name,
        "latent": cfg.latent,
        "hidden": list(cfg.arch.hidden),
        "channels": list(cfg.arch.channels) if cfg.arch.name == "conv" else None,
        "dataset": label_of(cfg.data),
        "epochs": cfg.epochs,
        "batch_size": cfg.train.batch_size,
        "lr": cfg.train.lr,
        "beta": cfg.model.beta if "beta" in SETTINGS.get(model, ()) else None,
        "noise": f"{cfg.model.noise} {cfg.model.noise_level:g}" if model == "dae" else None,
        "sparsity": cfg.model.sparsity if model == "sae" else None,
        "objective": {k: cfg.model[k] for k in SETTINGS.get(model, ())},
        "seed": cfg.seed,
        "train_subset": cfg.data.train_subset,
        "test_subset": cfg.data.test_subset,
        "experiment": cfg.get("experiment_name"),
    }


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
