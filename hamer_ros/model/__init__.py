"""The HaMeR network in plain PyTorch: no ROS, no cameras."""
from .checkpoint import CheckpointError, UnsafeCheckpointError
from .config import HaMeRConfig
from .hamer import HaMeR, HaMeROutput
from .mano import ManoLayer, ManoModelError, load_mano_arrays
from .rotation import rot6d_to_rotmat

__all__ = ["HaMeR", "HaMeROutput", "HaMeRConfig", "ManoLayer", "ManoModelError", "load_mano_arrays",
           "CheckpointError", "UnsafeCheckpointError", "rot6d_to_rotmat"]
