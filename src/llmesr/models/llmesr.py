"""LLM-ESR (Liu et al., NeurIPS 2024): dual-view modelling + retrieval-augmented self-distillation.

The method as implemented here is stated in ``shared/docs/llm-esr.md``; in short, for a history s:

1. Two item views: the frozen LLM table ``E_llm`` through an adapter (d -> d/2 -> h, no activation,
   as in the authors' code), and a trainable ID table ``E_id`` initialised from PCA(E_llm).
2. Each view is embedded by the backbone (scale, shared positions, dropout), then fused by
   cross-attention in both directions (``X_id' = X_id + CrossAttn(q=X_sem, kv=X_id)`` and the
   mirror image; the residual is our choice, see ``hidden_states``), masked like the backbone:
   both ways only for a ``bidirectional`` one (BERT4Rec), causal otherwise (SASRec, GRU4Rec: no
   position ever sees a later item; SASRec's ``causal: false`` parity switch leaves it causal).
3. One backbone encoder (shared weights) encodes both; the user is ``[H_id ; H_sem]`` at the last
   position and item j is ``[E_id[j] ; Adapter(E_llm[j])]`` (logit-level fusion).
4. Self-distillation: the mean representation of N retrieved similar users (detached) is the
   teacher of the user's own, ``L = L_rec + alpha * MSE``. The teacher is either recomputed every
   step (``teacher: exact``, the paper) or read from a table of all users' representations that is
   refreshed every ``teacher_refresh`` epochs (``teacher: cached``, much cheaper).

Every ablation of the paper is a config switch. The backbone is any registered backbone, built by
the registry as for every wrapper: its ``embed``, ``encode``, ``output`` and training objective are
reused, never copied, and nothing here asks which backbone it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmesr.data.sequences import Sequences
from llmesr.models.base import SequentialRecommender, WrapperConfig
from llmesr.models.transformer import attend, attention_mask
from llmesr.models.wrapper import BackboneBuilder, BackboneWrapper
from llmesr.semantic.artifacts import SemanticArtifacts


@dataclass
class LLMESRConfig(WrapperConfig):
    semantic_dim: int = field(default=384, metadata={"derived": True})  # set from the artifacts
    cross_heads: int = 2
    # paper ablations
    use_collaborative: bool = True
    use_semantic: bool = True
    cross_attention: bool = True
    shared_encoder: bool = True
    adapter_layers: int = 2
    id_init: str = "pca"  # pca | random
    freeze_semantic: bool = True
    # retrieval-augmented self-distillation
    distill_weight: float = 0.1  # alpha; 0 switches distillation off
    distill_users: int = 10  # N
    distill_loss: str = "mse"  # mse | contrastive
    teacher: str = "cached"  # cached | exact
    teacher_refresh: int = 1  # epochs between refreshes of the cached teacher table
    distill_temperature: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.use_collaborative or self.use_semantic):
            raise ValueError("at least one of use_collaborative / use_semantic must be on")
        checks = {
            "id_init": ("pca", "random"),
            "distill_loss": ("mse", "contrastive"),
            "teacher": ("cached", "exact"),
        }
        for key, allowed in checks.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.adapter_layers not in (1, 2):
            raise ValueError("adapter_layers must be 1 or 2")
        if self.cross_heads < 1 or self.hidden_size % self.cross_heads:
            raise ValueError(f"cross_heads ({self.cross_heads}) must divide hidden_size ({self.hidden_size})")
        if self.distill_weight < 0 or self.distill_temperature <= 0:
            raise ValueError("distill_weight must be >= 0 and distill_temperature > 0")
        if self.distill_users < 1 or self.teacher_refresh < 1:
            raise ValueError("distill_users and teacher_refresh must be >= 1")


class CrossAttention(nn.Module):
    """Multi-head attention of one view's sequence (query) over the other's (key/value)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q, self.kv, self.out = (
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, 2 * hidden),
            nn.Linear(hidden, hidden),
        )

    def forward(self, query: torch.Tensor, source: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, length, h = query.shape
        q = self.q(query).view(b, length, self.heads, h // self.heads).transpose(1, 2)
        k, v = self.kv(source).view(b, length, 2, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        y = attend(q, k, v, allowed, self.dropout, self.training)
        return self.out(y.transpose(1, 2).reshape(b, length, h))


class LinearAdapter(nn.Sequential):
    """Stacked linear layers with no activation (as in the authors' code), applied as one folded
    matrix: ``x @ (W1 W2) + b``. The composition is computed once per call on the small weights, so
    each looked-up row costs one d x h product instead of d x d/2 + d/2 x h (3.5x fewer FLOPs on the
    hottest path of a step). Gradients reach both layers through the fold; parameter names are those
    of the plain ``nn.Sequential``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self[0].weight, self[0].bias  # (out, in), (out,)
        for layer in list(self)[1:]:
            weight, bias = layer.weight @ weight, layer.weight @ bias + layer.bias
        return F.linear(x, weight, bias)


class LLMESR(BackboneWrapper):
    config: LLMESRConfig
    display_name = "LLM-ESR"
    needs_semantic = True
    cold_start_items = True  # the semantic view scores a new item from its text embedding alone

    @classmethod
    def similar_users_needed(cls, config: LLMESRConfig) -> int:
        return config.distill_users

    @classmethod
    def for_training(
        cls,
        config: LLMESRConfig,
        train: Sequences,
        artifacts: SemanticArtifacts | None,
        build_backbone: BackboneBuilder | None = None,
    ) -> LLMESR:
        config = replace(config, semantic_dim=artifacts.semantic_dim)
        model = cls(config, artifacts.item_embeddings, artifacts.item_pca, build_backbone=build_backbone)
        model.set_retrieval(artifacts.similar_users, train)
        return model

    def __init__(
        self,
        config: LLMESRConfig,
        semantic_table: np.ndarray | None = None,
        pca_table: np.ndarray | None = None,
        *,
        build_backbone: BackboneBuilder | None = None,
    ) -> None:
        build_backbone = self.builder(build_backbone)
        super().__init__(config, build_backbone)
        cfg, h = config, config.hidden_size
        n_rows = cfg.n_items + 1 + self.backbone.extra_item_rows  # + e.g. BERT4Rec's mask token
        self.backbone.item_emb = None  # the views below replace the backbone's own item table
        self.sem_backbone = self.backbone if cfg.shared_encoder else build_backbone(cfg)
        if not cfg.shared_encoder:
            self.sem_backbone.item_emb = None
        self.item_emb = nn.Embedding(n_rows, h, padding_idx=0)  # the collaborative (ID) view
        llm = torch.zeros(n_rows, cfg.semantic_dim)
        if semantic_table is not None:
            llm[: cfg.n_items + 1] = torch.as_tensor(semantic_table, dtype=torch.float32)
        self.semantic = nn.Parameter(llm, requires_grad=not cfg.freeze_semantic)
        d = cfg.semantic_dim
        layers = (
            [nn.Linear(d, d // 2), nn.Linear(d // 2, h)] if cfg.adapter_layers == 2 else [nn.Linear(d, h)]
        )
        self.adapter = LinearAdapter(*layers)
        # Rows after the items (a mask token) have no text: one learned semantic vector stands in.
        self.sem_mask = nn.Parameter(torch.zeros(h)) if n_rows > cfg.n_items + 1 else None
        self.cross_id = CrossAttention(h, cfg.cross_heads, cfg.attn_dropout)
        self.cross_sem = CrossAttention(h, cfg.cross_heads, cfg.attn_dropout)
        self.init_weights()
        if cfg.id_init == "pca" and pca_table is not None:
            with torch.no_grad():
                self.item_emb.weight[: cfg.n_items + 1] = torch.as_tensor(pca_table, dtype=torch.float32)
                self.item_emb.weight[0].zero_()
        self.similar: torch.Tensor | None = None  # (U, K) similar users, set for training
        self.train_histories: Sequences | None = None
        self.teacher_table: torch.Tensor | None = None

    # ---- views ------------------------------------------------------------------------------
    def semantic_items(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.adapter(self.semantic[ids])
        if self.sem_mask is not None:
            out = torch.where((ids > self.config.n_items).unsqueeze(-1), self.sem_mask, out)
        return out

    def hidden_states(self, seq: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        mask = seq > 0
        parts = []
        x_id = self.backbone.embed(self.item_emb(seq), mask) if cfg.use_collaborative else None
        x_sem = self.sem_backbone.embed(self.semantic_items(seq), mask) if cfg.use_semantic else None
        if cfg.cross_attention and x_id is not None and x_sem is not None:
            allowed = attention_mask(mask, causal=not self.backbone.bidirectional)
            # Residual on the stream being rebuilt: each view keeps its own signal and adds the
            # other-view-guided mixture. Without it, a position's own item (or BERT4Rec's mask
            # token) survives only if attention happens to focus on itself; masked-item training
            # then barely learns (tested: tiny-data overfit drops from ~100% to 30%).
            x_id, x_sem = (
                x_id + self.cross_id(x_sem, x_id, allowed),
                x_sem + self.cross_sem(x_id, x_sem, allowed),
            )
        if x_id is not None and x_sem is not None and cfg.shared_encoder:
            # One encoder call on both views stacked along the batch: same weights, same result,
            # half the per-call overhead (which dominates the many short, bucketed batches).
            both = self.backbone.encode(torch.cat([x_id, x_sem]), torch.cat([mask, mask]))
            return torch.cat(self.backbone.output(both).chunk(2), dim=-1)
        if x_id is not None:
            parts.append(self.backbone.output(self.backbone.encode(x_id, mask)))
        if x_sem is not None:
            parts.append(self.backbone.output(self.sem_backbone.encode(x_sem, mask)))
        return torch.cat(parts, dim=-1)

    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        """Identity: :meth:`hidden_states` already applies the backbone's output to each view."""
        return hidden

    user_vectors = SequentialRecommender.user_vectors  # the fused states, not the backbone's own

    def item_table(self) -> torch.Tensor:
        ids = torch.arange(self.config.n_items + 1, device=self.semantic.device)
        parts = []
        if self.config.use_collaborative:
            parts.append(self.item_emb.weight[: self.config.n_items + 1])
        if self.config.use_semantic:
            parts.append(self.adapter(self.semantic[ids]))
        return torch.cat(parts, dim=-1)

    def item_vectors(self, ids: torch.Tensor | None) -> torch.Tensor:
        """Only the rows asked for go through the adapter: BCE-1 needs two rows per position, not
        the whole catalogue (computing the full table every step dominated the epoch time)."""
        if ids is None:
            return self.item_table()[1:]
        parts = []
        if self.config.use_collaborative:
            parts.append(self.item_emb(ids))
        if self.config.use_semantic:
            parts.append(self.adapter(self.semantic[ids]))
        return torch.cat(parts, dim=-1)

    # ---- training ---------------------------------------------------------------------------
    def set_retrieval(self, similar_users: np.ndarray, train: Sequences) -> None:
        """Similar-user lists (first N used) and the training prefixes the teacher encodes."""
        self.similar = torch.as_tensor(similar_users[:, : self.config.distill_users], dtype=torch.long)
        self.train_histories = train

    def user_repr(self, users: np.ndarray) -> torch.Tensor:
        """Representation of users from their training prefix (what the teacher averages)."""
        return self.user_vectors(self.eval_input(self.train_histories, users).to(self.semantic.device))

    @torch.no_grad()
    def start_epoch(self, epoch: int) -> None:
        cfg = self.config
        if cfg.distill_weight <= 0 or cfg.teacher != "cached" or self.similar is None:
            return
        if self.teacher_table is not None and epoch % cfg.teacher_refresh:
            return
        was_training = self.training
        self.eval()
        users = np.arange(len(self.train_histories))
        order = np.argsort(self.train_histories.lengths, kind="stable")
        table = torch.empty(len(users), self.item_table().shape[1], device=self.semantic.device)
        for start in range(0, len(order), 256):
            rows = order[start : start + 256]
            table[rows] = self.user_repr(rows)
        self.teacher_table = table
        self.train(was_training)

    def training_state(self) -> dict[str, torch.Tensor]:
        # The cached teacher is refreshed every ``teacher_refresh`` epochs: a run resumed between
        # two refreshes must keep the table it had, not rebuild one from later weights.
        return {} if self.teacher_table is None else {"teacher_table": self.teacher_table.detach().cpu()}

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        table = state.get("teacher_table")
        self.teacher_table = None if table is None else table.to(self.semantic.device)

    def teacher(self, users: np.ndarray) -> torch.Tensor:
        neighbours = self.similar[torch.as_tensor(users)]
        if self.config.teacher == "cached":
            return self.teacher_table[neighbours].mean(1)
        with torch.no_grad():  # the paper: encode the N neighbours with the current model
            reps = self.user_repr(neighbours.flatten().numpy())
            return reps.view(len(users), neighbours.shape[1], -1).mean(1)

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.config.distill_loss == "mse":
            return F.mse_loss(student, teacher)
        # Contrastive: each user's teacher is its positive, the other users' teachers negatives.
        logits = (
            F.normalize(student, dim=-1) @ F.normalize(teacher, dim=-1).T / self.config.distill_temperature
        )
        return F.cross_entropy(logits, torch.arange(len(student), device=logits.device))

    def loss(
        self, batch: torch.Tensor, generator: torch.Generator | None = None, users: np.ndarray | None = None
    ) -> torch.Tensor:
        cfg = self.config
        distill = cfg.distill_weight > 0 and users is not None and self.similar is not None
        # The recommendation loss is the backbone's own objective, on the fused encoder. The student
        # is the users' representation that comes with it: the last column of the same forward pass
        # for next-item backbones (as in the authors' code); masked-item ones hide items in that
        # pass, so the unmasked training prefix is encoded again, only when it is needed.
        rec, student = self.backbone.objective(self, batch, generator, want_user=distill)
        if not distill:
            return rec
        return rec + cfg.distill_weight * self.distill_loss(student, self.teacher(np.asarray(users)).detach())
