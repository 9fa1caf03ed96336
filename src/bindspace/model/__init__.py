"""The model: stems, towers, ImageBindModel, checkpoint I/O."""
from .checkpoint import load_state_dict, save_model_dir
from .factory import create_model
from .imagebind import ImageBindModel

__all__ = ["ImageBindModel", "create_model", "load_state_dict", "save_model_dir"]
