"""Registry: the one plugin mechanism of vlrl.

There are exactly four registries (ENCODERS, PROJECTORS, LOSSES, REWARDS), each created next to the
`typing.Protocol` its builders honour. vlrl's own components register with a decorator::

    @ENCODERS.register("open_clip")
    def build_open_clip(cfg: EncoderConfig) -> VisionEncoder: ...

Third-party packages register through an entry-point group (``vlrl.encoders``, ``vlrl.projectors``,
``vlrl.losses``, ``vlrl.rewards``) in their own ``pyproject.toml``::

    [project.entry-points."vlrl.encoders"]
    my_vit = "my_pkg.encoder:build"

Entry points are loaded lazily, on the first lookup of a key that is not registered in-process, so
importing vlrl never imports plugins. Dispatch is only ever on an explicit ``name``.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T", bound=Callable[..., Any])


class RegistryError(KeyError):
    """An unknown or duplicate key. The message lists what is known."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class Registry(Generic[T]):
    """A name -> builder mapping with decorator registration and entry-point plugins.

    Args:
        kind: human name used in messages ("encoder").
        group: entry-point group scanned on a miss ("vlrl.encoders").
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._builders: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self._entry_points_loaded = False

    def register(self, name: str, *, origin: str = "vlrl") -> Callable[[T], T]:
        """Decorator: register ``fn`` under ``name``. A second registration of a name is an error."""

        def deco(fn: T) -> T:
            self.add(name, fn, origin=origin)
            return fn

        return deco

    def add(self, name: str, fn: T, *, origin: str = "vlrl") -> None:
        if name in self._builders:
            raise RegistryError(
                f"{self.kind} '{name}' is already registered (by {self._origin[name]}); "
                f"pick another name or remove the duplicate registration"
            )
        self._builders[name] = fn
        self._origin[name] = origin

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in metadata.entry_points(group=self.group):
            if ep.name in self._builders:
                continue
            try:
                fn = ep.load()
            except Exception as e:  # a broken plugin must not hide the others
                raise RegistryError(
                    f"the {self.kind} plugin '{ep.name}' ({ep.value}, entry point group "
                    f"'{self.group}') failed to import: {type(e).__name__}: {e}"
                ) from e
            dist = getattr(ep, "dist", None)
            self.add(ep.name, fn, origin=f"plugin {dist.name if dist else ep.value}")

    def get(self, name: str) -> T:
        """Return the builder for ``name``; on a miss load entry points, then fail listing known keys."""
        if name not in self._builders:
            self._load_entry_points()
        if name not in self._builders:
            known = ", ".join(sorted(self._builders)) or "(none)"
            raise RegistryError(
                f"unknown {self.kind} '{name}'. Known {self.kind}s: {known}. Third-party "
                f"{self.kind}s register through the entry-point group '{self.group}'."
            )
        return self._builders[name]

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)

    def keys(self) -> list[str]:
        """All keys, entry-point plugins included."""
        self._load_entry_points()
        return sorted(self._builders)

    def origin(self, name: str) -> str:
        self.get(name)
        return self._origin[name]

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._builders

    def __repr__(self) -> str:
        return f"Registry({self.kind}, keys={sorted(self._builders)})"
