"""The one Registry class: components registered by name and built from config nodes.

A config node that selects a component always has the shape ``{name: ..., args: {...}}``.
``Registry.build`` checks ``args`` against the constructor's signature *before* calling it,
so a typo fails with the full config path and the accepted arguments instead of a bare
``TypeError`` deep inside a constructor.
"""
from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from restorekit.errors import ConfigError, RegistryError

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_NODE_KEYS = ("name", "args")


@dataclass(frozen=True)
class Param:
    """One constructor argument as ``list`` shows it."""

    name: str
    default: Any  # inspect.Parameter.empty when required
    annotation: str

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def __str__(self) -> str:
        ann = f": {self.annotation}" if self.annotation else ""
        return f"{self.name}{ann}" + ("" if self.required else f" = {self.default!r}")


@dataclass(frozen=True)
class Entry:
    """A registered component: its name, the object and where it was defined."""

    name: str
    target: Callable[..., Any]

    @property
    def origin(self) -> str:
        t = self.target
        try:
            line = inspect.getsourcelines(t)[1]
            return f"{t.__module__}.{t.__qualname__} ({inspect.getsourcefile(t)}:{line})"
        except (OSError, TypeError):
            return f"{t.__module__}.{getattr(t, '__qualname__', t)}"

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.target) or ""
        return doc.strip().splitlines()[0] if doc.strip() else "(no docstring)"

    def params(self) -> list[Param]:
        return [
            Param(p.name, p.default, _annotation(p))
            for p in _signature(self.target).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]

    def accepts_any(self) -> bool:
        return any(p.kind is p.VAR_KEYWORD for p in _signature(self.target).parameters.values())


def _signature(target: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(target)


def _annotation(p: inspect.Parameter) -> str:
    ann = p.annotation
    if ann is inspect.Parameter.empty:
        return ""
    return ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))


# Annotations a config value is checked against before a constructor sees it; richer ones
# (Sequence[int], Mapping, unions of containers) are left to the constructor's own checks.
_SCALARS: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def check_type(value: Any, annotation: str, where: str) -> None:
    """ConfigError when ``value`` does not fit a scalar ``annotation`` (``int``, ``float | None``, ...)."""
    parts = [a.strip() for a in str(annotation).split("|")]
    optional = "None" in parts
    kinds = [a for a in parts if a != "None"]
    if len(kinds) != 1 or kinds[0] not in _SCALARS or (value is None and optional):
        return
    ok = isinstance(value, _SCALARS[kinds[0]]) and not (isinstance(value, bool) and kinds[0] != "bool")
    if not ok:
        allowed = kinds[0] + (" or null" if optional else "")
        raise ConfigError(f"{where} must be {_ARTICLE.get(kinds[0], '')}{allowed}, got {value!r} "
                          f"({type(value).__name__}); fix the value in the config or on the command line")


_ARTICLE = {"int": "an ", "float": "a ", "bool": "a ", "str": "a "}


def suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    """' Did you mean 'x'?' for the closest option, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _plain(obj: Any) -> Any:
    """OmegaConf containers to plain dicts/lists (resolved); anything else unchanged."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a hard dependency
        return obj
    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True)
    return obj


