"""ESR-Fuse (ours): LLM-ESR and LLMInit, each on its own, fused at inference on per-user
standardised scores.

Why. With equal tuning on Beauty, LLM-ESR and LLMInit tie overall under full ranking, but they win
on different users and items: LLMInit on tail items, LLM-ESR on head items (README, "Tuned against
untuned"). EnsRec (Collins et al.) shows that independently trained members whose hits overlap
little add up at inference; here the two members are the strongest two of the table instead of an
ID model and a text-only one. Selected on validation only (README, "A method of ours").

Members: ``self.esr`` is an :class:`~llmesr.models.llmesr.LLMESR` and ``self.init`` an
:class:`~llmesr.models.llminit.LLMInit`, around the same backbone kind. They share no parameter.

Fusion: for a user with member scores ``s_m`` over the catalogue (items 1..N, biases included),
``z_m = (s_m - mean_m) / sd_m`` with the mean and standard deviation taken over the N items for
that user, and the fused score is ``w z_esr + (1 - w) z_init`` (``fusion_weight`` = w). Each
member's scores are one product ``[u, 1] . [v, b]``, so its mean is ``[u, 1] . mean(T)`` and its
variance ``[u, 1] C [u, 1]^T`` with ``T`` the member's serving table and ``C`` its covariance over
the N item rows: exact, with no catalogue-wide score row. The fused score is therefore one product
too: users ``[w / sd_e [u_e, 1], (1 - w) / sd_i [u_i, 1], -sum w mean / sd]`` against items
``[T_e, T_i, 1]``, which is what :meth:`user_vectors` and :meth:`item_table` return. Evaluation
ranks it in column blocks and a bundle serves it from one table, like any one-product model.
Standardising puts the two members in the same units whatever their score scales; the plain sum
and EnsRec's ``exp`` fusion were measured beside it on validation.

Training, one of two ways (as EnsRec):

* **From two finished runs** (``fusion_esr_run``, ``fusion_init_run``): the training layer reads
  each run's model settings into ``esr_member`` / ``init_member`` (:meth:`member_runs`,
  :meth:`with_member_settings`), so each member keeps the settings it was trained and tuned with
  (its own dropout, LLM-ESR's alpha and N); then it loads and checks their best weights and
  freezes them, and the run is evaluated without training.
* **Together** (no member runs): both members are built from this run's settings, in one random
  stream (LLMInit first), and the loss is the sum of their own losses (LLM-ESR's
  self-distillation included); the run is selected on the fused validation score.

Differences from running the two methods apart: none in the finished-run mode; in the together
mode, the shared batches, stream and stopping point (as for EnsRec).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from llmesr.data.sequences import Sequences
from llmesr.models.base import SequentialRecommender
from llmesr.models.llmesr import LLMESR, LLMESRConfig
from llmesr.models.llminit import LLMInit, LLMInitConfig
from llmesr.models.wrapper import BackboneBuilder, BackboneWrapper, members_objective
from llmesr.semantic.artifacts import SemanticArtifacts

# A member whose scores barely vary for a user (an untrained one) is divided by this at least.
_MIN_SD = 1e-6


@dataclass
class ESRFuseConfig(LLMESRConfig):
    fusion_weight: float = 0.5  # the LLM-ESR member's weight; LLMInit's is 1 - fusion_weight
    # Finished runs to take the members from (both or neither): an llmesr run and an llminit run.
    fusion_esr_run: str | None = field(default=None, metadata={"names_run": True})
    fusion_init_run: str | None = field(default=None, metadata={"names_run": True})
    # The member runs' own model settings, read by the training layer (None: this run's settings).
    esr_member: dict | None = field(default=None, metadata={"derived": True})
    init_member: dict | None = field(default=None, metadata={"derived": True})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise ValueError(f"fusion_weight must be in [0, 1], got {self.fusion_weight}")
        if (self.fusion_esr_run is None) != (self.fusion_init_run is None):
            raise ValueError(
                "fusion_esr_run and fusion_init_run: give both (a fusion of two finished runs) or "
                "neither (both members trained in this run)"
            )

    def member_configs(self) -> tuple[LLMESRConfig, LLMInitConfig]:
        """(LLM-ESR member, LLMInit member) configs: the runs' own settings where they were read,
        else this run's."""
        own = self.to_dict()
        esr = LLMESRConfig.from_dict({**own, **(self.esr_member or {})})
        init = LLMInitConfig.from_dict({**own, **(self.init_member or {})})
        return esr, init


