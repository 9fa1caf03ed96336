"""Request and response bodies of the HTTP API (they make up its OpenAPI document)."""
from __future__ import annotations

from typing import Optional

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
    texts: Optional[list[str]] = Field(None, description="for modality=text")
    items: Optional[list[str]] = Field(None, description="base64 media (a data: URL prefix is allowed)")
    names: Optional[list[str]] = Field(None, description="optional display names, used in error messages")


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
    text: Optional[str] = Field(None, description="for modality=text")
    data: Optional[str] = Field(None, description="base64 media for the other modalities")
    name: Optional[str] = Field(None, description="display name used in error messages")
    weight: float = Field(1.0, ge=-10.0, le=10.0, description="weight in the combination (negative subtracts)")


class SearchRequest(BaseModel):
    """Search the index with one or more query parts, combined by weighted sum of their embeddings."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"parts": [{"modality": "text", "text": "a dog on a beach"}], "k": 10, "modality": "image"}]})

    parts: list[QueryPart] = Field(min_length=1, description="query parts; several are combined")
    weights: Optional[list[float]] = Field(None, description="overrides the parts' own weights, one per part")
    k: int = Field(10, ge=1, le=1000, description="how many results")
    modality: Optional[str] = Field(None, description="only return items of this modality (as stored by the index)")


class ItemInfo(BaseModel):
    """An indexed item's metadata and the URLs to fetch it."""

    id: str
    name: str = Field(description="the file's base name")
    uri: str
    modality: str = Field(description="the modality as stored by the index")
    kind: str = Field(description="image, video, audio, depth, thermal or imu: how to show it")
    size: Optional[int] = None
    mtime: Optional[float] = None
    segment_start: Optional[float] = None
    segment_end: Optional[float] = None
    content_hash: Optional[str] = None
    media_url: str = Field(description="streams the indexed file (Range requests supported)")
    preview_url: str = Field(description="media_url with a #t=start,end fragment for the matching segment")
    thumbnail_url: Optional[str] = Field(None, description="a JPEG thumbnail, for images, depth, thermal and video")
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
    modalities: Optional[list[str]] = Field(None, description="only these modalities")
    segment_seconds: Optional[float] = Field(None, gt=0, description="split long audio/video into segments")


class IndexJob(BaseModel):
    """A background indexing run."""

    id: str
    status: str = Field(description="running, done or failed")
    paths: list[str]
    added: Optional[int] = None
    updated: Optional[int] = None
    removed: Optional[int] = None
    unchanged: Optional[int] = None
    skipped: Optional[int] = None
    skipped_files: Optional[list[str]] = Field(None, description="'path: reason' for the first 100 skipped files")
    error: Optional[str] = None


class DeleteResponse(BaseModel):
    deleted: int


class ModelInfoResponse(BaseModel):
    """What /v1/info and the Weaviate /meta report."""

    model: str
    checksum: Optional[str] = None
    embed_dim: int
    modalities: list[str]
    indexed_items: Optional[int] = None
    version: str


class Health(BaseModel):
    status: str


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