class Registry:
    """Components of one kind (models, losses, ...) registered by lowercase snake_case name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: ``@MODELS.register("wavefit")`` on a class or factory function."""
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise RegistryError(
                f"cannot register {self.kind} {name!r}: names are lowercase snake_case "
                "(letters, digits, underscores, starting with a letter)"
            )

        def decorator(target: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                first = self._entries[name]
                raise RegistryError(
                    f"{self.kind} '{name}' is registered twice: first by {first.origin}, "
                    f"again by {Entry(name, target).origin}; rename one of them"
                )
            self._entries[name] = Entry(name, target)
            return target

        return decorator

    def get(self, name: str, where: str = "") -> Callable[..., Any]:
        """The registered class or function, or an error listing what exists."""
        if name not in self._entries:
            at = f" at {where}.name" if where else ""
            have = ", ".join(self.names()) or "(none registered)"
            raise RegistryError(
                f"unknown {self.kind} '{name}'{at}.{suggest(name, self.names())} "
                f"Registered {self.kind}: {have}"
            )
        return self._entries[name].target

    def entry(self, name: str, where: str = "") -> Entry:
        self.get(name, where)
        return self._entries[name]

    def build(
        self,
        node: Mapping[str, Any] | Any,
        where: str = "",
        extra_keys: tuple[str, ...] = (),
        **injected: Any,
    ) -> Any:
        """Build the component a ``{name, args}`` node selects (or just its name, in a notebook).

        ``where`` is the node's config path, used in every message (default: the kind, e.g.
        ``models``, for nodes built outside a config). ``extra_keys`` are
        node keys that the caller reads itself (a loss's ``weight``, a chain op's ``p``) and
        that are not passed on. ``injected`` are runtime arguments the caller supplies (e.g.
        ``sample_rate``); they are validated like config args.
        """
        node = _plain(node)
        where = where or self.kind
        name, args = self._split_node(node, where, extra_keys)
        entry = self.entry(name, where)
        kwargs = {**args, **injected}
        self._check_args(entry, kwargs, where, injected=set(injected))
        requires = getattr(entry.target, "requires", ())
        if requires:  # optional packages (metrics, baselines, loggers): say which extra to install
            from restorekit.optional import check_installed

            check_installed(requires, f"{where}: {self.kind} '{name}'")
        return entry.target(**kwargs)

    def validate(self, node: Mapping[str, Any] | Any, where: str = "", extra_keys: tuple[str, ...] = ()) -> None:
        """Check a node as ``build`` would (name, argument names, scalar types), without building
        it, and the nodes of this kind nested in its args (an encoder, discriminator members):
        a typo fails at start even in a role the current stage does not build."""
        node = _plain(node)
        where = where or self.kind
        name, args = self._split_node(node, where, extra_keys)
        entry = self.entry(name, where)
        self._check_args(entry, args, where, injected={p.name for p in entry.params() if p.name not in args})
        for key, value in args.items():
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                if isinstance(item, Mapping) and item.get("name") in self._entries:
                    self.validate(item, f"{where}.args.{key}" + (f"[{i}]" if isinstance(value, list) else ""))

    def _split_node(
        self, node: Any, where: str, extra_keys: tuple[str, ...]
    ) -> tuple[str, dict[str, Any]]:
        if isinstance(node, str):
            node = {"name": node}
        if not isinstance(node, Mapping):
            raise ConfigError(
                f"{where} must be a mapping like {{name: <{self.kind} name>, args: {{...}}}}, "
                f"got {type(node).__name__}: {node!r}"
            )
        unknown = [k for k in node if k not in _NODE_KEYS + tuple(extra_keys)]
        if unknown:
            allowed = ", ".join(_NODE_KEYS + tuple(extra_keys))
            raise ConfigError(
                f"{where} has unknown key '{unknown[0]}'.{suggest(unknown[0], _NODE_KEYS + tuple(extra_keys))} "
                f"A component node takes: {allowed} (constructor arguments go under {where}.args)"
            )
        if "name" not in node or not node["name"]:
            raise ConfigError(
                f"{where}.name is missing: say which {self.kind} to build; "
                f"registered: {', '.join(self.names()) or '(none)'}"
            )
        args = node.get("args") or {}
        if not isinstance(args, Mapping):
            raise ConfigError(f"{where}.args must be a mapping of argument names to values, got {args!r}")
        return str(node["name"]), dict(args)

    def _check_args(self, entry: Entry, kwargs: dict[str, Any], where: str, injected: set[str]) -> None:
        params = entry.params()
        names = [p.name for p in params]
        accepted = ", ".join(str(p) for p in params) or "(none)"
        if not entry.accepts_any():
            for key in kwargs:
                if key not in names:
                    raise ConfigError(
                        f"{where}.args.{key}: {self.kind} '{entry.name}' has no argument "
                        f"'{key}'.{suggest(key, names)} Accepted arguments: {accepted}"
                    )
        for p in params:
            if p.required and p.name not in kwargs:
                raise ConfigError(
                    f"{where}.args.{p.name} is required by {self.kind} '{entry.name}' "
                    f"but missing; set it in the config. Accepted arguments: {accepted}"
                )
            if p.name in kwargs and p.name not in injected:
                check_type(kwargs[p.name], p.annotation, f"{where}.args.{p.name}")

    def describe(self, name: str | None = None) -> str:
        """Human-readable listing: each component, its arguments with defaults, its summary; for
        one named component also its whole docstring and where it is defined (file and line)."""
        entries = [self.entry(name)] if name else self.entries()
        lines = [f"{self.kind} ({len(entries)})"]
        for e in entries:
            lines.append(f"  {e.name}: {e.summary}")
            for p in e.params():
                lines.append(f"      {p}")
            if name:
                doc = (inspect.getdoc(e.target) or "").strip().splitlines()[1:]
                lines.extend(f"    {line}".rstrip() for line in doc)
                lines.extend(_settings(e.target))
                lines.append(f"    defined in {e.origin}")
        return "\n".join(lines)


def _settings(target: Any) -> list[str]:
    """A component's settings dataclass (a trainer's ``Args``: the keys of ``trainer.args``), with
    defaults and each field's ``help`` metadata, as ``list trainers NAME`` prints them."""
    import dataclasses

    args = getattr(target, "Args", None)
    if not (isinstance(args, type) and dataclasses.is_dataclass(args)):
        return []
    lines = ["    settings (trainer.args):"]
    for f in dataclasses.fields(args):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        help_text = f.metadata.get("help", "")
        lines.append(f"      {f.name}: {f.type} = {default}" + (f"  # {help_text}" if help_text else ""))
    return lines
