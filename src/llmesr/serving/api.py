"""HTTP API over one or more bundles (FastAPI): ``llmesr serve BUNDLE [BUNDLE ...]``.

Endpoints: ``POST /recommend``, ``POST /recommend/batch``, ``GET /items/{id}``, ``GET /items?q=``
(title search), ``POST /items`` (cold-start item from its text), ``GET /health``, the OpenAPI
schema at ``/openapi.json`` and the web page at ``/``. Every client mistake (unknown ids, empty or
over-long histories, bad ``k`` including ``1e400`` and ``NaN``, unknown bundle, a new item the
bundle cannot embed comparably) is a 4xx with a one-line message, never a 500; error bodies quote
client input cut short (errors.py). Each request reads one catalogue snapshot of its bundle
(``Bundle.state``), so items added meanwhile never show half-published.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from llmesr.serving.bundle import Bundle, DuplicateItem, ItemRefused, Recommendation
from llmesr.serving.catalogue import Catalogue, quoted
from llmesr.serving.errors import validation_body
from llmesr.serving.page import PAGE

MAX_HISTORY = 1000
MAX_K = 1000
MAX_BATCH = 256
NO_NUL = r"^[^\x00]*$"  # item text with NUL is refused, as in data files (llmesr.data.parsing)

ItemId = Annotated[str, Field(max_length=1000)]
History = Annotated[
    list[ItemId], Field(min_length=1, max_length=MAX_HISTORY, description="item ids, oldest first")
]
Text = Annotated[str, Field(max_length=500, pattern=NO_NUL)]


class RecommendRequest(BaseModel):
    history: History
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = True
    bundle: str | None = Field(None, description="bundle name (default: the first one served)")


class BatchRequest(BaseModel):
    histories: list[History] = Field(min_length=1, max_length=MAX_BATCH)
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
    item_id: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    title: str = Field(min_length=1, max_length=2000, pattern=NO_NUL)
    brand: Text = ""
    categories: list[Text] = Field(default_factory=list, max_length=50)
    bundle: str | None = None


def create_app(bundles: dict[str, Bundle]) -> FastAPI:
    if not bundles:
        raise ValueError("serve at least one bundle")
    app = FastAPI(title="llmesr", description="Sequential recommendations from llmesr bundles.")
    default = next(iter(bundles))

    @app.exception_handler(RequestValidationError)
    def invalid(_request, err: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes every input, whole, and fails (500) on NaN / Infinity.
        return JSONResponse(validation_body(err.errors()), status_code=422)

    def pick(name: str | None) -> tuple[str, Bundle]:
        name = name or default
        if name not in bundles:
            raise HTTPException(404, f"unknown bundle {quoted(name)}; served: {', '.join(bundles)}")
        return name, bundles[name]

    def scored(state: Catalogue, rec: Recommendation) -> list[Scored]:
        return [
            Scored(rank=r + 1, score=float(s), **state.item_info(int(i)))
            for r, (s, i) in enumerate(zip(rec.scores, rec.internal, strict=True))
        ]

    def run(bundle: Bundle, histories: list[list[str]], k: int, exclude: bool) -> list[list[Scored]]:
        state = bundle.state  # one snapshot for the ranking and the item details
        try:
            recs = bundle.recommend_many(histories, k, exclude, state=state)
        except KeyError as err:
            raise HTTPException(422, err.args[0]) from None
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        return [scored(state, rec) for rec in recs]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE

    @app.get("/health")
    @app.head("/health", include_in_schema=False)  # load balancers and uptime checks probe with HEAD
    def health() -> dict:
        return {
            "status": "ok",
            "bundles": {name: {"model": b.meta["model"], "items": b.n_items} for name, b in bundles.items()},
        }

    @app.post("/recommend", response_model=RecommendResponse)
    def recommend(req: RecommendRequest) -> RecommendResponse:
        name, bundle = pick(req.bundle)
        return RecommendResponse(bundle=name, items=run(bundle, [req.history], req.k, req.exclude_seen)[0])

    @app.post("/recommend/batch", response_model=BatchResponse)
    def recommend_batch(req: BatchRequest) -> BatchResponse:
        name, bundle = pick(req.bundle)
        return BatchResponse(bundle=name, results=run(bundle, req.histories, req.k, req.exclude_seen))

    @app.get("/items", response_model=list[ItemOut])
    def search(
        q: str = Query("", max_length=200), limit: int = Query(20, ge=1, le=200), bundle: str | None = None
    ) -> list[ItemOut]:
        state = pick(bundle)[1].state
        return [ItemOut(**state.item_info(i)) for i in state.search(q, limit)]

    @app.get("/items/{item_id}", response_model=ItemOut)
    def item(item_id: str, bundle: str | None = None) -> ItemOut:
        state = pick(bundle)[1].state
        try:
            return ItemOut(**state.item_info(int(state.internal_ids([item_id])[0])))
        except KeyError as err:
            raise HTTPException(404, err.args[0]) from None

    @app.post("/items", response_model=ItemOut, status_code=201)
    def add_item(new: NewItem) -> ItemOut:
        from llmesr.semantic.encoders import EncoderError

        _, b = pick(new.bundle)
        try:
            internal = b.add_item(new.item_id, new.title, new.brand, new.categories)
        except DuplicateItem as err:
            raise HTTPException(409, str(err)) from None
        except ItemRefused as err:
            raise HTTPException(422, str(err)) from None
        except EncoderError as err:  # the encoder cannot be loaded or failed: not the client's doing
            raise HTTPException(503, " ".join(str(err).split())) from None
        return ItemOut(**b.state.item_info(internal))

    return app
