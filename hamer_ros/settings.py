"""The nodes' settings, ROS-free: one table (ParamSpec) per node with each setting's default,
type, range and meaning. The source of hand_mesh_node's and hand_viz_node's declared parameters
(ros/parameters.py adds the descriptors), of config/hands.yaml and the README's tables (checked by
tests), of PipelineConfig's defaults, and of the one mapping from settings to a PipelineConfig
that the node and the CLI share (`pipeline_config`)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

SYNC_POLICIES = ("latest", "exact")   # how an image is paired with its CameraInfo (ros/sync.py)


def _check_device(v: str) -> str | None:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", v):
        return f"device must be auto, cpu, cuda, cuda:N or mps, got '{v}'"
    return None


def parse_rois(text: str) -> list[dict[str, Any]]:
    """The `rois` parameter: a YAML (or JSON) list of {box: [x1, y1, x2, y2], side: left|right}."""
    import yaml

    try:
        rois = yaml.safe_load(text) if text.strip() else []
    except yaml.YAMLError as e:
        raise ValueError(f"rois is not valid YAML/JSON: {e}") from None
    if rois is None:
        rois = []
    if not isinstance(rois, list):
        raise ValueError(f"rois must be a list like '[{{box: [x1, y1, x2, y2], side: right}}]', got {text!r}")
    from .perception.detect import FixedRoiDetector

    FixedRoiDetector(rois)   # raises ValueError naming the bad roi
    return rois


def _check_rois(v: str) -> str | None:
    try:
        parse_rois(v)
    except ValueError as e:
        return str(e)
    return None


def _check_frame_prefix(v: str) -> str | None:
    if v != "/" and v.startswith("/"):
        return (f"tf_prefix must not start with '/' (tf2 frame ids are relative; '/' alone means no "
                f"prefix), got '{v}'")
    if not re.fullmatch(r"[A-Za-z0-9_/]*", v):
        return f"tf_prefix may hold only letters, digits, '_' and '/', got '{v}'"
    return None


def dependent_parameter_problem(values: dict[str, Any], explicit: set[str] | frozenset[str],
                                starting: bool = False) -> str | None:
    """Why these settings cannot work together, or None: a parameter the user set (`explicit`)
    whose effect depends on another that is off. A default never conflicts: `tracking: false`
    alone turns tracking, and with it filtering and holding, off. `detector: fixed` must start
    with rois; emptied at run time (a script that supplies the boxes has none now) it finds no hands."""
    if starting and values["detector"] == "fixed" and not parse_rois(values["rois"]):
        return ("detector 'fixed' needs rois, e.g. rois: \"[{box: [100, 120, 260, 300], side: right}]\" "
                "(image pixels), or use detector:=mediapipe")
    if starting and values["detector"] == "wholebody" and not values["wholebody_models"].strip():
        return ("detector 'wholebody' needs wholebody_models: 'PERSON_DETECTOR.onnx,WHOLEBODY_POSE.onnx' "
                "(the README's 'Finding the hands' says where to get them), or use detector:=mediapipe")
    if "filter" in explicit and values["filter"] and not values["tracking"]:
        return "filter needs tracking (it smooths each track): set tracking: true, or filter: false"
    if "hold_time" in explicit and values["hold_time"] > 0 and not (values["filter"] and values["tracking"]):
        return ("hold_time needs filter and tracking (a held hand is its track's last filtered hand): turn them "
                "on, or set hold_time: 0")
    return None


def frame_prefix(tf_prefix: str, namespace: str) -> str:
    """The prefix of the hand frames: tf_prefix as given; empty = the node's namespace
    ('/robot1' -> 'robot1/', so two namespaced nodes never share frame names); '/' = none."""
    if tf_prefix == "/":
        return ""
    if tf_prefix:
        return tf_prefix
    ns = namespace.strip("/")
    return f"{ns}/" if ns else ""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: bool | int | float | str      # also fixes the ROS parameter type
    description: str
    read_only: bool = False                # needs a restart (declared read-only)
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], str | None] | None = None

    def validate(self, value: Any) -> str | None:
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got '{value}'"
        if self.range is not None and not (self.range[0] <= value <= self.range[1]):
            return f"{self.name} must be in [{self.range[0]}, {self.range[1]}], got {value}"
        if self.check is not None:
            return self.check(value)
        return None


# Read by both nodes: the hands are placed, and drawn, with the same intrinsics.
IMAGE_IS_RECTIFIED = ParamSpec("image_is_rectified", False, "The image is rectified (image_rect*): use "
                               "CameraInfo P and no distortion instead of K and D.", read_only=True)

# hand_mesh_node
PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint", "", "HaMeR checkpoint (.../hamer_ckpts/checkpoints/hamer.ckpt; "
              "model_config.yaml is read from the folder above checkpoints/). Empty: joints-only "
              "from MediaPipe's landmarks, no mesh.", read_only=True),
    ParamSpec("mano", "", "MANO_RIGHT.pkl, or the folder that holds it. Empty: MANO from the checkpoint's own copy.",
              read_only=True),
    ParamSpec("device", "auto", "Inference device: auto (cuda when available, else cpu), cpu, cuda, "
              "cuda:N.", read_only=True, check=_check_device),
    ParamSpec("precision", "fp32", "Network precision on the device: fp32, bf16 or fp16 (LayerNorm, "
              "attention and the geometry stay fp32).", read_only=True, choices=("fp32", "bf16", "fp16")),
    ParamSpec("backend", "eager", "Inference engine: eager, compile (torch.compile + CUDA graphs), "
              "tensorrt (cached engine; the first start builds it for minutes) or onnx (ONNX Runtime). "
              "One that cannot run or fails the 1 mm self-check falls back to eager, logged.",
              read_only=True, choices=("eager", "compile", "tensorrt", "onnx")),
    ParamSpec("engine_cache", "", "Folder of built engines; empty: ~/.cache/hamer_ros/engines.",
              read_only=True),
    ParamSpec("detector", "mediapipe", "Hand detector: mediapipe (MediaPipe's palm detector and hand "
              "landmark model, run by PyTorch in this package: boxes, sides, keypoints, tracked by their "
              "landmarks; no mediapipe package needed), wholebody (a person detector and whole-body "
              "keypoints, the ONNX models in wholebody_models) or fixed (the boxes in rois, every frame).",
              read_only=True, choices=("mediapipe", "wholebody", "fixed")),
    ParamSpec("wholebody_models", "", "detector wholebody: 'PERSON_DETECTOR.onnx,WHOLEBODY_POSE.onnx' (e.g. "
              "YOLOX HumanArt and RTMW from the RTMPose project; see the README for where and their terms).",
              read_only=True),
    ParamSpec("rois", "[]", "detector fixed: hand boxes as a YAML/JSON list in image pixels, e.g. "
              "'[{box: [x1, y1, x2, y2], side: right}]' (on the command line quote it twice: "
              "-p 'rois:=\"[...]\"').", check=_check_rois),
    ParamSpec("max_hands", 2, "Most hands per frame (the highest-scoring are kept).", range=(1, 10)),
    ParamSpec("min_score", 0.5, "Least detection confidence of a hand (MediaPipe: its detection threshold); "
              "never a threshold on the side's confidence.", range=(0.0, 1.0)),
    ParamSpec("rescale", 2.0, "Crop side = rescale x max(4/3 w, h) of the hand box (2.0 as in "
              "HaMeR's demo).", range=(1.0, 4.0)),
    ParamSpec("refine_translation", True, "Place each hand by robust least squares on 2D keypoints "
              "(the detector's, else the network's own) with the camera's K and distortion; off: the "
              "network's weak-perspective placement."),
    ParamSpec("fit_rotation", True, "With refine_translation and detector keypoints: fit the hand's "
              "rotation too (regularised toward the network's, at most 30 deg), not only its position."),
    ParamSpec("tracking", True, "Hand tracks: stable ids, a side voted over frames, no hand twice in a "
              "frame, smoothed crop boxes, MANO shape averaged per track."),
    ParamSpec("side_switch_frames", 5, "Consecutive frames whose side label disagrees with a track's "
              "before its side changes.", range=(1, 100)),
    ParamSpec("filter", True, "One-Euro smoothing of each track's wrist position, hand rotation and "
              "joints on the image stamps (needs tracking)."),
    ParamSpec("filter_min_cutoff", 0.5, "Filter cutoff of a still hand, Hz (lower = steadier, laggier).",
              range=(0.01, 30.0)),
    ParamSpec("filter_beta", 15.0, "How fast the cutoff rises with the hand's speed, Hz per m/s (higher = "
              "less lag when moving).", range=(0.0, 1000.0)),
    ParamSpec("filter_d_cutoff", 1.0, "Cutoff of the filter's speed estimate, Hz.", range=(0.01, 30.0)),
    ParamSpec("hold_time", 0.1, "A tracked hand the detector misses is still published this many "
              "seconds, flagged held; 0 = never.", range=(0.0, 2.0)),
    IMAGE_IS_RECTIFIED,
    ParamSpec("qos_reliability", "best_effort", "Image subscription reliability: best_effort "
              "(sensor data; accepts every publisher) or reliable (needs a reliable publisher; with Fast "
              "DDS, frames over ~0.5 MB get through best effort only with large socket buffers).",
              read_only=True,
              choices=("best_effort", "reliable")),
    ParamSpec("camera_info_sync", "latest", "Pairing of image and CameraInfo: latest (the newest "
              "CameraInfo of the frame; works with latched or slower CameraInfo) or exact (same "
              "stamp, from a short buffer).", choices=SYNC_POLICIES),
    ParamSpec("camera_info_any_frame", False, "Place an image with the newest CameraInfo even when "
              "its frame_id differs from the image's (for drivers whose ids disagree). Off: such frames are "
              "skipped with a warning naming both ids, so no hand is placed with another camera's intrinsics."),
    ParamSpec("camera_info_timeout", 5.0, "Warn (throttled, frames are still processed) when the "
              "CameraInfo used is older than the image by this many seconds; 0 = never.",
              range=(0.0, 86400.0)),
    ParamSpec("camera_info_wait", 0.1, "camera_info_sync exact: how long a frame may wait for its "
              "CameraInfo, seconds.", range=(0.0, 2.0)),
    ParamSpec("use_depth", False, "Subscribe to `depth`, a depth image aligned to the colour image "
              "(16UC1 millimetres or 32FC1 metres, e.g. RealSense aligned_depth_to_color), and anchor each "
              "hand at its measured distance. Off: RGB only."),
    ParamSpec("depth_tolerance", 0.02, "use_depth: the largest stamp difference between a colour image and "
              "its depth image, seconds (0: the same stamp only); also the longest a frame waits after its "
              "arrival for a depth image still on its way.", range=(0.0, 1.0)),
    ParamSpec("image_timeout", 5.0, "Warn when no image has arrived for this many seconds (naming "
              "whether the topic has a publisher).", range=(0.5, 86400.0)),
    ParamSpec("tf_prefix", "", "Prefix of the hand frames: <tf_prefix>left_hand/wrist, "
              "<tf_prefix>right_hand/wrist (e.g. 'robot1/'). Empty: the node's namespace (node in "
              "/robot1: 'robot1/'; root namespace: none); '/': no prefix.", check=_check_frame_prefix),
    ParamSpec("publish_tf", True, "Broadcast camera frame -> <tf_prefix><side>_hand/wrist on /tf "
              "(per side, a hand seen in the frame, never a held one; the track shown last while seen)."),
    ParamSpec("publish_joint_frames", False, "Also broadcast the 21 joint frames "
              "<tf_prefix><side>_hand/joint_<k> (camera-aligned)."),
    ParamSpec("publish_vertices", True, "Fill Hand.vertices (778 x 3 MANO vertices) in HandArray "
              "(hand_viz_node draws its meshes from them)."),
    ParamSpec("diagnostics_period", 1.0, "Period of the /diagnostics status, seconds.",
              read_only=True, range=(0.1, 60.0)),
    ParamSpec("autostart", True, "Configure and activate at start, like a plain node. false: stay "
              "unconfigured until a lifecycle manager (or `ros2 lifecycle set`) configures and "
              "activates it.", read_only=True),
)
PARAMETER_SPECS = {p.name: p for p in PARAMETERS}

# hand_viz_node
VIZ_PARAMETERS: tuple[ParamSpec, ...] = (
    IMAGE_IS_RECTIFIED,
    ParamSpec("pair_window", 1.0, "How long an image waits for its HandArray, seconds: more than the "
              "perception node's latency (seconds per frame for HaMeR on a CPU). Images wait as received, "
              "so memory grows with it (1 s of 1280x720 rgb8 at 30 Hz: 83 MB).", read_only=True,
              range=(0.05, 10.0)),
    ParamSpec("debug_image_scale", 1.0, "Size of the debug images relative to the input (e.g. 0.5: half "
              "width and height, a quarter of the bytes).", range=(0.05, 1.0)),
    ParamSpec("debug_image_jpeg_quality", 80, "JPEG quality of hands/debug_image/compressed.",
              range=(1, 100)),
)


# What hand_mesh_node once had and a params file may still set: where each job went.
RETIRED = {
    "publish_markers": "hand_viz_node publishes the markers now (launch argument visualize)",
    "publish_debug_image": "hand_viz_node publishes the debug images now (launch argument visualize)",
    "debug_image_scale": "it is hand_viz_node's parameter now (the /**/hand_viz_node section)",
    "debug_image_jpeg_quality": "it is hand_viz_node's parameter now (the /**/hand_viz_node section)",
}


def default(name: str) -> Any:
    """hand_mesh_node's default of a setting (PipelineConfig's fields take theirs from here)."""
    return PARAMETER_SPECS[name].default


# Settings that become PipelineConfig fields: setting name -> field name.
PIPELINE_FIELDS = {name: name for name in (
    "checkpoint", "mano", "device", "precision", "backend", "engine_cache", "detector", "wholebody_models", "rois",
    "max_hands", "min_score", "rescale", "fit_rotation", "tracking", "side_switch_frames", "filter",
    "filter_min_cutoff", "filter_beta", "filter_d_cutoff", "hold_time")} | {"refine_translation": "refine"}
# The ones a running pipeline takes between two frames (pipeline.reconfigure); the rest need a new one.
PIPELINE_PARAMS = ("min_score", "max_hands", "rescale", "refine_translation", "fit_rotation", "tracking",
                   "side_switch_frames", "filter", "filter_min_cutoff", "filter_beta", "filter_d_cutoff",
                   "hold_time", "rois")


def pipeline_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Settings (by name; any subset) as PipelineConfig field values: paths expanded, rois parsed."""
    out = {}
    for name, value in values.items():
        if name not in PIPELINE_FIELDS:
            continue
        if name in ("checkpoint", "mano", "engine_cache") and value:
            value = str(Path(value).expanduser())
        elif name == "rois":
            value = parse_rois(value) if isinstance(value, str) else value
        out[PIPELINE_FIELDS[name]] = value
    return out


def pipeline_config(values: dict[str, Any], **extra: Any) -> Any:
    """The PipelineConfig for these settings (the node's parameters, or the CLI's options by the
    same names); settings not given keep the table's defaults. `extra`: fields no setting has."""
    from .perception.pipeline import PipelineConfig

    return PipelineConfig(**pipeline_fields(values), **extra)
