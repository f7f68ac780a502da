"""EnsRec (Collins et al., arXiv 2512.17820): an ID model and a text-only model, trained
independently with the same backbone, whose scores are fused at inference.

Members: the ID member is the plain backbone (``self.backbone``); the text member is a
:class:`~llmesr.models.textrec.TextRec` around a second backbone of the same kind (item vectors
``Linear(d_llm -> h)`` of the frozen text embeddings). They share no parameter.

Fusion: with member scores ``s_id`` and ``s_text`` (each member's own :meth:`score_all`, biases
included), the paper's fused score is ``F = alpha exp(s_id / tau) + (1 - alpha) exp(s_text / tau)``
(``ensrec_alpha`` the ID member's weight, ``ensrec_tau``; defaults 0.5 and 100). :meth:`score_all`
returns ``tau * log F`` instead: a strictly increasing function of ``F``, so every ranking is the
same, but computed stably (``logaddexp`` in float64, no overflow whatever tau) and in the members'
own units (alpha = 1 gives the ID member's scores back), then cast to the members' dtype. A -inf
score in both members (padding, excluded items) stays -inf. One weight suffices: scaling both
weights by a constant does not change a ranking.

Training, one of two ways:

* **Together** (no member runs): the loss is the sum of the members' own losses. Their parameters
  are disjoint and Adam is per-parameter, and the trainer's scaling of a batch's loss scales both
  alike (as it would in two runs), so each member follows the updates it would follow alone, except
  that (1) both see the same batches in the same order, (2) training stops at one point, selected
  on the *fused* validation score (``select_metric`` of :meth:`score_all`), not at each member's
  own best epoch, (3) initial weights, dropout masks, negatives and BERT4Rec's masks come from one
  random stream shared in turn (ID member first), so they are not those of two separate runs with
  the same seed, and (4) under ``precision: fp16`` one gradient scaler skips a step for both
  members when either overflows. The trainer clips no gradients.
* **From two finished runs** (``ensrec_id_run``: a run of the plain backbone; ``ensrec_text_run``:
  a ``textrec`` run): :meth:`finished_members` names them, the training layer loads and checks
  their best weights (same dataset, same member settings) and freezes them, and the run is
  evaluated without training. This is the paper's protocol: each member trained and selected alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from llmesr.data.sequences import Sequences
from llmesr.models.base import SequentialRecommender, WrapperConfig
from llmesr.models.textrec import TextRec, TextRecConfig
from llmesr.models.wrapper import BackboneBuilder, BackboneWrapper, members_objective
from llmesr.semantic.artifacts import SemanticArtifacts


@dataclass
class EnsRecConfig(WrapperConfig):
    semantic_dim: int = field(default=384, metadata={"derived": True})  # set from the artifacts
    ensrec_alpha: float = 0.5  # the ID member's weight; the text member's is 1 - alpha
    ensrec_tau: float = 100.0
    # Finished runs to take the members from (both or neither): the plain backbone, and textrec.
    # ``run``: a run folder, so reports group seeds by whether it is set, not by the path.
    ensrec_id_run: str | None = field(default=None, metadata={"names_run": True})
    ensrec_text_run: str | None = field(default=None, metadata={"names_run": True})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.ensrec_alpha <= 1.0:
            raise ValueError(f"ensrec_alpha must be in [0, 1], got {self.ensrec_alpha}")
        if not (math.isfinite(self.ensrec_tau) and self.ensrec_tau > 0):
            raise ValueError(f"ensrec_tau must be a finite number > 0, got {self.ensrec_tau}")
        if (self.ensrec_id_run is None) != (self.ensrec_text_run is None):
            raise ValueError(
                "ensrec_id_run and ensrec_text_run: give both (an ensemble of two finished runs) "
                "or neither (both members trained in this run)"
            )


def fuse_scores(id_scores: torch.Tensor, text_scores: torch.Tensor, alpha: float, tau: float) -> torch.Tensor:
    """``tau * log(alpha exp(s_id / tau) + (1 - alpha) exp(s_text / tau))``, elementwise, computed
    in float64 and returned in ``id_scores``' dtype; -inf where both are -inf."""
    a = id_scores.double() / tau + (math.log(alpha) if alpha > 0 else -math.inf)
    b = text_scores.double() / tau + (math.log1p(-alpha) if alpha < 1 else -math.inf)
    return (tau * torch.logaddexp(a, b)).to(id_scores.dtype)


