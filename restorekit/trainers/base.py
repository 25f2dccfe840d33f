"""BaseTrainer: the step loop and everything common to all training stages.

A stage subclass implements only what differs (DESIGN.md §5):

- ``required_roles`` / ``trainable_roles`` / ``optimizer_roles``: which ``models.<role>`` it
  needs, which of them learn, and which optimizer (``trainer.args.optimizers.<group>``)
  updates which roles;
- ``train_step(batch) -> dict[str, float]``: forward passes and losses of one micro-batch,
  calling ``self.backward(loss, group)`` and ``self.optimizer_step(group)``;
- ``synthesize(batch)``: waveforms for validation (or ``None`` when the stage makes none),
  and optionally ``valid_losses(batch)``.

The base owns building components from the config, DDP under torchrun (forward passes go
through the DDP wrapper), mixed precision, gradient accumulation and per-optimizer clipping,
the EMA of the generator, schedulers, checkpoints and exact resume, SIGINT/SIGTERM handling,
validation with the metric suite, logging and the stage's export.
"""
from __future__ import annotations

import contextlib
import inspect
import random
import signal
import time
import zlib
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from restorekit.config import save_config, to_plain
from restorekit.errors import CheckpointError, ConfigError, TrainingError
from restorekit.registry import check_type, suggest
from restorekit.trainers import checkpoint, distributed
from restorekit.trainers.data import ResumableSampler, data_schedule, phase_at
from restorekit.trainers.ema import EMA
from restorekit.trainers.validation import Validator

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


def setting(default: Any, help: str) -> Any:
    """A trainer setting with the meaning ``restorekit list trainers NAME`` prints beside it."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainerArgs:
    """``trainer.args`` read by every trainer (stages add their own fields)."""

    max_steps: int = setting(1000, "optimizer steps to train for (a resumed run continues to it)")
    grad_accum: int = setting(1, "micro-batches per optimizer step (gradient accumulation)")
    log_every: int = setting(50, "steps between logged means of the scalars (step 1 is always logged)")
    valid_every: int = setting(0, "steps between validations; 0: once, at the end")
    ckpt_every: int = setting(1000, "steps between checkpoints (one is also written at the end)")
    keep_last: int = setting(3, "checkpoints kept in ckpt/ (0: all)")
    ema_decay: float | None = setting(0.999, "decay of the generator's weight EMA; null or 0: no EMA")
    ema_start: int = setting(0, "steps during which the EMA just copies the weights")
    num_audio_samples: int = setting(2, "validation items whose audio and spectrograms are logged")
    max_valid_items: int = setting(0, "validation items scored; 0: the whole validation set")
    optimizers: dict = setting({}, "group -> {name, args, grad_clip, scheduler, decay_only: [submodules whose parameters alone get weight_decay]}; the stage names its groups")
    init_from: dict = setting({}, "role -> export folder whose weights that role starts from")
    init_weights: dict = setting(
        {}, "role -> export folder whose weights load into the role as THIS config builds it (new submodules keep "
        "their init, exported ones it lacks are dropped and named, a changed shape is an error): grow a trained model")
    train_only: dict = setting({}, "role -> submodule names (e.g. [upsampler]) that train; the role's other weights stay frozen")
    find_unused_parameters: bool = setting(False, "DDP's find_unused_parameters (a model that skips parameters)")
    record_items: bool = setting(False, "write the item names each rank trained on to items/ (audits, tests)")
    export: bool = setting(True, "write export/ at the end (what the next stage and inference load)")
    max_nonfinite_steps: int = setting(10, "skipped NaN/Inf updates in a row that stop the run")


@dataclass
class LossTerm:
    """One entry of the config's loss list, built."""

    name: str
    key: str  # log key, loss/<name>
    weight: float
    fn: nn.Module
    takes_lengths: bool = False  # forward(estimate, reference, lengths=...) masks padded frames


@dataclass
class OptimGroup:
    """An optimizer, its scheduler, the roles it updates and its clipping threshold."""

    name: str
    roles: list[str]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    grad_clip: float | None
    params: list[nn.Parameter]


def parse_args(cls: type, node: Any, where: str) -> Any:
    """A dataclass of ``cls`` from a config node; unknown keys are errors with a suggestion."""
    values = to_plain(node) or {}
    types = {f.name: f.type for f in fields(cls)}
    for key in values:
        if key not in types:
            raise ConfigError(
                f"{where}.{key} is not a setting of this trainer.{suggest(key, list(types))} "
                f"Settings: {', '.join(types)}"
            )
        check_type(values[key], str(types[key]), f"{where}.{key}")
    return cls(**values)