def standardising_factors(users: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, sd), each (B,), of ``users @ table[1:].T`` per row, from the table's mean and
    covariance over its item rows (row 0, padding, left out); computed in float64."""
    rows = table[1:].double()
    centre = rows.mean(0)
    cov = (rows - centre).T @ (rows - centre) / len(rows)
    u = users.double()
    mean = u @ centre
    var = ((u @ cov) * u).sum(1).clamp(min=0)
    return mean, var.sqrt().clamp(min=_MIN_SD)


class ESRFuse(BackboneWrapper):
    config: ESRFuseConfig
    display_name = "ESR-Fuse"
    needs_semantic = True

    @classmethod
    def similar_users_needed(cls, config: ESRFuseConfig) -> int:
        return config.member_configs()[0].distill_users

    @classmethod
    def member_runs(cls, config: ESRFuseConfig) -> dict[str, tuple[str, type[SequentialRecommender]]]:
        """setting -> (finished run, the model class it must have trained); none when together."""
        if config.fusion_esr_run is None:
            return {}
        return {
            "fusion_esr_run": (config.fusion_esr_run, LLMESR),
            "fusion_init_run": (config.fusion_init_run, LLMInit),
        }

    @classmethod
    def with_member_settings(cls, config: ESRFuseConfig, stored: dict[str, dict[str, Any]]) -> ESRFuseConfig:
        """``config`` with the member runs' model settings (``stored``, by setting). Both members
        read this run's semantic artifacts, so their width and item count must be this run's."""
        esr, init = stored["fusion_esr_run"], stored["fusion_init_run"]
        for name, values in (("fusion_esr_run", esr), ("fusion_init_run", init)):
            for key in ("hidden_size", "n_items", "backbone"):
                if values.get(key) != getattr(config, key):
                    raise ValueError(
                        f"{name}: that run has {key} {values.get(key)!r}, this run {getattr(config, key)!r}"
                    )
        return replace(config, esr_member=esr, init_member=init)

    @classmethod
    def for_training(
        cls,
        config: ESRFuseConfig,
        train: Sequences,
        artifacts: SemanticArtifacts | None,
        build_backbone: BackboneBuilder | None = None,
    ) -> ESRFuse:
        config = replace(config, semantic_dim=artifacts.semantic_dim)
        if config.esr_member is not None:
            config = replace(config, esr_member={**config.esr_member, "semantic_dim": artifacts.semantic_dim})
        model = cls(config, artifacts.item_embeddings, artifacts.item_pca, build_backbone=build_backbone)
        model.esr.set_retrieval(artifacts.similar_users, train)
        return model

    def __init__(
        self,
        config: ESRFuseConfig,
        semantic_table: np.ndarray | None = None,
        pca_table: np.ndarray | None = None,
        *,
        build_backbone: BackboneBuilder | None = None,
    ) -> None:
        build = self.builder(build_backbone)
        # The base class's tables are made and dropped as every wrapper's are (same RNG draws).
        SequentialRecommender.__init__(self, config, n_item_rows=config.n_items + 1)
        self.item_emb = None
        esr_config, init_config = config.member_configs()
        self.init = LLMInit(init_config, pca_table, build_backbone=build)
        self.esr = LLMESR(esr_config, semantic_table, pca_table, build_backbone=build)

    def members(self) -> tuple[LLMESR, LLMInit]:
        return self.esr, self.init

    def finished_members(self) -> dict[str, tuple[str, SequentialRecommender]]:
        cfg = self.config
        if cfg.fusion_esr_run is None:
            return {}
        return {
            "fusion_esr_run": (cfg.fusion_esr_run, self.esr),
            "fusion_init_run": (cfg.fusion_init_run, self.init),
        }

    # ---- inputs and constants: both members wrap the same backbone kind -----------------------
    @property
    def backbone(self) -> SequentialRecommender:  # type: ignore[override]
        """The LLMInit member's backbone: BackboneWrapper's hooks (inputs, extra item rows,
        bidirectional) read it, and both members' backbones are of this kind."""
        return self.init.backbone

    # ---- scoring: one product of fused users and fused items ---------------------------------
    def hidden_states(self, seq: torch.Tensor) -> torch.Tensor:
        """Each member's output-space states side by side (LLM-ESR's already are; LLMInit's go
        through its output), for callers that look at positions; scoring uses :meth:`user_vectors`."""
        return torch.cat(
            [self.esr.hidden_states(seq), self.init.output(self.init.hidden_states(seq))], dim=-1
        )

    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        """Identity: :meth:`hidden_states` already applies each member's output."""
        return hidden

    def item_table(self) -> torch.Tensor:
        """(N + 1, (d_esr + 1) + (d_init + 1) + 1): each member's serving table, then a ones column
        (for the users' mean terms)."""
        tables = [self._serving_table(m) for m in self.members()]
        ones = torch.ones(len(tables[0]), 1, device=tables[0].device, dtype=tables[0].dtype)
        return torch.cat([*tables, ones], dim=1)

    @staticmethod
    def _serving_table(member: SequentialRecommender) -> torch.Tensor:
        table, bias = member.item_table(), member.item_bias()
        bias = torch.zeros(len(table), device=table.device) if bias is None else bias[: len(table)]
        return torch.cat([table, bias.unsqueeze(1).to(table.dtype)], dim=1)

    item_vectors = SequentialRecommender.item_vectors  # rows of the fused table, not a backbone's

    def item_bias(self) -> None:
        """None: each member's bias is a column of :meth:`item_table`."""
        return None

    def user_vectors(self, seq: torch.Tensor) -> torch.Tensor:
        """The fused users: each member's ``[u, 1]`` times its weight over its per-user sd, then
        minus the weighted standardised means (so that the product is the fused z-score)."""
        parts, shift = [], 0.0
        for member, weight in zip(self.members(), self.weights(), strict=True):
            users = member.serving_users(seq)
            mean, sd = standardising_factors(users, self._serving_table(member))
            scale = (weight / sd).to(users.dtype).unsqueeze(1)
            parts.append(users * scale)
            shift = shift - weight * mean / sd
        return torch.cat([*parts, torch.as_tensor(shift).to(parts[0].dtype).unsqueeze(1)], dim=1)

    def weights(self) -> tuple[float, float]:
        w = self.config.fusion_weight
        return w, 1.0 - w

    # ---- training: each member on its own loss -------------------------------------------------
    def objective(
        self,
        model: SequentialRecommender,
        batch: torch.Tensor,
        generator: torch.Generator | None = None,
        want_user: bool = False,
        hidden: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The sum of the members' own objectives and, when both give them, their users side by
        side. ESR-Fuse wraps no other model, so ``model`` must be itself and no states are taken."""
        return members_objective(self, self.members(), model, batch, generator, want_user, hidden)

    def loss(
        self, batch: torch.Tensor, generator: torch.Generator | None = None, users: np.ndarray | None = None
    ) -> torch.Tensor:
        return self.esr.loss(batch, generator, users=users) + self.init.loss(batch, generator)

    def start_epoch(self, epoch: int) -> None:
        for m in self.members():
            m.start_epoch(epoch)

    def end_epoch(self, epoch: int) -> None:
        for m in self.members():
            m.end_epoch(epoch)

    def training_state(self) -> dict[str, torch.Tensor]:
        return self.esr.training_state()

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        self.esr.load_training_state(state)
