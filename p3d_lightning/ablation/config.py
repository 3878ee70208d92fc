"""The ablation config: which experiment YAML is which Table 1 row, shared overrides, the speed settings.

An ablation config is a small YAML file::

    name: table1_synthetic            # W&B group and default output folder name
    output_dir: runs/ablation_synthetic
    runs:                             # Table 1 row -> a complete experiment config
      resnet50: synthetic/resnet50.yaml
      p3d_a: synthetic/p3d_a.yaml
    overrides: {}                     # dotted keys applied to every run (e.g. data.root)
    speed: {batch_size: 8, fast_path: true, paper_scale: true}   # a SpeedConfig
    seeds: [0, 1, 2]                  # optional: train every model once per seed (or `seeds: 3`)

Without ``seeds`` every model trains once, with its own config's ``seed_everything``, into
``runs/<model>/``. With ``seeds`` each model trains once per seed (``seed_everything`` set to
it), seed by seed (all models at seed 0 first), into ``runs/<model>/seed<s>/``;
:mod:`~p3d_lightning.ablation.seeds` reports mean +- std, 95% intervals and paired comparisons.

It is parsed once into :class:`AblationConfig` (its ``speed`` a typed
:class:`~p3d_lightning.speed.config.SpeedConfig`); an unknown key, anywhere, is an error that
names the key and the file.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from p3d_lightning.speed.config import SpeedConfig
from p3d_lightning.yamlfile import read_yaml_mapping

__all__ = ["AblationConfig", "AblationError", "DEFAULT_CONFIG", "QUICK_OVERRIDES", "load_ablation_config",
           "parse_seeds", "quick_config"]

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "ablation_synthetic.yaml"

#: ``p3d-ablation --quick``: every run shrunk to a smoke test of the whole pipeline (train, test,
#: speed, table, plot, W&B) in about a minute on a 2-core CPU; the shipped configs are unchanged.
QUICK_OVERRIDES: Dict[str, Any] = {
    "model.width_mult": 0.0625, "data.resize": [40, 52], "data.crop_size": 32, "data.num_eval_clips": 1,
    "trainer.max_steps": 20, "trainer.check_val_every_n_epoch": 1,
}

_KEYS = ("name", "runs", "output_dir", "overrides", "speed", "seeds")


class AblationError(ValueError):
    """Bad ablation input, reported before any training starts."""


@dataclass
class AblationConfig:
    """A parsed ablation config (see the module docstring for the YAML form).

    ``speed`` may be given as a mapping (the YAML's form); it is parsed into a
    :class:`SpeedConfig` here, once.
    """

    name: str
    runs: Dict[str, Path]
    output_dir: Path
    overrides: Dict[str, Any] = field(default_factory=dict)
    speed: Union[SpeedConfig, Mapping[str, Any]] = field(default_factory=SpeedConfig)
    source: Optional[Path] = None
    seeds: Optional[List[int]] = None

    def __post_init__(self) -> None:
        self.seeds = parse_seeds(self.seeds, self.source)
        if not isinstance(self.speed, SpeedConfig):
            try:
                self.speed = SpeedConfig.from_mapping(self.speed, self.source)
            except ValueError as err:
                raise AblationError(str(err)) from None


def load_ablation_config(path: os.PathLike) -> AblationConfig:
    """Read an ablation YAML; run configs are resolved relative to the YAML's folder."""
    path = Path(path)
    raw = read_yaml_mapping(path, AblationError, "ablation config")
    if not isinstance(raw.get("runs"), dict) or not raw["runs"]:
        raise AblationError(f"{path}: expected a mapping with a non-empty 'runs: {{model: config.yaml}}'")
    unknown = set(raw) - set(_KEYS)
    if unknown:
        raise AblationError(f"{path}: unknown keys {sorted(unknown)}; expected {', '.join(_KEYS)}")
    runs = {}
    for model, cfg in raw["runs"].items():
        cfg_path = Path(cfg)
        if not cfg_path.is_absolute():
            cfg_path = path.parent / cfg_path
        runs[str(model)] = cfg_path
    name = str(raw.get("name") or path.stem)
    return AblationConfig(
        name=name,
        runs=runs,
        output_dir=Path(raw.get("output_dir") or Path("runs") / name),
        overrides=dict(raw.get("overrides") or {}),
        speed=raw.get("speed") or {},
        source=path,
        seeds=raw.get("seeds"),
    )


def parse_seeds(value: Union[None, int, Sequence[Any]], source: Optional[Path] = None) -> Optional[List[int]]:
    """``seeds`` as a list of distinct non-negative ints: ``None`` stays ``None`` (one run per
    model, its config's seed); an int ``N`` means seeds ``0 .. N-1``; a list is taken as given."""
    where = f"{source}: " if source else ""
    if value is None:
        return None
    if isinstance(value, bool):
        raise AblationError(f"{where}seeds: expected an int N (seeds 0..N-1) or a list of ints, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise AblationError(f"{where}seeds: expected at least 1 seed, got {value}")
        return list(range(value))
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise AblationError(f"{where}seeds: expected an int N (seeds 0..N-1) or a non-empty list of ints, "
                            f"got {value!r}")
    seeds = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise AblationError(f"{where}seeds: expected non-negative ints, got {item!r} in {list(value)}")
        seeds.append(int(item))
    if len(set(seeds)) != len(seeds):
        raise AblationError(f"{where}seeds: each seed once, got {seeds}")
    return seeds


def quick_config(config: AblationConfig) -> AblationConfig:
    """``--quick``: :data:`QUICK_OVERRIDES` over the config's own overrides, no paper-scale speed,
    fewer timed passes, and the output beside the normal one (``<output_dir>_quick``)."""
    speed = dataclasses.replace(config.speed, paper_scale=False, warmup=1, repeats=2, agreement_batches=2)
    return dataclasses.replace(config, overrides={**config.overrides, **QUICK_OVERRIDES}, speed=speed,
                               output_dir=Path(str(config.output_dir) + "_quick"))
