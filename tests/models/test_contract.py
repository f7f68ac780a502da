"""One contract, every model: the behaviour any sequential recommender in llmesr must have.

:class:`RecommenderBaseTestMixin` holds every promise of the model interface once, behind one hook
(:meth:`~RecommenderBaseTestMixin.make`). The test classes are generated from the registry: one per
registered model and backbone it can wrap (and per variant of a model, e.g. RLMRec's two), so a new
model or backbone gets the whole contract by being registered (see test_toy_backbone.py).
"""

from __future__ import annotations

import numpy as np
import torch

from conftest import patterned_rows
from llmesr.data.sequences import Sequences
from llmesr.evaluation import exclude_items, history_pairs, pessimistic_rank
from llmesr.models import MODELS, build_model, for_training, model_config
from llmesr.ranking import rank_in_blocks
from llmesr.semantic.artifacts import SemanticArtifacts

N_ITEMS, N_USERS, SEM_DIM = 20, 60, 24
BASE_SETTINGS = {"max_len": 12, "hidden_size": 32, "dropout": 0.1, "attn_dropout": 0.1}
# A short run of the trainer on the patterned data (end-to-end tests of a model's own file).
TRAINER_SETTINGS = {
    "max_len": 10,
    "hidden_size": 16,
    "batch_size": 16,
    "epochs": 2,
    "progress": False,
    "eval_batch_size": 32,
    "sampled_negatives": 5,
}
# Per model: the variants that get a contract of their own, and settings every contract run uses.
VARIANTS: dict[str, list[dict]] = {"rlmrec": [{"rlmrec_variant": "con"}, {"rlmrec_variant": "gen"}]}
# Every item of the tiny data occurs more than 5 times: the Pareto cut gives CITIES a tail.
MODEL_SETTINGS: dict[str, dict] = {"cities": {"cities_tail_threshold": 0}, "rlmrec": {"rlmrec_weight": 0.1}}
# Settings a model cannot be built without, in every test that builds it: LLMEmb aligns with a
# finished run's item table, which make_model hands it as the trainer would (a synthetic one).
REQUIRED_SETTINGS: dict[str, dict] = {"llmemb": {"align_from": "synthetic-reference-run"}}
# AlphaFuse keeps hidden_size directions of the text vectors: they must be wider than the model.
SEMANTIC_DIMS: dict[str, int] = {"alphafuse": 48}


def synthetic_artifacts(
    n_items: int = N_ITEMS, n_users: int = N_USERS, hidden: int = 32, seed: int = 0, dim: int = SEM_DIM
) -> SemanticArtifacts:
    """Small random semantic tables of the semantic step's shapes (row 0 of item tables: padding)."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items + 1, dim)).astype(np.float32)
    pca = (rng.normal(size=(n_items + 1, hidden)) * 0.05).astype(np.float32)
    items[0] = pca[0] = 0
    users = rng.normal(size=(n_users, dim)).astype(np.float32)
    similar = np.array([[(u + k) % n_users for k in range(1, 6)] for u in range(n_users)])
    return SemanticArtifacts(items, pca, users, similar)


def synthetic_reference(n_items: int, hidden: int, seed: int = 0) -> np.ndarray:
    """A trained run's item table as ``reference_run`` models read it: (N + 1, h), row 0 padding."""
    table = (np.random.default_rng(seed + 1).normal(size=(n_items + 1, hidden)) * 0.1).astype(np.float32)
    table[0] = 0
    return table


