"""HTTP API over one or more bundles (FastAPI): ``llmesr serve BUNDLE [BUNDLE ...]``.

Endpoints: ``POST /recommend``, ``POST /recommend/batch``, ``GET /items/{id}``, ``GET /items?q=``
(title search), ``POST /items`` (cold-start item from its text), ``GET /health``, the OpenAPI
schema at ``/openapi.json`` and the web page at ``/``. Every client mistake (unknown ids, empty or
over-long histories, bad ``k``, unknown bundle) is a 4xx with a message, never a 500.
"""

from __future__ import annotations

import threading

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from llmesr.serving.bundle import Bundle, Recommendation
from llmesr.serving.page import PAGE

MAX_HISTORY = 1000
MAX_K = 1000
MAX_BATCH = 256


class RecommendRequest(BaseModel):
    history: list[str] = Field(min_length=1, max_length=MAX_HISTORY, description="item ids, oldest first")
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = True
    bundle: str | None = Field(None, description="bundle name (default: the first one served)")


class BatchRequest(BaseModel):
    histories: list[list[str]] = Field(min_length=1, max_length=MAX_BATCH)
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = True
    bundle: str | None = None


class ItemOut(BaseModel):
    item_id: str
    title: str
    popularity: int
    tail: bool
    cold_start: bool = False


class Scored(ItemOut):
    rank: int
    score: float


class RecommendResponse(BaseModel):
    bundle: str
    items: list[Scored]


class BatchResponse(BaseModel):
    bundle: str
    results: list[list[Scored]]


class NewItem(BaseModel):
    item_id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=2000)
    brand: str = Field("", max_length=500)
    categories: list[str] = Field(default_factory=list, max_length=50)
    bundle: str | None = None


def create_app(bundles: dict[str, Bundle]) -> FastAPI:
    if not bundles:
        raise ValueError("serve at least one bundle")
    app = FastAPI(title="llmesr", description="Sequential recommendations from llmesr bundles.")
    default = next(iter(bundles))
    lock = threading.Lock()  # serialises cold-start additions (reads need no lock, see Bundle.add_item)

    def pick(name: str | None) -> tuple[str, Bundle]:
        name = name or default
        if name not in bundles:
            raise HTTPException(404, f"unknown bundle {name!r}; served: {', '.join(bundles)}")
        return name, bundles[name]

    def scored(bundle: Bundle, rec: Recommendation) -> list[Scored]:
        return [
            Scored(rank=r + 1, score=float(s), **bundle.item_info(int(i)))
            for r, (s, i) in enumerate(zip(rec.scores, rec.internal, strict=True))
        ]

    def run(bundle: Bundle, histories: list[list[str]], k: int, exclude: bool) -> list[Recommendation]:
        try:
            return bundle.recommend_many(histories, k, exclude)
        except KeyError as err:
            raise HTTPException(422, err.args[0]) from None
        except ValueError as err:
            raise HTTPException(422, str(err)) from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "bundles": {name: {"model": b.meta["model"], "items": b.n_items} for name, b in bundles.items()},
        }

    @app.post("/recommend", response_model=RecommendResponse)
    def recommend(req: RecommendRequest) -> RecommendResponse:
        name, bundle = pick(req.bundle)
        rec = run(bundle, [req.history], req.k, req.exclude_seen)[0]
        return RecommendResponse(bundle=name, items=scored(bundle, rec))

    @app.post("/recommend/batch", response_model=BatchResponse)
    def recommend_batch(req: BatchRequest) -> BatchResponse:
        name, bundle = pick(req.bundle)
        for h in req.histories:
            if not 1 <= len(h) <= MAX_HISTORY:
                raise HTTPException(422, f"every history needs 1 to {MAX_HISTORY} items")
        recs = run(bundle, req.histories, req.k, req.exclude_seen)
        return BatchResponse(bundle=name, results=[scored(bundle, r) for r in recs])

    @app.get("/items", response_model=list[ItemOut])
    def search(
        q: str = Query("", max_length=200), limit: int = Query(20, ge=1, le=200), bundle: str | None = None
    ) -> list[ItemOut]:
        _, b = pick(bundle)
        return [ItemOut(**b.item_info(i)) for i in b.search(q, limit)]

    @app.get("/items/{item_id}", response_model=ItemOut)
    def item(item_id: str, bundle: str | None = None) -> ItemOut:
        _, b = pick(bundle)
        try:
            return ItemOut(**b.item_info(int(b.internal_ids([item_id])[0])))
        except KeyError as err:
            raise HTTPException(404, err.args[0]) from None

    @app.post("/items", response_model=ItemOut, status_code=201)
    def add_item(new: NewItem) -> ItemOut:
        _, b = pick(new.bundle)
        try:
            with lock:
                internal = b.add_item(new.item_id, new.title, new.brand, new.categories)
        except ValueError as err:
            raise HTTPException(409 if "already" in str(err) else 422, str(err)) from None
        return ItemOut(**b.item_info(internal))

    return app
