"""Building blocks shared by every tower."""
from .attention import SelfAttention
from .block import Block
from .drop_path import DropPath
from .heads import LogitScale, Normalize, SelectToken, TextHead, cls_head, postprocessor
from .mlp import Mlp
from .transformer import Transformer

__all__ = [
    "SelfAttention", "Block", "DropPath", "Mlp", "Transformer",
    "SelectToken", "TextHead", "cls_head", "Normalize", "LogitScale", "postprocessor",
]
