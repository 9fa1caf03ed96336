"""Any-to-image generation: condition an image generator on a (combined) bindspace embedding.

`generate(pipeline_dir, [("audio", "rain.wav")])` embeds the query with search's arithmetic and
draws images from a Stable unCLIP pipeline (or the demo's tiny generator) loaded from a local
directory. `scaling` documents and implements how unit embeddings become unCLIP `image_embeds`.
"""
from .api import Generation, generate, load_embedder
from .pipelines import GenerateOptions, ImagePipeline, check_width, open_pipeline
from .query import embed_query
from .scaling import EmbedNorm, calibrate, to_image_embeds

__all__ = ["EmbedNorm", "GenerateOptions", "Generation", "ImagePipeline", "calibrate", "check_width",
           "embed_query", "generate", "load_embedder", "open_pipeline", "to_image_embeds"]
