"""Tiny name -> factory registries, so new encoders, surrogates, acquisitions and benchmarks
plug in by registering themselves instead of growing if/else chains on strings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from llmbo.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """A case-insensitive mapping from names to factories of one kind of object."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@SURROGATES.register("lora")``."""

        def deco(obj: T) -> T:
            key = name.lower()
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered.")
            self._items[key] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name.lower()]
        except KeyError:
            raise InputError(
                f"Unknown {self.kind} {name!r}; choose one of {sorted(self._items)}."
            ) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)