def make_model(
    name: str,
    backbone: str | None = None,
    n_items: int = N_ITEMS,
    seed: int = 0,
    train: Sequences | None = None,
    **settings,
) -> torch.nn.Module:
    """Model ``name`` (around ``backbone``) as the trainer builds it, on patterned training data
    and, when it needs them, synthetic semantic artifacts."""
    torch.manual_seed(seed)
    values = {"n_items": n_items, **BASE_SETTINGS, **REQUIRED_SETTINGS.get(name, {}), **settings}
    if backbone is not None:
        values["backbone"] = backbone
    config = model_config(name, values)
    train = train if train is not None else Sequences.from_lists(patterned_rows(N_USERS, n_items))
    art = None
    if MODELS[name][0].needs_semantic:
        users, dim = max(len(train), N_USERS), SEMANTIC_DIMS.get(name, SEM_DIM)
        art = synthetic_artifacts(n_items, users, config.hidden_size, seed, dim)
    model = for_training(name, config, train, art)
    if model.reference_run(model.config):
        model.set_reference_table(synthetic_reference(n_items, model.config.hidden_size, seed))
    return model


def train_steps(
    model, train: Sequences, steps: int, seed: int = 0, lr: float = 5e-3, users: bool = False
) -> list[float]:
    """``steps`` full-batch Adam steps; ``users``: hand the loss the batch's user ids."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    rows = np.arange(len(train))
    losses = []
    model.train()
    for _ in range(steps):
        loss = model.loss(model.train_input(train, rows), gen, rows if users else None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def scores_of(model, rows: list[list[int]]) -> torch.Tensor:
    with torch.no_grad():
        return model.score_all(model.eval_input(Sequences.from_lists(rows), np.arange(len(rows))))


class RecommenderBaseTestMixin:
    """Every promise of the model interface; a test class says only which model it builds."""

    name: str
    backbone: str | None = None
    settings: dict = {}
    overfit_steps = 150
    overfit_lr = 1e-2
    overfit_settings: dict = {}
    overfit_accuracy = 0.9

    def make(self, **settings) -> torch.nn.Module:
        """The one hook: this class's model, built as the trainer builds it."""
        return make_model(self.name, self.backbone, **{**self.settings, **settings})

    def test_padding_column_scores_minus_inf(self):
        scores = scores_of(self.make().eval(), [[1, 2, 3], [4]])
        assert scores.shape == (2, N_ITEMS + 1)
        assert torch.isneginf(scores[:, 0]).all()
        assert torch.isfinite(scores[:, 1:]).all()

    def test_scores_do_not_depend_on_batch_padding(self):
        """A short history scores the same alone and next to a long one (more left padding)."""
        model = self.make().eval()
        alone = scores_of(model, [[3, 4, 5]])
        together = scores_of(model, [[3, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]])[:1]
        torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-5)

    def test_every_loss_trains(self):
        train = Sequences.from_lists(patterned_rows(20, N_ITEMS))
        for loss in ("bce", "ce", "sampled_ce"):
            model = self.make(loss=loss, negatives=3)
            model.start_epoch(0)
            losses = train_steps(model, train, 3, users=True)
            assert all(np.isfinite(losses)), loss
            assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())

    def test_overfits_a_tiny_deterministic_dataset(self):
        """Every user's next item is a function of the current one: a working model learns it."""
        rows = patterned_rows(N_USERS, N_ITEMS)
        model = self.make(loss="ce", dropout=0.0, attn_dropout=0.0, **self.overfit_settings)
        train_steps(model, Sequences.from_lists(rows), self.overfit_steps, lr=self.overfit_lr)
        pred = scores_of(model.eval(), [r[:-1] for r in rows]).argmax(1).numpy()
        accuracy = (pred == np.array([r[-1] for r in rows])).mean()
        assert accuracy > self.overfit_accuracy, accuracy

    def test_same_seed_same_training(self):
        train = Sequences.from_lists(patterned_rows(20, N_ITEMS))
        a = train_steps(self.make(seed=3), train, 3, seed=7)
        assert a == train_steps(self.make(seed=3), train, 3, seed=7)
        assert a != train_steps(self.make(seed=4), train, 3, seed=7)

    def test_training_hooks_then_a_checkpoint_scores_the_same(self, tmp_path):
        """Built by ``for_training``, trained through the trainer's hooks (``start_epoch``, steps with
        the users, ``end_epoch``), a model rebuilt from its plain config and state_dict scores
        exactly as it does: whatever inference needs lives in the state_dict."""
        model = self.make()
        train = Sequences.from_lists(patterned_rows(N_USERS, N_ITEMS))
        for epoch in range(2):
            model.start_epoch(epoch)
            train_steps(model, train, 2, seed=epoch, users=True)
            model.end_epoch(epoch)
        model.eval()
        torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, tmp_path / "m.pt")
        saved = torch.load(tmp_path / "m.pt", weights_only=True)
        clone = build_model(self.name, model_config(self.name, saved["config"]))
        clone.load_state_dict(saved["state_dict"])
        histories = [[1, 2, 3], [7, 8], list(range(1, 15))]
        torch.testing.assert_close(
            scores_of(clone.eval(), histories), scores_of(model, histories), rtol=0, atol=0
        )

    def test_block_ranks_equal_full_matrix_ranks(self):
        """Evaluation ranks one-product models from ``score_factors`` in column blocks: in one
        block exactly (bitwise) the ranks of ``score_all``'s full matrix, history masked, both
        protocols; in narrow blocks the ranks of the same blocks' scores laid side by side."""
        model = self.make().eval()
        rows = patterned_rows(N_USERS, N_ITEMS)
        history = Sequences.from_lists([r[:-1] for r in rows])
        pos = np.arange(len(rows))
        targets = torch.tensor([r[-1] for r in rows])
        negatives = torch.randint(1, N_ITEMS + 1, (len(rows), 7), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            seq = model.eval_input(history, pos)
            factors = model.score_factors(seq)
            if factors is None:  # scores are not one product: evaluation scores whole rows
                assert not model.one_product_scores
                return
            users, table, bias = factors
            for columns in (N_ITEMS + 1, 8, 3):
                if columns == N_ITEMS + 1:
                    scores = model.score_all(seq)
                else:
                    starts = range(0, N_ITEMS + 1, columns)
                    scores = torch.cat([users @ table[s : s + columns].T for s in starts], 1)
                    scores = scores if bias is None else scores + bias
                    scores[:, 0] = float("-inf")
                exclude_items(scores, history, pos)
                t = scores.gather(1, targets.unsqueeze(1)).squeeze(1)
                want_full = pessimistic_rank(scores, t)
                candidates = torch.cat([t.unsqueeze(1), scores.gather(1, negatives)], 1)
                want_sampled = pessimistic_rank(candidates, t)
                excluded = history_pairs(history, pos, seq.device)
                got = rank_in_blocks(users, table, bias, targets, excluded, negatives, columns=columns)
                assert torch.equal(got[0], want_full) and torch.equal(got[1], want_sampled), columns

    def test_fused_item_table_gives_the_scores_in_one_product(self):
        """The serving invariant: ``serving_scores(serving_users(seq), fused_item_table())`` are the
        scores of ``score_all`` once the padding column is masked, and for a model with
        ``one_product_scores`` that is ``[user_vector, 1] @ fused_item_table().T``; sampled losses
        see the same rows as the item table."""
        model = self.make().eval()
        seq = model.eval_input(Sequences.from_lists([[1, 2, 3], [4, 5, 6, 7]]), np.arange(2))
        with torch.no_grad():
            table = model.fused_item_table()
            served = model.serving_scores(model.serving_users(seq), table)
            served[:, 0] = float("-inf")
            torch.testing.assert_close(served, model.score_all(seq), rtol=1e-5, atol=1e-5)
            if model.one_product_scores:
                assert table.shape == (N_ITEMS + 1, model.item_table().shape[1] + 1)
                users = torch.cat([model.user_vectors(seq), torch.ones(2, 1)], dim=1)
                torch.testing.assert_close(users @ table.T, model.serving_scores(users, table))
            ids = torch.tensor([[1, 5], [N_ITEMS, 2]])
            torch.testing.assert_close(model.item_vectors(ids), model.item_table()[ids])

    def test_encoder_accepts_other_input_embeddings(self):
        """The backbone maps any embedded sequence + mask to hidden states (what wrappers reuse)."""
        model = self.make().eval()
        backbone = model.backbone if model.wraps_backbone else model
        x = torch.randn(2, 5, 32)
        mask = torch.tensor([[False, False, True, True, True], [True] * 5])
        h = backbone.encode(backbone.embed(x, mask), mask)
        assert h.shape == (2, 5, 32) and torch.isfinite(h).all()


class CausalTestMixin:
    """For models whose backbone is not ``bidirectional``: no position sees a later item."""

    def test_causal_output_ignores_later_items(self):
        model = self.make().eval()
        with torch.no_grad():
            ha = model.hidden_states(torch.tensor([[0, 0, 1, 2, 3, 4, 5]]))
            hb = model.hidden_states(torch.tensor([[0, 0, 1, 2, 3, 9, 11]]))
        torch.testing.assert_close(ha[:, :5], hb[:, :5])
        assert not torch.allclose(ha[:, 5:], hb[:, 5:])


# Per backbone: how its contracts train in the overfit check. Masked-item training (BERT4Rec) needs
# more steps, and a smaller learning rate than next-item training: at lr 1e-2 it stalls on long
# plateaus whose end depends on rounding, so whether it reached the bar within 600 steps changed
# with the seed and with the CPU's vector unit (AVX2 against AVX-512), not with the code.
OVERFIT: dict[str, dict] = {
    "bert4rec": {
        "overfit_steps": 600,
        "overfit_lr": 3e-3,
        "overfit_settings": {"mask_prob": 0.2},
        # measured 0.93-1.0 over seeds and both vector units for BERT4Rec alone; RLMRec-Gen on it
        # (whose reconstruction loss competes at this budget) reached exactly 0.8 on 2026-12-02's
        # environment, so the bar sits below that (chance is 1 / N_ITEMS)
        "overfit_accuracy": 0.75,
    },
}


def contract_classes(
    models: list[str],
    backbone_names: list[str],
    overfit: dict[str, dict] | None = None,
    known: dict[str, tuple[type, type]] | None = None,
) -> dict[str, type]:
    """Test classes for ``models`` (backbones among them stand alone, wrappers go around each of
    ``backbone_names``), named ``Test<Model>[On<Backbone>][<variant>]``. ``known``: models not
    registered yet (a test file registers its own only while its tests run)."""
    overfit = {**OVERFIT, **(overfit or {})}
    registry = {**MODELS, **(known or {})}
    classes = {}
    for name in models:
        cls = registry[name][0]
        for backbone in backbone_names if cls.wraps_backbone else [None]:
            own = backbone or name
            causal = () if registry[own][0].bidirectional else (CausalTestMixin,)
            for variant in VARIANTS.get(name, [{}]):
                title = f"Test{cls.__name__}" + (f"On{registry[backbone][0].__name__}" if backbone else "")
                title += "".join(str(v).title() for v in variant.values())
                attrs = {"name": name, "backbone": backbone, **overfit.get(own, {})}
                attrs["settings"] = {**MODEL_SETTINGS.get(name, {}), **variant}
                classes[title] = type(title, (RecommenderBaseTestMixin, *causal), attrs)
    return classes


BUILT_IN_BACKBONES = ["sasrec", "bert4rec", "gru4rec"]
BUILT_IN_WRAPPERS = [
    *("llmesr", "llminit", "cities", "melt", "rlmrec"),
    *("alphafuse", "llmemb", "textrec", "ensrec", "esrfuse"),
]
globals().update(contract_classes(BUILT_IN_BACKBONES + BUILT_IN_WRAPPERS, BUILT_IN_BACKBONES))
