"""``router``: each sample's reward function is chosen by its ``domain`` (an explicit field).

    reward: {name: router, kwargs: {routes: {counting: {name: math}, captioning: {name: critic,
             kwargs: {model: runs/critic}}}, default: {name: math}}}
"""

from __future__ import annotations

from typing import Any

from vlrl.rewards.base import REWARDS, RewardResult


class RewardRouter:
    def __init__(self, routes: dict[str, dict] | None = None, default: dict | None = None) -> None:
        self.routes = {d: REWARDS.build(r["name"], **r.get("kwargs", {})) for d, r in (routes or {}).items()}
        self.default = REWARDS.build(default["name"], **default.get("kwargs", {})) if default else None

    def __call__(self, response: str, sample: Any) -> RewardResult:
        fn = self.routes.get(sample.domain, self.default)
        if fn is None:
            known = ", ".join(sorted(self.routes))
            return RewardResult(0.0, error=f"sample '{sample.id}': no reward route for domain '{sample.domain}' "
                                           f"(routes: {known}; set a default)")
        return fn(response, sample)


@REWARDS.register("router")
def build_router(**kwargs: Any) -> RewardRouter:
    return RewardRouter(**kwargs)