def freeze_all_but(module: nn.Module, names: Any, where: str) -> None:
    """Only the submodules ``names`` (attribute paths such as ``upsampler``) of ``module`` keep gradients."""
    names = [str(n) for n in (names or [])]
    have = dict(module.named_modules())
    for n in names:
        if n not in have or not n:
            options = [k for k in have if k and "." not in k]
            raise ConfigError(f"{where}: '{n}' is not a submodule.{suggest(n, options)} Top-level submodules: "
                              f"{', '.join(options)}")
    for pname, p in module.named_parameters():
        p.requires_grad_(any(pname.startswith(n + ".") for n in names))


def split_weight_decay(opt: torch.optim.Optimizer, named: Mapping[str, nn.Parameter], only: list[str],
                       where: str) -> None:
    """Weight decay only on parameters under the submodules ``only`` (names as ``<role>.<path>`` or
    any ``<path>`` segment, e.g. ``encoder_transformer``); the rest of the group gets weight_decay 0."""
    def under(name: str, entry: str) -> bool:
        return f".{entry}." in f".{name}."

    for entry in only:
        if not any(under(n, str(entry)) for n in named):
            raise ConfigError(f"{where}: '{entry}' matches no trainable parameter of this optimizer's roles; "
                              f"parameters look like {', '.join(list(named)[:3])}")
    decayed = {id(p) for n, p in named.items() if any(under(n, str(e)) for e in only)}
    group = opt.param_groups[0]
    rest = [p for p in group["params"] if id(p) not in decayed]
    group["params"] = [p for p in group["params"] if id(p) in decayed]
    opt.add_param_group({"params": rest, "weight_decay": 0.0})


def role_seed(seed: int, role: str) -> int:
    """A per-role seed: a role initialises identically whatever else the config builds."""
    return (int(seed) + zlib.crc32(role.encode())) % (2**31)