class EnsRec(BackboneWrapper):
    config: EnsRecConfig
    display_name = "EnsRec"
    needs_semantic = True
    one_product_scores = False  # two products fused through exp: no inner-product index

    @classmethod
    def for_training(
        cls,
        config: EnsRecConfig,
        train: Sequences,
        artifacts: SemanticArtifacts | None,
        build_backbone: BackboneBuilder | None = None,
    ) -> EnsRec:
        config = replace(config, semantic_dim=artifacts.semantic_dim)
        return cls(config, artifacts.item_embeddings, build_backbone=build_backbone)

    def __init__(
        self,
        config: EnsRecConfig,
        text_table: np.ndarray | None = None,
        *,
        build_backbone: BackboneBuilder | None = None,
    ) -> None:
        super().__init__(config, build_backbone)  # self.backbone: the ID member
        text_config = TextRecConfig.from_dict(config.to_dict())
        self.text = TextRec(text_config, text_table, build_backbone=self.builder(build_backbone))

    def members(self) -> tuple[SequentialRecommender, SequentialRecommender]:
        """(ID member, text member)."""
        return self.backbone, self.text

    def finished_members(self) -> dict[str, tuple[str, SequentialRecommender]]:
        cfg = self.config
        if cfg.ensrec_id_run is None or cfg.ensrec_text_run is None:
            return {}
        return {
            "ensrec_id_run": (cfg.ensrec_id_run, self.backbone),
            "ensrec_text_run": (cfg.ensrec_text_run, self.text),
        }

    def fuse(self, id_scores: torch.Tensor, text_scores: torch.Tensor) -> torch.Tensor:
        return fuse_scores(id_scores, text_scores, self.config.ensrec_alpha, self.config.ensrec_tau)

    # ---- the two members side by side: states, users and items are [ID member ; text member] ----
    def hidden_states(self, seq: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.hidden_states(seq) for m in self.members()], dim=-1)

    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        halves = hidden.split(self.config.hidden_size, dim=-1)
        return torch.cat([m.output(x) for m, x in zip(self.members(), halves, strict=True)], dim=-1)

    user_vectors = SequentialRecommender.user_vectors  # both members' users, not the ID member's

    def item_table(self) -> torch.Tensor:
        return torch.cat([m.item_table() for m in self.members()], dim=-1)

    def item_vectors(self, ids: torch.Tensor | None) -> torch.Tensor:
        return torch.cat([m.item_vectors(ids) for m in self.members()], dim=-1)

    def item_bias(self) -> None:
        """None: each member's bias acts inside its own score (``fused_item_table`` carries both)."""
        return None

    # ---- scoring ----------------------------------------------------------------------------
    def score_factors(self, seq: torch.Tensor) -> None:
        """None: the fused score is not one product (evaluation scores whole rows instead)."""
        return None

    def score_all(self, seq: torch.Tensor) -> torch.Tensor:
        id_member, text_member = self.members()
        return self.fuse(id_member.score_all(seq), text_member.score_all(seq))

    @torch.no_grad()
    def fused_item_table(self) -> torch.Tensor:
        """(N + 1, 2 (h + 1)): the ID member's serving table, then the text member's."""
        return torch.cat([m.fused_item_table() for m in self.members()], dim=1)

    def serving_users(self, seq: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.serving_users(seq) for m in self.members()], dim=1)

    def serving_scores(self, users: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Each member's product with its own columns, fused: two matrix products."""
        k = self.config.hidden_size + 1
        return self.fuse(users[:, :k] @ table[:, :k].T, users[:, k:] @ table[:, k:].T)

    # ---- training: each member on its own objective -----------------------------------------
    def objective(
        self,
        model: SequentialRecommender,
        batch: torch.Tensor,
        generator: torch.Generator | None = None,
        want_user: bool = False,
        hidden: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The sum of the members' own objectives (the fusion is for inference only) and, when both
        members provide them, the users as [ID member ; text member]. EnsRec is no backbone for
        another model, so ``model`` must be itself and no states are taken."""
        return members_objective(self, self.members(), model, batch, generator, want_user, hidden)

    def loss(
        self, batch: torch.Tensor, generator: torch.Generator | None = None, users: np.ndarray | None = None
    ) -> torch.Tensor:
        return self.objective(self, batch, generator)[0]
