"""Request and response bodies of the HTTP API (they make up its OpenAPI document)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

_KIND_HELP = "text, image, video, vision (image or video, detected), audio, depth, thermal or imu"


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: a one-line message and a machine-readable type."""

    error: str = Field(description="one-line message, naming the offending input where there is one")
    type: str = Field(description="bad_input, bad_request, too_large, not_found, unauthorized, busy, timeout, ...")


class EmbedRequest(BaseModel):
    """Embed a list of texts, or a list of base64 media items of one modality."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"modality": "text", "texts": ["a dog barking", "rain on a roof"]}]})

    modality: str = Field(description=_KIND_HELP)
    texts: list[str] | None = Field(None, description="for modality=text")
    items: list[str] | None = Field(None, description="base64 media (a data: URL prefix is allowed)")
    names: list[str] | None = Field(None, description="optional display names, used in error messages")


class EmbedResponse(BaseModel):
    """Unit-norm float32 vectors, one per input, in input order."""

    model: str
    modality: str
    dim: int
    vectors: list[list[float]]


class QueryPart(BaseModel):
    """One part of a query: a text, or a base64 media item."""

    model_config = ConfigDict(extra="forbid")

    modality: str = Field("text", description=_KIND_HELP)
    text: str | None = Field(None, description="for modality=text")
    data: str | None = Field(None, description="base64 media for the other modalities")
    name: str | None = Field(None, description="display name used in error messages")
    weight: float = Field(1.0, ge=-10.0, le=10.0, description="weight in the combination (negative subtracts)")


class SearchRequest(BaseModel):
    """Search the index with one or more query parts, combined by weighted sum of their embeddings."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"parts": [{"modality": "text", "text": "a dog on a beach"}], "k": 10, "modality": "image"}]})

    parts: list[QueryPart] = Field(min_length=1, description="query parts; several are combined")
    weights: list[float] | None = Field(None, description="overrides the parts' own weights, one per part")
    k: int = Field(10, ge=1, le=1000, description="how many results")
    modality: str | None = Field(None, description="only return items of this modality (as stored by the index)")


class ItemInfo(BaseModel):
    """An indexed item's metadata and the URLs to fetch it."""

    id: str
    name: str = Field(description="the file's base name")
    uri: str
    modality: str = Field(description="the modality as stored by the index")
    kind: str = Field(description="image, video, audio, depth, thermal or imu: how to show it")
    size: int | None = None
    mtime: float | None = None
    segment_start: float | None = None
    segment_end: float | None = None
    content_hash: str | None = None
    media_url: str = Field(description="streams the indexed file (Range requests supported)")
    preview_url: str = Field(description="media_url with a #t=start,end fragment for the matching segment")
    thumbnail_url: str | None = Field(None, description="a JPEG thumbnail, for images, depth, thermal and video")
    media_type: str


class SearchHit(ItemInfo):
    """A search result."""

    score: float = Field(description="cosine similarity to the combined query")


class SearchResponse(BaseModel):
    """Results, best first."""

    model: str
    took_ms: float
    hits: list[SearchHit]


class IndexRequest(BaseModel):
    """Index (or re-index) server-side paths into the table."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(min_length=1, description="files or folders on the server")
    modalities: list[str] | None = Field(None, description="only these modalities")
    segment_seconds: float | None = Field(None, gt=0, description="split long audio/video into segments")


class IndexJob(BaseModel):
    """A background indexing run."""

    id: str
    status: str = Field(description="running, done or failed")
    paths: list[str]
    added: int | None = None
    updated: int | None = None
    removed: int | None = None
    unchanged: int | None = None
    skipped: int | None = None
    skipped_files: list[str] | None = Field(None, description="'path: reason' for the first 100 skipped files")
    error: str | None = None


class DeleteResponse(BaseModel):
    deleted: int


class ModelInfoResponse(BaseModel):
    """What /v1/info and the Weaviate /meta report."""

    model: str
    checksum: str | None = None
    embed_dim: int
    modalities: list[str]
    indexed_items: int | None = None
    version: str


class Health(BaseModel):
    """Liveness or readiness; `reason` says why a server is not ready."""

    status: str
    reason: str | None = None


class VectorizeRequest(BaseModel):
    """Weaviate multi2vec-bind request: every media list is base64."""

    texts: list[str] = Field(default_factory=list)
    images: list[str] = Field(default_factory=list)
    audio: list[str] = Field(default_factory=list)
    video: list[str] = Field(default_factory=list)
    imu: list[str] = Field(default_factory=list)
    thermal: list[str] = Field(default_factory=list)
    depth: list[str] = Field(default_factory=list)


class VectorizeResponse(BaseModel):
    """Weaviate multi2vec-bind response: one list of vectors per input list."""

    textVectors: list[list[float]] = Field(default_factory=list)
    imageVectors: list[list[float]] = Field(default_factory=list)
    audioVectors: list[list[float]] = Field(default_factory=list)
    videoVectors: list[list[float]] = Field(default_factory=list)
    imuVectors: list[list[float]] = Field(default_factory=list)
    thermalVectors: list[list[float]] = Field(default_factory=list)
    depthVectors: list[list[float]] = Field(default_factory=list)