class BaseTrainer(ABC):
    """Template-method trainer; see the module docstring for what a stage implements."""

    Args: ClassVar[type] = TrainerArgs
    required_roles: ClassVar[tuple[str, ...]] = ()
    trainable_roles: ClassVar[tuple[str, ...]] = ()
    ema_role: ClassVar[str | None] = None  # the generator whose weights are averaged and exported
    export_roles: ClassVar[tuple[str, ...]] = ()

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, cfg: DictConfig) -> BaseTrainer:
        return cls(cfg)

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self._validating = False  # see model()
        self.name = str(cfg.trainer.name)
        self.args = parse_args(self.Args, cfg.trainer.get("args"), "trainer.args")
        self._check_args()
        self.check_roles()
        self.check_inputs()  # stage-specific checks of paths etc., before anything heavy
        self.resume_from = self._resume_folder()
        self._setup_runtime()
        self._grown: dict[str, tuple[int, list[str]]] = {}  # role -> (new tensors, dropped modules), init_weights
        self.models = self.build_models()
        self.losses = self.build_losses()
        self.balancer = self.build_balancer()
        self.optim = self.build_optimizers()
        self.ema = self._build_ema()
        self.wrapped = self._wrap_ddp()
        self.train_loader, self.sampler = self.build_train_data()
        self.validator = Validator(self)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.nonfinite_total, self.nonfinite_in_a_row = 0, 0
        self.callbacks: list[Callable[[BaseTrainer], None]] = []
        self._stop_signal: int | None = None
        if self.resume_from is not None:
            self.load_checkpoint(self.resume_from)
        self.logger = self._build_logger()

    # roles that the config must provide (models.<role>) or that init_from provides
    def roles(self) -> list[str]:
        return list(self.required_roles)

    def optimizer_roles(self) -> dict[str, list[str]]:
        """Optimizer group -> roles it updates; default: one 'generator' over trainable roles."""
        return {"generator": [r for r in self.roles() if r in self.trainable_roles]}

    def check_inputs(self) -> None:
        """Stage-specific checks run before anything is built (override)."""
        for key in ("init_from", "init_weights"):
            for role, path in getattr(self.args, key).items():
                export = Path(str(path)).expanduser()
                if not (export / "config.yaml").is_file():
                    raise CheckpointError(
                        f"trainer.args.{key}.{role}: no export at {export} (missing config.yaml); "
                        "run the stage that writes it first, or fix the path"
                    )
        for role in self.args.init_weights:
            if role in self.args.init_from:
                raise ConfigError(
                    f"trainer.args.init_from.{role} and init_weights.{role} are both set; init_from rebuilds the role "
                    "as the export was built, init_weights loads its weights into this config's models."
                    f"{role}: keep one"
                )

    def check_roles(self) -> None:
        models = self.cfg.get("models") or {}
        have = set(models.keys()) | set(self.args.init_from.keys())
        missing = [r for r in self.roles() if r not in have]
        if missing:
            raise ConfigError(
                f"trainer '{self.name}' needs models.{missing[0]} but the config has none "
                f"(roles it needs: {', '.join(self.roles())}; config has: {', '.join(sorted(have)) or 'none'}); "
                f"add models.{missing[0]}: {{name: ..., args: {{...}}}}"
            )

    def _check_args(self) -> None:
        a = self.args
        for key in ("max_steps", "grad_accum", "log_every", "ckpt_every", "max_nonfinite_steps"):
            if int(getattr(a, key)) < 1:
                raise ConfigError(f"trainer.args.{key} must be >= 1, got {getattr(a, key)}")
        if a.ema_decay and not 0.0 < float(a.ema_decay) < 1.0:
            raise ConfigError(f"trainer.args.ema_decay must be in (0, 1) or null, got {a.ema_decay}")

    def _resume_folder(self) -> Path | None:
        path = self.cfg.trainer.get("ckpt_dir")
        return checkpoint.resolve(path) if path else None

    def _setup_runtime(self) -> None:
        exp = self.cfg.exp
        device = str(exp.get("device", "auto"))
        if device not in DEVICES:
            raise ConfigError(f"exp.device must be one of {', '.join(DEVICES)}, got '{device}'")
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("exp.device is 'cuda' but no CUDA device is visible; use exp.device=cpu or auto")
        dtype = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
        self.dist = distributed.init(dtype)
        self.device = torch.device(f"cuda:{self.dist.local_rank}" if dtype == "cuda" else "cpu")
        self.precision = self._precision(str(exp.get("precision", "auto")))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.seed = int(exp.get("seed", 0))
        self.output_dir = Path(str(exp.get("output_dir") or f"runs/{exp.get('name', 'run')}"))
        self.is_main = self.dist.is_main

    def _precision(self, precision: str) -> str:
        if precision not in PRECISIONS:
            raise ConfigError(f"exp.precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
        if precision == "auto":  # bf16 autocast on GPU, full precision on CPU
            return "bf16" if self.device.type == "cuda" else "fp32"
        if precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("exp.precision=fp16 needs a CUDA device; use fp32 or bf16 on CPU")
        return precision

    def seed_everything(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)

    # ----------------------------------------------------------------- components
    def build_models(self) -> dict[str, nn.Module]:
        from restorekit.models import MODELS

        for role, node in (self.cfg.get("models") or {}).items():  # every role: this stage's or a later one's
            MODELS.validate(node, where=f"models.{role}")
        models: dict[str, nn.Module] = {}
        for role in self.roles():
            if role in self.args.init_from:
                models[role] = self.load_role_from_export(role, self.args.init_from[role])
            else:
                self.seed_everything(role_seed(self.seed, role))
                models[role] = MODELS.build(self.cfg.models[role], where=f"models.{role}")
                if role in self.args.init_weights:
                    self.load_weights_from_export(models[role], role, self.args.init_weights[role])
            models[role].to(self.device)
            if role not in self.trainable_roles:
                models[role].requires_grad_(False).eval()
            elif role in self.args.train_only:
                freeze_all_but(models[role], self.args.train_only[role], f"trainer.args.train_only.{role}")
        self.seed_everything(self.seed + self.dist.rank)  # training randomness differs per rank
        return models

    def load_role_from_export(self, role: str, path: str) -> nn.Module:
        from restorekit.models.export import load_export

        modules = load_export(str(path))
        if role not in modules:
            raise CheckpointError(
                f"trainer.args.init_from.{role}: export {path} has no '{role}' "
                f"(it holds: {', '.join(sorted(modules))}); point it at the export of the stage that trains {role}"
            )
        return modules[role]

    def load_weights_from_export(self, module: nn.Module, role: str, path: str) -> None:
        """Load export ``path``'s ``role`` weights into ``module`` (built from this config).

        Weights the module has and the export lacks keep their initialisation (a submodule this
        stage adds); exported weights the module has no place for (a head this stage replaces) are
        dropped and named in the banner; a weight whose shape differs is an error (changed widths).
        """
        from safetensors.torch import load_file

        from restorekit.models.export import reloadable_keys

        file = Path(str(path)) / f"{role}.safetensors"
        where = f"trainer.args.init_weights.{role}"
        if not file.is_file():
            raise CheckpointError(f"{where}: {file} does not exist; point it at the export of the stage that trains {role}")
        state = load_file(str(file))
        own = module.state_dict()
        bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
        if bad:
            raise CheckpointError(
                f"{where}: {len(bad)} weights of {file} do not fit models.{role} as configured (e.g. {bad[0]}: "
                f"{tuple(state[bad[0]].shape)} exported, {tuple(own[bad[0]].shape)} here); the models.{role} args "
                "must extend the exported model, not change its sizes"
            )
        module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
        dropped = sorted({k.split(".")[0] for k in state if k not in own})
        reloaded = reloadable_keys(module)  # a pretrained encoder's weights: loaded at build, never exported
        self._grown[role] = (sum(k not in state and k not in reloaded for k in own), dropped)

    def build_losses(self) -> dict[str, list[LossTerm]]:
        """The config's loss list, or a mapping ``{group: [loss, ...]}`` (stages pick their groups)."""
        node = self.cfg.get("losses") or []
        if isinstance(node, (Mapping, DictConfig)):
            return {str(g): self._loss_list(v or [], f"losses.{g}") for g, v in node.items()}
        return {"": self._loss_list(node, "losses")}

    def losses_for(self, group: str) -> list[LossTerm]:
        """The loss group ``group`` (``losses.<group>``), or the plain loss list when there are no groups."""
        return self.losses.get(group, self.losses.get("", []))

    def _loss_list(self, nodes: Any, where_root: str) -> list[LossTerm]:
        from restorekit.losses import LOSSES

        terms, seen = [], defaultdict(int)
        for i, node in enumerate(nodes):
            where = f"{where_root}[{i}]"
            if "weight" not in node:
                raise ConfigError(f"{where} ({node.get('name')}) has no weight; add weight: <number> (0 = log only)")
            fn = LOSSES.build(node, where=where, extra_keys=("weight",)).to(self.device)
            name = str(node["name"])
            seen[name] += 1
            key = f"loss/{name}" if seen[name] == 1 else f"loss/{name}_{seen[name]}"
            takes_lengths = "lengths" in inspect.signature(fn.forward).parameters
            terms.append(LossTerm(name, key, float(node["weight"]), fn, takes_lengths))
        return terms

    def build_balancer(self) -> Any:
        """The gradient balancer ``trainer.args.balancer`` describes (stages with a ``balancer`` setting), or None."""
        from restorekit.trainers.balancer import Balancer

        node = getattr(self.args, "balancer", None)
        names = [t.key.removeprefix("loss/") for t in self.losses_for("generator")]
        return Balancer.from_config(node, names) if node else None

    def build_optimizers(self) -> dict[str, OptimGroup]:
        from restorekit.optim import OPTIMIZERS, SCHEDULERS

        groups = {}
        for group, roles in self.optimizer_roles().items():
            where = f"trainer.args.optimizers.{group}"
            node = self.args.optimizers.get(group)
            if node is None:
                raise ConfigError(
                    f"{where} is missing: trainer '{self.name}' updates {', '.join(roles)} with an optimizer "
                    f"named '{group}'; add {where}: {{name: adamw, args: {{lr: 2.0e-4}}}}"
                )
            named = {f"{r}.{n}": p for r in roles for n, p in self.models[r].named_parameters() if p.requires_grad}
            params = list(named.values())
            opt = OPTIMIZERS.build(node, where=where, extra_keys=("grad_clip", "scheduler", "decay_only"), params=params)
            if node.get("decay_only"):
                split_weight_decay(opt, named, list(node["decay_only"]), f"{where}.decay_only")
            sched_node = node.get("scheduler") or {"name": "constant"}
            sched = SCHEDULERS.build(sched_node, where=f"{where}.scheduler", optimizer=opt)
            clip = node.get("grad_clip")
            groups[group] = OptimGroup(group, roles, opt, sched, float(clip) if clip else None, params)
        return groups

    def _build_ema(self) -> EMA | None:
        if not self.args.ema_decay or self.ema_role is None:
            return None
        return EMA(self.models[self.ema_role], float(self.args.ema_decay), int(self.args.ema_start))

    def _wrap_ddp(self) -> dict[str, nn.Module]:
        wrapped: dict[str, nn.Module] = dict(self.models)
        if not self.dist.enabled:
            return wrapped
        for role in self.trainable_roles:
            module = self.models[role]
            if any(p.requires_grad for p in module.parameters()):
                ids = [self.device.index] if self.device.type == "cuda" else None
                wrapped[role] = DDP(module, device_ids=ids, find_unused_parameters=self.args.find_unused_parameters)
        return wrapped

    def build_dataset(self, node: Any, where: str, validation: bool = False) -> Any:
        from restorekit.datasets import DATASETS

        entry = DATASETS.entry(str(node.get("name")), where)
        accepted = {p.name for p in entry.params()}
        args = node.get("args") or {}
        injected = {}
        if "sample_rate" in accepted and "sample_rate" not in args and "sample_rate" in self.cfg.data:
            injected["sample_rate"] = int(self.cfg.data.sample_rate)
        if validation and "validation" in accepted and "validation" not in args:
            injected["validation"] = True
        return DATASETS.build(node, where=where, **injected)

    def build_train_data(self) -> tuple[torch.utils.data.DataLoader, ResumableSampler]:
        """The loader of the corpus that trains now; ``data.train`` may be a schedule (trainers/data.py)."""
        data = self.cfg.get("data")
        if data is None or data.get("train") is None:
            raise ConfigError("data.train is missing: add data.train: {name: <dataset>, args: {...}}")
        self._phases = data_schedule(data.train)
        # A loader-owned generator (re-seeded each epoch) keeps iterator creation from drawing on
        # the global RNG, which would make a resumed run's randomness differ.
        self._loader_rng = torch.Generator()
        # every corpus is built now, so a bad one fails at start, not hours in
        self._phase_loaders = [self._train_loader(p.node, p.where) for p in self._phases]
        self._phase = 0
        return self._phase_loaders[0]

    def _train_loader(self, node: Any, where: str) -> tuple[torch.utils.data.DataLoader, ResumableSampler]:
        from restorekit.datasets.collate import collate

        data = self.cfg.data
        dataset = self.build_dataset(node, where)
        batch = int(data.get("batch_size", 1))
        if len(dataset) < batch * self.dist.world_size:
            raise ConfigError(
                f"{where} has {len(dataset)} items, fewer than data.batch_size ({batch}) x "
                f"{self.dist.world_size} process(es); lower data.batch_size or add data"
            )
        sampler = ResumableSampler(dataset, self.dist.world_size, self.dist.rank, seed=self.seed)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch, sampler=sampler, num_workers=int(data.get("num_workers", 0)),
            collate_fn=collate, drop_last=True, pin_memory=self.device.type == "cuda",
            generator=self._loader_rng,
        )
        return loader, sampler

    def _build_logger(self) -> Any:
        from restorekit.loggers import MultiLogger, build_loggers

        if not self.is_main:
            return MultiLogger([])
        self.output_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.output_dir)
        logger = build_loggers(self.cfg.exp.get("logger"), self.output_dir)
        logger.log_config(to_plain(self.cfg))
        return logger

    # ----------------------------------------------------------------- helpers for stages
    def model(self, role: str) -> nn.Module:
        """The module to run forward passes through (the DDP wrapper when distributed).

        During validation it is the unwrapped module: only rank 0 validates, and a DDP forward
        there would start a collective (buffer broadcast) the other ranks never join, hanging
        the job.
        """
        return self.models[role] if self._validating else self.wrapped[role]

    def raw(self, role: str) -> nn.Module:
        """The unwrapped module (its own methods, or passes that must not sync gradients)."""
        return self.models[role]

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for forward passes, as exp.precision says (a no-op for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @contextlib.contextmanager
    def frozen(self, *roles: str) -> Iterator[None]:
        """Roles whose parameters get no gradient inside the block (e.g. D in the G step)."""
        states = {r: [p.requires_grad for p in self.models[r].parameters()] for r in roles}
        for r in roles:
            self.models[r].requires_grad_(False)
        try:
            yield
        finally:
            for r in roles:
                for p, flag in zip(self.models[r].parameters(), states[r]):
                    p.requires_grad_(flag)

    def weighted_losses(self, terms: list[LossTerm], *inputs: Any, values: dict | None = None,
                        lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Sum of weight x loss(*inputs) in float32; weight 0 is computed and logged only.

        ``values``, when given, collects ``{log key: (weight, loss tensor)}`` of the terms that
        give a gradient (the gradient balancer needs each one apart). ``lengths`` (B,): the valid
        frames of a padded batch, passed to the losses whose ``forward`` takes ``lengths``.
        """
        inputs = tuple(_to_float(x) for x in inputs)
        total = torch.zeros((), device=self.device)
        scalars = {}
        with torch.autocast(device_type=self.device.type, enabled=False):
            for t in terms:
                with torch.no_grad() if t.weight == 0 else contextlib.nullcontext():
                    value = t.fn(*inputs, lengths=lengths) if lengths is not None and t.takes_lengths else t.fn(*inputs)
                if t.weight != 0:
                    total = total + t.weight * value
                    if values is not None:
                        values[t.key] = (t.weight, value)
                scalars[t.key] = float(value.detach())
        return total, scalars

    def backward(self, loss: torch.Tensor, group: str) -> None:
        """Backpropagate ``loss`` for optimizer ``group``, scaled for gradient accumulation."""
        assert group in self.optim, f"unknown optimizer group '{group}' (have {sorted(self.optim)})"
        with torch.autocast(device_type=self.device.type, enabled=False):
            self.scaler.scale(loss / self.args.grad_accum).backward()

    def optimizer_step(self, group: str) -> None:
        """Step ``group``'s optimizer at the last micro-batch of an accumulation window.

        A non-finite gradient norm (from a NaN/Inf loss or gradient) skips the update: the
        gradients are dropped, and the weights and the scheduler stay as they were (as
        GradScaler does for fp16 overflows). ``_train_window`` counts the skips.
        """
        if not self._last_micro:
            return
        g = self.optim[group]
        self.scaler.unscale_(g.optimizer)
        max_norm = g.grad_clip if g.grad_clip else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(g.params, max_norm)
        if torch.isfinite(norm):
            self.scaler.step(g.optimizer)
            g.scheduler.step()
        else:  # the scaler records the inf for fp16 and lowers its scale in update()
            self._skipped.add(group)
        g.optimizer.zero_grad(set_to_none=True)
        self._step_scalars[f"grad/{group}_norm"] = float(norm)
        self._stepped.add(group)

    # ----------------------------------------------------------------- what stages implement
    @abstractmethod
    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """Losses of one micro-batch; calls ``self.backward`` and ``self.optimizer_step``; returns scalars."""

    def synthesize(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int] | None:
        """Restored waveforms ``(B, samples)`` and their rate, or None when the stage makes none."""
        return None

    def valid_losses(self, batch: dict[str, Any]) -> dict[str, float]:
        """Scalars computed on a validation batch (log keys), e.g. the stage's own losses."""
        return {}

    def export(self, folder: Path) -> None:
        """Write the stage's export (weights with the EMA swapped in, plus the config)."""
        from restorekit.models.export import save_export

        save_export(str(folder), self.export_config(), {r: self.models[r] for r in self.export_roles})

    def export_config(self) -> DictConfig:
        """The run's config, with ``models.<role>`` taken from the export each init_from role came from
        (the export must rebuild every module it holds, whatever this config says about it)."""
        cfg = OmegaConf.create(to_plain(self.cfg))
        for role, path in self.args.init_from.items():
            source = OmegaConf.load(Path(str(path)) / "config.yaml")
            if role in self.export_roles and role in (source.get("models") or {}):
                OmegaConf.update(cfg, f"models.{role}", source.models[role], force_add=True)
        return cfg

    # ----------------------------------------------------------------- the loop
    def fit(self) -> Path | None:
        """Train to ``max_steps``; returns the export folder (None when interrupted)."""
        try:
            if self.is_main:
                print(self.banner(), flush=True)
            with self._signal_handlers():
                finished = self._loop()
            return self._finish(finished)
        finally:
            self.logger.close()

    def banner(self) -> str:
        """What this run is about to do: device, precision, processes, parameters per role, data, steps."""
        d = self.dist
        lines = [f"{self.name}: device {self.device}, precision {self.precision}, {d.world_size} process(es)"]
        for role, module in self.models.items():
            total = sum(p.numel() for p in module.parameters())
            trained = sum(p.numel() for p in module.parameters() if p.requires_grad) if role in self.trainable_roles else 0
            new, dropped = self._grown.get(role, (0, []))
            note = f"; {new} tensors new (not in init_weights' export)" if new else ""
            note += f"; exported {', '.join(dropped)} dropped (not in this model)" if dropped else ""
            lines.append(f"  {role}: {type(module).__name__}, {trained / 1e6:.3f}M trainable / {total / 1e6:.3f}M "
                         f"parameters{note}")
        batch = self.train_loader.batch_size
        lines.append(f"  data: {len(self.train_loader.dataset)} training items; batch {batch} x {d.world_size} "
                     f"process(es) x {self.args.grad_accum} accumulated = {batch * d.world_size * self.args.grad_accum}")
        if len(self._phases) > 1:
            lines.append("  data schedule: " + ", ".join(
                f"{len(loader.dataset)} items until step {p.until_step}" if p.until_step else f"{len(loader.dataset)} items after"
                for p, (loader, _) in zip(self._phases, self._phase_loaders)))
        start = f"from step {self.step} " if self.step else ""
        lines.append(f"  steps: {start}to {self.args.max_steps}; checkpoints every {self.args.ckpt_every} in "
                     f"{self.output_dir / 'ckpt'}; export to {self.output_dir / 'export'}")
        return "\n".join(lines)

    def _loop(self) -> bool:
        from tqdm import tqdm

        batches = self._batches()
        window: dict[str, list[float]] = defaultdict(list)
        tick = time.perf_counter()
        # rate and ETA on rank 0 when stderr is a terminal (disable=None: off when redirected)
        with tqdm(total=self.args.max_steps, initial=self.step, desc=self.name, unit="step",
                  disable=None if self.is_main else True, dynamic_ncols=True) as bar:
            while self.step < self.args.max_steps:
                scalars = self._train_window([next(batches) for _ in range(self.args.grad_accum)])
                self.step += 1
                bar.update(1)
                if self.ema is not None:
                    self.ema.update(self.step)
                for k, v in scalars.items():
                    window[k].append(v)
                self._last_scalars = scalars
                for cb in self.callbacks:
                    cb(self)
                if self.step % self.args.log_every == 0 or self.step == 1:  # the first losses at once
                    tick = self._log_window(window, tick)
                if self._stop_requested():
                    return False
                self._periodic()
        return True

    def _periodic(self) -> None:
        if self.args.valid_every and self.step % self.args.valid_every == 0 and self.step < self.args.max_steps:
            self.validate()
        if self.step % self.args.ckpt_every == 0:
            self.save_checkpoint()

    def _finish(self, finished: bool) -> Path | None:
        if not finished:
            path = self.save_checkpoint()
            if self.is_main:
                print(f"stopped by signal at step {self.step}; checkpoint {path}; "
                      f"resume with trainer.ckpt_dir={self.output_dir / 'ckpt'}", flush=True)
            distributed.shutdown()
            return None
        if self.step % self.args.ckpt_every != 0:
            self.save_checkpoint()
        self.validate()
        folder = self._write_export() if self.args.export else None
        distributed.shutdown()
        return folder

    def _write_export(self) -> Path:
        folder = self.output_dir / "export"
        if self.is_main:
            from restorekit.hub import write_model_card

            with self.ema.swapped_in() if self.ema else contextlib.nullcontext():
                self.export(folder)
            if (folder / "config.yaml").is_file():  # a restorekit export: also a Hub model repo
                write_model_card(folder)
            print(f"export written to {folder}", flush=True)
        distributed.barrier()
        return folder

    def _train_window(self, micro_batches: list[dict[str, Any]]) -> dict[str, float]:
        self._stepped: set[str] = set()
        self._skipped: set[str] = set()
        self._step_scalars: dict[str, float] = {}
        totals: dict[str, float] = defaultdict(float)
        for role in self.trainable_roles:
            self.models[role].train()
        for i, batch in enumerate(micro_batches):
            self._last_micro = i == len(micro_batches) - 1
            with self._no_sync_unless(self._last_micro):
                scalars = self.train_step(self.to_device(batch))
            for k, v in scalars.items():
                totals[k] += float(v) / len(micro_batches)
        for group in self.optim:
            if group not in self._stepped:  # a stage that left stepping to the base
                self.optimizer_step(group)
        self.scaler.update()
        self._count_nonfinite()
        for name, g in self.optim.items():
            totals[f"lr/{name}"] = g.optimizer.param_groups[0]["lr"]
        totals["grad/nonfinite_skips"] = float(self.nonfinite_total)
        return {**totals, **self._step_scalars}

    def _count_nonfinite(self) -> None:
        """Count windows whose update was skipped; stop after ``max_nonfinite_steps`` in a row."""
        if not self._skipped:
            self.nonfinite_in_a_row = 0
            return
        self.nonfinite_total += 1
        self.nonfinite_in_a_row += 1
        if self.is_main:
            print(f"step {self.step + 1}: non-finite loss or gradient in {', '.join(sorted(self._skipped))}; "
                  f"update skipped ({self.nonfinite_in_a_row} in a row)", flush=True)
        if self.nonfinite_in_a_row >= self.args.max_nonfinite_steps:
            raise TrainingError(
                f"training stopped at step {self.step + 1}: {self.nonfinite_in_a_row} updates in a row had a "
                f"non-finite loss or gradient ({', '.join(sorted(self._skipped))}); the weights are those of the "
                "last finite step. Check the data for NaN/Inf, lower the learning rate or use exp.precision=fp32/bf16, "
                f"then resume from the last checkpoint (trainer.ckpt_dir={self.output_dir / 'ckpt'}); "
                "trainer.args.max_nonfinite_steps sets the limit"
            )

    def _no_sync_unless(self, sync: bool) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        if not sync:
            for m in self.wrapped.values():
                if isinstance(m, DDP):
                    stack.enter_context(m.no_sync())
        return stack

    def _enter_phase(self) -> int:
        """Switch to the corpus the data schedule gives for the next step; a new corpus starts at its
        epoch 0 (a resumed run whose checkpoint fell on the boundary switches here too)."""
        phase = phase_at(self._phases, self.step)
        if phase != self._phase:
            self._phase, self.epoch, self.batch_in_epoch = phase, 0, 0
            if self.is_main:
                print(f"step {self.step}: training data is now {self._phases[phase].where}", flush=True)
        self.train_loader, self.sampler = self._phase_loaders[phase]
        return phase

    def _batches(self) -> Iterator[dict[str, Any]]:
        while True:
            phase = self._enter_phase()
            batch_size = self.train_loader.batch_size
            self.sampler.set_position(self.epoch, self.batch_in_epoch * batch_size)
            self._loader_rng.manual_seed(self.seed * 100_003 + self.epoch * 101 + self.dist.rank + phase * 7919)
            dataset = self.train_loader.dataset
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(self.epoch)
            switched = False
            for batch in self.train_loader:
                self.batch_in_epoch += 1
                self._record_items(batch)
                yield batch
                if phase_at(self._phases, self.step) != phase:  # the schedule moved on at this step
                    switched = True
                    break
            if not switched:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def _record_items(self, batch: dict[str, Any]) -> None:
        if not self.args.record_items:
            return
        folder = self.output_dir / "items"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"rank{self.dist.rank}.txt", "a", encoding="utf-8") as fh:
            fh.writelines(f"{self.step}\t{n}\n" for n in batch.get("names", []))

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _log_window(self, window: dict[str, list[float]], tick: float) -> float:
        now = time.perf_counter()
        scalars = {k: float(np.mean(v)) for k, v in window.items()}
        scalars["perf/steps_per_s"] = len(next(iter(window.values()), [0])) / max(now - tick, 1e-9)
        scalars = distributed.mean_scalars(scalars, self.device)
        self.logger.log_scalars(scalars, self.step)
        window.clear()
        return now

    # ----------------------------------------------------------------- validation
    def validate(self) -> dict[str, float]:
        """Synthesize the validation set (rank 0, EMA weights), score it, log it."""
        scalars: dict[str, float] = {}
        if self.is_main:
            for m in self.models.values():
                m.eval()
            # validation must not move the training RNG, or a resumed run would diverge
            self._validating = True
            try:
                with _rng_preserved(), self.ema.swapped_in() if self.ema else contextlib.nullcontext():
                    scalars = self.validator.run(self.step)
            finally:
                self._validating = False
        distributed.barrier()
        return scalars

    # ----------------------------------------------------------------- signals
    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be installed from the main thread
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self._on_signal)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops without waiting for the checkpoint
        self._stop_signal = signum
        if self.is_main:
            print(f"received {signal.Signals(signum).name}: saving a checkpoint after this step", flush=True)

    def _stop_requested(self) -> bool:
        return distributed.any_true(self._stop_signal is not None, self.device)

    # ----------------------------------------------------------------- checkpoints
    def model_state(self) -> dict[str, torch.Tensor]:
        """Trainable weights and buffers of trainable roles, keyed ``<role>.<name>``."""
        state = {}
        for role in self.trainable_roles:
            module = self.models[role]
            keep = {n for n, p in module.named_parameters() if p.requires_grad}
            keep |= {n for n, _ in module.named_buffers()}
            for name, tensor in module.state_dict().items():
                if name in keep:
                    state[f"{role}.{name}"] = tensor
        return state

    def training_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "optimizers": {k: g.optimizer.state_dict() for k, g in self.optim.items()},
            "schedulers": {k: g.scheduler.state_dict() for k, g in self.optim.items()},
            "scaler": self.scaler.state_dict(),
            "rng": distributed.gather_objects(_rng_state()),
            "world_size": self.dist.world_size,
            "nonfinite": [self.nonfinite_total, self.nonfinite_in_a_row],
            "balancer": self.balancer.state_dict() if self.balancer is not None else None,
            "data_phase": self._phase,
        }

    def save_checkpoint(self) -> Path:
        """Write a complete checkpoint (rank 0); every rank contributes its RNG state."""
        state = self.training_state()  # collective: all ranks take part
        folder = self.output_dir / "ckpt" / checkpoint.step_name(self.step)
        if self.is_main:
            folder = checkpoint.save(
                self.output_dir / "ckpt", self.step, self.model_state(), state, self.cfg,
                ema=self.ema.state_dict() if self.ema else None, keep_last=self.args.keep_last,
            )
        distributed.barrier()
        return folder

    def load_checkpoint(self, folder: Path) -> None:
        data = checkpoint.load(folder)
        self._load_model_state(data["models"], folder)
        st = data["state"]
        for k, g in self.optim.items():
            g.optimizer.load_state_dict(st["optimizers"][k])
            g.scheduler.load_state_dict(st["schedulers"][k])
        self.scaler.load_state_dict(st["scaler"])
        if self.ema is not None and data["ema"] is not None:
            self.ema.load_state_dict(data["ema"])
        self.step, self.epoch, self.batch_in_epoch = st["step"], st["epoch"], st["batch_in_epoch"]
        self.nonfinite_total, self.nonfinite_in_a_row = st.get("nonfinite", (0, 0))  # older checkpoints lack it
        if self.balancer is not None and st.get("balancer"):
            self.balancer.load_state_dict(st["balancer"])
        self._phase = st.get("data_phase", self._phase)  # _batches resets the position if the step moved on
        rng = st["rng"]
        if len(rng) == self.dist.world_size:  # a different world size cannot replay exactly
            _set_rng_state(rng[self.dist.rank])
        if self.is_main:
            print(f"resumed from {folder} at step {self.step}", flush=True)

    def _load_model_state(self, tensors: Mapping[str, torch.Tensor], folder: Path) -> None:
        by_role: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
        for key, t in tensors.items():
            role, name = key.split(".", 1)
            by_role[role][name] = t
        for role in self.trainable_roles:
            result = self.models[role].load_state_dict(by_role.get(role, {}), strict=False)
            if result.unexpected_keys:
                raise CheckpointError(
                    f"checkpoint {folder} does not match models.{role} (unexpected weights such as "
                    f"{result.unexpected_keys[0]}); resume with the config it was trained with"
                )


def _to_float(x: Any) -> Any:
    if torch.is_tensor(x):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, (list, tuple)):
        return type(x)(_to_float(v) for v in x)
    return x


@contextlib.contextmanager
def _rng_preserved() -> Iterator[None]:
    state = _rng_state()
    try:
        yield
    finally:
        _set_rng_state(state)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
