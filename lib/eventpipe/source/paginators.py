"""Page strategies: how to ask for the first page and the next one. Adding one never touches the client."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


class Paginator(ABC):
    """How to ask for the first page and the next one."""

    @abstractmethod
    def first(self) -> dict[str, Any]: ...

    @abstractmethod
    def next(self, params: dict[str, Any], body: dict[str, Any], n_items: int) -> dict[str, Any] | None: ...


@dataclass
class PageNumberPaginator(Paginator):
    """``?page=1&per_page=100`` ... until the body says ``"has_more": false``::

    {"items": [{...}, {...}], "has_more": true}
    """

    per_page: int = 100
    has_more_field: str = "has_more"

    def first(self) -> dict[str, Any]:
        return {"page": 1, "per_page": self.per_page}

    def next(self, params: dict[str, Any], body: dict[str, Any], n_items: int) -> dict[str, Any] | None:
        if not body[self.has_more_field]:
            return None
        return {**params, "page": params["page"] + 1}
