"""Cold-start check: do new items, known only by their text, reach the recommendations of users
whose histories hold similar items?

    .venv/bin/python benchmarks/cold_start.py bundles/beauty_llmesr

For each new item (title, brand, categories), the history is the 5 trained items most similar to
it by LLM-embedding cosine (oldest = least similar); the item is added the way ``POST /items``
adds it, and its rank in the full ranking for that history is printed next to the ranks of its
other 5 nearest trained neighbours (items the model has seen, for comparison). Run by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from llmesr.semantic.prompts import item_prompts
from llmesr.serving import Bundle

NEW_ITEMS = [
    ("new-1", "Nail Lacquer - Big Apple Red, 0.5 fl oz", "OPI", ["Beauty", "Makeup", "Nails", "Nail Polish"]),
    ("new-2", "Moroccan Argan Oil Moisturizing Shampoo", "OGX", ["Beauty", "Hair Care", "Shampoos"]),
    (
        "new-3",
        "Waterproof Liquid Eyeliner, Blackest Black",
        "Maybelline",
        ["Beauty", "Makeup", "Eyes", "Eyeliner"],
    ),
    ("new-4", "Ultra Sheer Dry-Touch Sunscreen SPF 55", "Neutrogena", ["Beauty", "Skin Care", "Sun"]),
    ("new-5", "Eau de Parfum Spray for Women, 3.4 oz", "Calvin Klein", ["Beauty", "Fragrance", "Women"]),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--neighbours", type=int, default=10, help="trained items the ID vector is borrowed from")
    args = p.parse_args()
    bundle = Bundle(args.bundle, cold_start_neighbours=args.neighbours)
    model, enc = bundle.model, bundle.meta["encoder"]
    print(f"bundle {args.bundle}: {bundle.n_items:,} items")
    for item_id, title, brand, categories in NEW_ITEMS:
        fields = {"title": ["", title], "brand": ["", brand], "categories": ["", ", ".join(categories)]}
        text = item_prompts(
            pd.DataFrame(fields),
            np.array(["", item_id], dtype=object),
            enc["item_template"],
            enc["prompt_domain"],
        ).texts[0]
        e = torch.from_numpy(bundle.encoder().encode([text])).float()
        trained = model.semantic[1 : bundle.trained_items + 1]
        sims = F.normalize(trained, dim=1) @ F.normalize(e, dim=1)[0]
        nearest = (torch.topk(sims, 10).indices + 1).numpy()
        history = [bundle.item_ids[i] for i in nearest[:5][::-1]]
        bundle.add_item(item_id, title, brand, categories)
        ranking = bundle.recommend(history, k=bundle.n_items).items.tolist()
        others = sorted(ranking.index(bundle.item_ids[i]) + 1 for i in nearest[5:])
        print(
            f"{title[:45]:<45}  new item rank {ranking.index(item_id) + 1:>5} of {len(ranking):,}; "
            f"its next 5 trained neighbours rank {others}"
        )


if __name__ == "__main__":
    main()
