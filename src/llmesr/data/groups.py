"""Head / tail groups of users (by training-history length) and items (by training popularity).

Groups come from the training part of the data only, so that evaluation targets never decide
which group they fall into. An empty group is reported as empty (``count == 0`` and metrics
``None``), never as a score of zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmesr.data.sequences import Sequences

RULES = ("pareto", "threshold")

# Thresholds of the LLM-ESR authors' Beauty script; the tail is "value < threshold". On the 5-core
# Beauty split the item rule leaves the tail-item group (nearly) empty, which is why "pareto" is
# the default and why empty groups are reported as such.
PRESETS: dict[str, dict[str, object]] = {
    "pareto": {"user_rule": "pareto", "item_rule": "pareto"},
    "beauty_paper": {
        "user_rule": "threshold",
        "user_threshold": 9,
        "item_rule": "threshold",
        "item_threshold": 4,
    },
}


def named_groups(tail_user: np.ndarray, tail_item: np.ndarray) -> dict[str, np.ndarray]:
    """Per evaluated user, membership of each reported group, from whether the user is a tail
    user and whether the target is a tail item."""
    tail_user, tail_item = np.asarray(tail_user, dtype=bool), np.asarray(tail_item, dtype=bool)
    return {"tail_user": tail_user, "head_user": ~tail_user, "tail_item": tail_item, "head_item": ~tail_item}


@dataclass(frozen=True)
class HeadTailGroups:
    tail_user: np.ndarray  # bool, indexed by internal user id
    tail_item: np.ndarray  # bool, indexed by internal item id (row 0 unused)
    user_cut: float  # tail user iff training length < user_cut
    item_cut: float  # tail item iff training popularity < item_cut
    rule: str

    def tails(self, users: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tail user?, tail-item target?) for each evaluated user / target pair."""
        return self.tail_user[users], self.tail_item[targets]

    def describe(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "tail_user_if_train_length_below": self.user_cut,
            "tail_item_if_train_popularity_below": self.item_cut,
            "tail_user_fraction": float(self.tail_user.mean()) if len(self.tail_user) else 0.0,
            "tail_item_fraction": float(self.tail_item[1:].mean()) if len(self.tail_item) > 1 else 0.0,
        }


def item_popularity(train: Sequences, n_items: int) -> np.ndarray:
    """Training interaction count of every item id ``0..n_items`` (padding counts 0)."""
    pop = np.bincount(train.items, minlength=n_items + 1)
    pop[0] = 0
    return pop


def pareto_cut(values: np.ndarray, head_share: float = 0.2) -> float:
    """Smallest cut such that at most ``head_share`` of the values are >= it (the "20%" head).

    With ties at the boundary the head is a little smaller than 20% rather than splitting equal
    values between the two groups.
    """
    if len(values) == 0:
        return 0.0
    ordered = np.sort(values)[::-1]
    k = int(np.floor(head_share * len(values)))  # largest admissible head size
    if k == 0:
        return float(ordered[0]) + 1
    boundary = ordered[k]  # first value that must fall in the tail
    return float(boundary) + 1


def head_tail_groups(
    train: Sequences,
    n_items: int,
    *,
    user_rule: str = "pareto",
    item_rule: str = "pareto",
    user_threshold: float | None = None,
    item_threshold: float | None = None,
    head_share: float = 0.2,
) -> HeadTailGroups:
    lengths = train.lengths
    pop = item_popularity(train, n_items)
    user_cut = _cut(lengths, user_rule, user_threshold, head_share, "user")
    item_cut = _cut(pop[1:], item_rule, item_threshold, head_share, "item")
    rule = "pareto" if user_rule == item_rule == "pareto" else f"user:{user_rule},item:{item_rule}"
    return HeadTailGroups(lengths < user_cut, pop < item_cut, user_cut, item_cut, rule)


def groups_from_preset(
    train: Sequences,
    n_items: int,
    preset: str,
    user_threshold: float | None = None,
    item_threshold: float | None = None,
) -> HeadTailGroups:
    """Groups by a named preset, or ``"threshold"`` with explicit cuts for users and items."""
    if preset == "threshold":
        if user_threshold is None or item_threshold is None:
            raise ValueError("groups 'threshold' needs tail_user_threshold and tail_item_threshold")
        return head_tail_groups(
            train,
            n_items,
            user_rule="threshold",
            item_rule="threshold",
            user_threshold=user_threshold,
            item_threshold=item_threshold,
        )
    if preset not in PRESETS:
        raise ValueError(
            f"unknown head/tail preset {preset!r}: choose one of {', '.join([*PRESETS, 'threshold'])}"
        )
    return head_tail_groups(train, n_items, **PRESETS[preset])  # type: ignore[arg-type]


def _cut(values: np.ndarray, rule: str, threshold: float | None, head_share: float, what: str) -> float:
    if rule == "pareto":
        return pareto_cut(values, head_share)
    if rule == "threshold":
        if threshold is None:
            raise ValueError(f"{what}_rule 'threshold' needs {what}_threshold")
        return float(threshold)
    raise ValueError(f"unknown {what}_rule {rule!r}: choose one of {', '.join(RULES)}")
