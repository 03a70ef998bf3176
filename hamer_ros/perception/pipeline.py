"""One RGB frame and the camera's real intrinsics in; metric hands in the camera frame out."""
from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..settings import default
from ..weights import WEIGHTS_HINT
from .camera import (crop_keypoints_to_image, crop_ray_rotations, fit_pose, mirror_points, mirror_rotations,
                     refine_translation, reprojection_error, weak_perspective_to_translation)
from .crop import crop_hands
from .depth import TrackScales, anchor_on_depth, front_faces, joint_surface_points
from .detect import HandDetector, make_detector
from .engine import make_engine, to_host
from .gpu_crop import crop_hands_torch, upload_frame
from .hand_frame import hand_frame
from .landmarks import place_landmarks
from .filter import FilterConfig, HandSmoother
from .track import HandTracker
from .types import Detection, Hand, StageTimes

log = logging.getLogger(__name__)

JOINTS_ONLY_HINT = (
    "No HaMeR checkpoint configured: publishing joints and wrist poses from MediaPipe's landmarks "
    f"only (no mesh). For meshes, set `checkpoint`. {WEIGHTS_HINT}")


@dataclass
class PipelineConfig:
    """Defaults: hand_mesh_node's parameter table (hamer_ros/settings.py), which says what each means."""

    checkpoint: str = default("checkpoint")  # official hamer.ckpt; empty = joints-only from the detector
    mano: str = default("mano")  # MANO_RIGHT.pkl or its folder; empty = the checkpoint's own MANO
    device: str = default("device")  # auto | cpu | cuda | cuda:N
    precision: str = default("precision")  # fp32 | bf16 | fp16 (LayerNorm, attention and geometry stay fp32)
    backend: str = default("backend")  # eager | compile | tensorrt | onnx (perception/engine.py)
    engine_cache: str = default("engine_cache")  # compiled-engine folder; empty = ~/.cache/hamer_ros/engines
    rebuild_engine: bool = False    # build the engine again even if one is cached
    detector: str = default("detector")  # mediapipe | wholebody | fixed
    wholebody_models: str = default("wholebody_models")  # wholebody: "PERSON.onnx,POSE.onnx"
    rois: list[dict[str, Any]] = field(default_factory=list)   # fixed: [{box: [x1,y1,x2,y2], side: right}]
    max_hands: int = default("max_hands")
    min_score: float = default("min_score")
    rescale: float = default("rescale")  # crop side = rescale · max(4/3·w, h), as the reference demo
    refine: bool = default("refine_translation")  # least-squares placement on 2D keypoints (the detector's, else the network's)
    fit_rotation: bool = default("fit_rotation")  # with refine: fit the rotation too (fit_pose), not only the translation
    tracking: bool = default("tracking")  # stable ids, sides voted per track, no duplicates, smoothed boxes
    side_switch_frames: int = default("side_switch_frames")  # consecutive disagreeing labels before a track changes side
    filter: bool = default("filter")  # One-Euro smoothing per track on the image stamps (needs a stamp)
    filter_min_cutoff: float = default("filter_min_cutoff")  # Hz, cutoff of a still hand
    filter_beta: float = default("filter_beta")  # Hz per m/s: how fast the cutoff rises with speed
    filter_d_cutoff: float = default("filter_d_cutoff")  # Hz, cutoff of the speed estimate
    hold_time: float = default("hold_time")  # s a missed hand is still reported (flagged held); 0 = never
    static_images: bool = False     # independent images (CLI) instead of a video stream


MIN_TRACK_GAP = 0.05   # s: with hold_time 0 a track still spans consecutive frames of a fast camera
FIRST_TRACK_GAP_MAX = 1.0   # s: the second frame of a stream continues the first's tracks if this close

# Fixed when the pipeline is built (model, weights, detector kind): changing them means a new one.
RESTART_FIELDS = frozenset({"checkpoint", "mano", "device", "precision", "backend", "engine_cache",
                            "rebuild_engine", "detector", "wholebody_models", "static_images"})


def resolve_device(name: str) -> torch.device:
    """The torch device for auto, cpu, cuda, cuda:N or mps; ValueError saying why when it is not
    one, or not available here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device '{name}': use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' requested but CUDA is not available to torch "
                         f"{torch.__version__}; use device cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device '{name}' requested but torch sees {torch.cuda.device_count()} CUDA "
                         f"device(s), numbered from 0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device '{name}' requested but this torch has no Apple GPU (MPS); use device cpu")
    return device


@dataclass
class Frame:
    """One frame of a stream, as HandPipeline takes it (see __call__)."""

    image: np.ndarray
    K: np.ndarray
    dist: np.ndarray | None = None
    stamp: float | None = None
    depth: np.ndarray | None = None


@dataclass
class _Detected:
    """A frame between detection and HaMeR (HandPipeline.batch)."""

    frame: Frame
    K: np.ndarray
    detections: list[Detection]
    crops: Any                          # crop_hands' result; None without a model or hands
    times: StageTimes
    alive: set[int]                     # the tracker's tracks after this frame
    missed: list[int]                   # its tracks missed in this frame (held by the filter)
    network_keypoints: np.ndarray | None = None   # HaMeR's own, in image pixels


class HandPipeline:
    """detect → crop → HaMeR → MANO → camera. All hands of a frame go through the network as one batch.

    Without a model (no checkpoint) the detector's own metric landmarks are placed in the camera
    with `refine_translation` instead: joints and wrist poses, no mesh.
    """

    def __init__(self, config: PipelineConfig | None = None, model: torch.nn.Module | None = None,
                 detector: HandDetector | None = None):
        self.config = cfg = config or PipelineConfig()
        self.device = resolve_device(cfg.device)
        self.model_error = ""
        if model is None and cfg.checkpoint:
            model = self._load_model(cfg)
        self.model = model.to(self.device).eval() if model is not None else None
        # builds (or loads from the cache) and self-checks; falls back to eager with a logged reason
        self.engine = (make_engine(self.model, cfg.backend, cfg.precision, device=self.device,
                                   cache_dir=cfg.engine_cache or None, force_rebuild=cfg.rebuild_engine)
                       if self.model is not None else None)
        self.detector = detector or self._make_detector(cfg)
        self._refiner: Any = None          # landmarks for boxes without keypoints, made on first use
        self._make_tracking(cfg)
        self.last_times = StageTimes()
        self.nonfinite_dropped = 0     # hands left out because a value was NaN or infinite
        self._nonfinite_logged = -math.inf
        if self.model is not None:
            faces = self.model.mano.faces.cpu().numpy()
            self.faces_right, self.faces_left = faces, np.ascontiguousarray(faces[:, [0, 2, 1]])
        else:
            self.faces_right = self.faces_left = None
            if not self.model_error:
                log.warning(JOINTS_ONLY_HINT)

    @property
    def has_mesh(self) -> bool:
        return self.model is not None

    def _landmark_refiner(self) -> Any:
        if self._refiner is None:
            from .hand_models.refine import LandmarkRefiner
            self._refiner = LandmarkRefiner(device=str(self.device))
        return self._refiner

    @property
    def backend(self) -> str:
        """The engine really in use, after any fallback (its precision: `engine.precision`)."""
        return self.engine.name if self.engine is not None else "none (joints-only)"

    def _load_model(self, cfg: PipelineConfig) -> torch.nn.Module | None:
        from ..model import CheckpointError, HaMeR, ManoModelError

        try:
            return HaMeR.from_checkpoint(cfg.checkpoint, cfg.mano, device="cpu")
        except (CheckpointError, ManoModelError, ValueError, OSError) as e:
            self.model_error = str(e)
            log.error("HaMeR model not loaded: %s -- continuing joints-only (no mesh).", e)
            return None

    def _make_detector(self, cfg: PipelineConfig) -> HandDetector:
        if cfg.detector == "fixed":
            return make_detector("fixed", rois=cfg.rois)
        if cfg.detector == "wholebody":
            from .wholebody import parse_models
            person, pose = parse_models(cfg.wholebody_models)
            return make_detector("wholebody", person_model=person, pose_model=pose, max_hands=cfg.max_hands,
                                 min_detection_confidence=cfg.min_score, device=str(self.device))
        return make_detector(cfg.detector, max_hands=cfg.max_hands, min_detection_confidence=cfg.min_score,
                             video_mode=not cfg.static_images, device=str(self.device))

    def close(self) -> None:
        self.detector.close()

    def _place(self, joints: np.ndarray, keypoints: np.ndarray, K: np.ndarray, dist: np.ndarray | None,
               prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rotation [N,3,3], translation [N,3]) that put camera-oriented joints on their keypoints."""
        if self.config.fit_rotation:
            return fit_pose(joints, keypoints, K, dist=dist, t0=prior)
        return (np.broadcast_to(np.eye(3), (len(joints), 3, 3)),
                refine_translation(joints, keypoints, K, dist=dist, t0=prior))

    def _make_tracking(self, cfg: PipelineConfig) -> None:
        filt = FilterConfig(cfg.filter_min_cutoff, cfg.filter_beta, cfg.filter_d_cutoff)
        self.tracker = (HandTracker(side_switch_frames=cfg.side_switch_frames, filter_config=filt if cfg.filter else None)
                        if cfg.tracking else None)
        self.smoother = HandSmoother(filt, cfg.hold_time) if cfg.tracking and cfg.filter else None
        self._betas: dict[int, tuple[torch.Tensor, int]] = {}   # per track: running mean of MANO shape
        self._scales = TrackScales()                             # per track: its size measured on depth
        self._last_stamp: float | None = None
        self._intervals: deque[float] = deque(maxlen=10)         # between the last frames' stamps

    def reconfigure(self, **changes: Any) -> None:
        """Change settings between frames. Rebuilds what fixes a setting at construction (the
        tracker, MediaPipe's hand count and confidence, fixed ROIs); the old detector stays if the
        new one cannot start."""
        unknown = changes.keys() - {f.name for f in fields(PipelineConfig)}
        if unknown:
            raise ValueError(f"unknown pipeline settings: {sorted(unknown)}")
        if RESTART_FIELDS & changes.keys():
            raise ValueError(f"{sorted(RESTART_FIELDS & changes.keys())} can only be set at start-up")
        old, cfg = self.config, replace(self.config, **changes)
        if cfg.detector == "fixed":
            rebuild = cfg.rois != old.rois
        else:
            rebuild = (cfg.max_hands, cfg.min_score) != (old.max_hands, old.min_score)
        if rebuild:
            detector = self._make_detector(cfg)
            self.detector.close()
            self.detector = detector
        tracking = ("tracking", "side_switch_frames", "filter", "filter_min_cutoff", "filter_beta",
                    "filter_d_cutoff", "hold_time")
        if any(getattr(cfg, k) != getattr(old, k) for k in tracking):
            self._make_tracking(cfg)      # a fresh start: ids, sides and filters
        self.config = cfg

    @property
    def track_gap(self) -> float:
        """s: a track not seen for longer ends, and a pause this long restarts the detector's own
        tracking: hold_time, or 2.5 frame intervals when frames come slower (a CPU that processes
        one frame in three)."""
        frame = float(np.median(self._intervals)) if self._intervals else 0.0
        return max(self.config.hold_time, 2.5 * frame, MIN_TRACK_GAP)

    def restart(self) -> None:
        """A new stream: as a new pipeline (track ids from 0 again) with the same model and engine."""
        self.reset_tracking()
        self._make_tracking(self.config)

    def reset_tracking(self) -> None:
        """Forget tracks, filters and the detector's own tracking, e.g. when time jumps back (a
        looping bag). The pipeline does it itself when the stamps go backwards."""
        if self.tracker is not None:
            self.tracker.reset()
        if self.smoother is not None:
            self.smoother.reset()
        self._betas.clear()
        self._scales.clear()
        self._last_stamp = None
        self._intervals.clear()
        self.detector.reset()
        if self._refiner is not None:
            self._refiner.reset()

    def __call__(self, image_rgb: np.ndarray, K: np.ndarray, dist: np.ndarray | None = None,
                 stamp: float | None = None, depth: np.ndarray | None = None) -> list[Hand]:
        """The hands of one frame. `stamp`: the image's time in seconds, for tracking and filtering;
        None (independent images): nothing is filtered or held. `depth`: an aligned depth image
        (float metres, NaN = no measurement, the image's size and K) to anchor the hands on."""
        return self.batch([Frame(image_rgb, K, dist, stamp, depth)])[0]

    def batch(self, frames: Sequence[Frame]) -> list[list[Hand]]:
        """The hands of consecutive frames of one stream, their crops through HaMeR in one batch
        (for throughput: offline annotation). Each frame is detected, tracked and filtered in
        order exactly as one call each would, except that the detector follows HaMeR's keypoints
        (`follow`) only from the batch's last frame on. A stamp going back ends the batch there."""
        out: list[list[Hand]] = []
        pending: list[_Detected] = []
        for f in frames:
            if pending and f.stamp is not None and self._last_stamp is not None and f.stamp < self._last_stamp:
                out += self._finish(pending)      # the restart forgets what those frames still need
                pending = []
            pending.append(self._detect(f))
        return out + self._finish(pending)

    def _detect(self, f: Frame) -> _Detected:
        if f.depth is not None and np.shape(f.depth)[:2] != np.shape(f.image)[:2]:
            raise ValueError(f"the depth image is {np.shape(f.depth)[1]}x{np.shape(f.depth)[0]} but the colour "
                             f"image {np.shape(f.image)[1]}x{np.shape(f.image)[0]}: use a depth image "
                             "aligned to the colour camera (e.g. RealSense aligned_depth_to_color)")
        times = StageTimes()
        t = time.perf_counter()
        stamp = f.stamp
        gap = self.track_gap
        if stamp is not None and self._last_stamp is not None and not self._intervals:
            # a stream's second frame: its interval is the only frame period known yet
            gap = max(gap, min(2.5 * (stamp - self._last_stamp), FIRST_TRACK_GAP_MAX))
        if self.tracker is not None:
            self.tracker.max_gap = gap
        if stamp is not None and self._last_stamp is not None:
            if stamp < self._last_stamp:
                self.reset_tracking()       # time went back: a looping bag, a restarted driver
            else:
                if stamp - self._last_stamp > gap:
                    # a pause: nothing seen before it continues, not even the detector's own
                    # tracking (MediaPipe would look for the old hands where they were)
                    self.detector.reset()
                self._intervals.append(stamp - self._last_stamp)   # one pause does not move the median
        if stamp is not None:
            self._last_stamp = stamp
        detections = [d for d in self.detector(f.image) if d.score >= self.config.min_score]
        detections = sorted(detections, key=lambda d: -d.score)[: self.config.max_hands]
        if self.tracker is not None:
            detections = self.tracker.update(detections, stamp)
        if self.model is None and any(d.keypoints is None for d in detections):
            # boxes alone (fixed ROIs) place no hand without HaMeR: the landmark model finds each
            detections = self._landmark_refiner()(f.image, detections)
        times.detect = _ms(t)
        crops = self._crop(f.image, detections, times) if self.model is not None and detections else None
        # what the tracker knew after this frame, for when the frame is finished (later, in a batch)
        alive = set(self.tracker.track_ids) if self.tracker is not None else set()
        missed = list(self.tracker.missed_ids) if self.tracker is not None else []
        return _Detected(f, np.asarray(f.K, dtype=np.float64), detections, crops, times, alive, missed)

    def _finish(self, frames: list[_Detected]) -> list[list[Hand]]:
        if not frames:
            return []
        params = self._forward([d for d in frames if d.crops is not None])
        out = []
        for d in frames:
            if not d.detections:
                hands: list[Hand] = []
            elif d.crops is not None:
                hands = self._mesh_hands(d, params.pop(0))
            else:
                hands = self._joint_hands(d.detections, d.K, d.frame.dist, d.times)
            out.append(self._settle(d, hands))
        last = frames[-1]
        if last.network_keypoints is not None and hasattr(self.detector, "follow"):
            # A tracking detector looks for each hand next where HaMeR saw it (it sees through occluders).
            self.detector.follow(list(last.network_keypoints))
        self.last_times = last.times
        return out

    def _crop(self, image: np.ndarray, dets: list[Detection], times: StageTimes) -> Any:
        t = time.perf_counter()
        boxes = np.stack([d.box for d in dets]).astype(np.float32)
        is_right = np.array([d.is_right for d in dets])
        if self.device.type == "cuda":   # the frame goes up once; crops are cut on the GPU
            crops = crop_hands_torch(upload_frame(image, self.device), boxes, is_right, rescale=self.config.rescale)
        else:                            # OpenCV: bit-exact with the reference, and faster on a CPU
            crops = crop_hands(image, boxes, is_right, rescale=self.config.rescale)
        times.crop = _ms(t)
        return crops

    def _forward(self, frames: list[_Detected]) -> list[tuple[torch.Tensor, ...]]:
        """HaMeR on every crop of these frames at once -> each frame's (pose, betas, cam)."""
        if not frames:
            return []
        t = time.perf_counter()
        with torch.inference_mode():
            images = frames[0].crops.images if len(frames) == 1 else torch.cat([d.crops.images for d in frames])
            params = self.engine.decode(images)
        elapsed = _ms(t)
        counts = [len(d.detections) for d in frames]
        for d, n in zip(frames, counts):
            d.times.forward = elapsed * n / sum(counts)     # the batch's time, shared by its hands
        bounds = np.cumsum([0] + counts)
        return [tuple(p[a:b] for p in params) for a, b in zip(bounds[:-1], bounds[1:])]

    def _settle(self, d: _Detected, hands: list[Hand]) -> list[Hand]:
        """Depth, the finite check and the temporal filter: the frame's hands as published."""
        stamp = d.frame.stamp
        if hands and (d.frame.depth is not None or self._scales):
            t = time.perf_counter()
            self._place_on_depth(hands, d.frame.depth, d.K, d.frame.dist, stream=stamp is not None, alive=d.alive)
            d.times.extra["depth"] = _ms(t)
        finite = [h for h in hands if h.is_finite()]
        if len(finite) < len(hands):   # never into a filter or an output
            self.nonfinite_dropped += len(hands) - len(finite)
            if time.monotonic() - self._nonfinite_logged > 10.0:
                self._nonfinite_logged = time.monotonic()
                log.warning(f"left out a hand with NaN or infinite values ({self.nonfinite_dropped} so far); "
                            "its track continues with the next good frame")
            hands = finite
        if stamp is not None:
            t = time.perf_counter()
            if self.smoother is not None:
                hands = self.smoother(hands, stamp) + self.smoother.held(d.missed, stamp)
                self.smoother.keep_only(d.alive)
            d.times.extra["filter"] = _ms(t)
        return hands

    def _mesh_hands(self, d: _Detected, params: tuple[torch.Tensor, ...]) -> list[Hand]:
        dets, K, dist, crops, times = d.detections, d.K, d.frame.dist, d.crops, d.times
        is_right = np.array([x.is_right for x in dets])
        # On a GPU the crop, network and MANO are only queued; they complete at to_host, the
        # frame's one synchronisation, so there `mano` also holds the wait for the network.
        # `hamer-ros bench` times the device stages one by one.
        t = time.perf_counter()
        with torch.inference_mode():
            if self.tracker is not None:
                params = (params[0], self._track_betas(params[1], dets, d.alive), params[2])
            host = to_host(self.model.hands_from_params(*params))   # one transfer for the camera stage
        times.mano = _ms(t)

        t = time.perf_counter()
        left = ~is_right
        vertices, joints = host["vertices"], host["joints"]
        global_orient, hand_pose, cam = host["global_orient"], host["hand_pose"], host["cam"]
        # Left crops were mirrored: undo it (in the crop camera) so every output is a real left hand.
        vertices[left], joints[left] = mirror_points(vertices[left]), mirror_points(joints[left])
        global_orient[left], hand_pose[left] = mirror_rotations(global_orient[left]), mirror_rotations(hand_pose[left])
        # The network saw each hand along the ray through its crop: turn its output onto that ray.
        rays = crop_ray_rotations(crops.centers, K, dist)
        vertices, joints = _rotate(vertices, rays), _rotate(joints, rays)
        global_orient = rays @ global_orient
        keypoints = crop_keypoints_to_image(host["keypoints_2d"], crops.centers, crops.sizes, is_right)
        d.network_keypoints = keypoints.copy()
        trans = weak_perspective_to_translation(cam, crops.centers, crops.sizes, K, is_right,
                                                focal_crop=self.model.cfg.focal_length,
                                                crop_size=self.model.cfg.image_size, dist=dist)
        # Place each hand on the detector's keypoints where there are some (rotation and
        # translation), else on the network's own 2D keypoints (translation only: they are its
        # joints through its crop camera, so they hold no rotation to fit). With the ray corrected
        # the latter beats weak perspective alone at every angle off the axis, the former beats
        # both (benchmarks/camera.py).
        observed = np.array([x.keypoints is not None for x in dets])
        if observed.any():
            keypoints[observed] = np.stack([x.keypoints for x in dets if x.keypoints is not None])
        if self.config.refine:
            if observed.any():
                turn, trans[observed] = self._place(joints[observed], keypoints[observed], K, dist, trans[observed])
                vertices[observed] = _rotate(vertices[observed], turn)
                joints[observed] = _rotate(joints[observed], turn)
                global_orient[observed] = turn @ global_orient[observed]
            if not observed.all():
                own = ~observed
                trans[own] = refine_translation(joints[own], keypoints[own], K, dist=dist, t0=trans[own])
        joints_cam = joints + trans[:, None]
        errors = reprojection_error(joints, trans, keypoints, K, dist=dist)
        frames = hand_frame(joints_cam, is_right)
        hands = []
        for i, x in enumerate(dets):
            hands.append(Hand(
                is_right=bool(x.is_right), score=float(x.score), side_score=float(x.side_score), box=x.box,
                joints=joints_cam[i],
                keypoints_2d=keypoints[i], wrist_position=joints_cam[i, 0], wrist_orientation=frames[i],
                reprojection_error=float(errors[i]), vertices=vertices[i] + trans[i],
                faces=self.faces_right if x.is_right else self.faces_left,
                global_orient=global_orient[i], hand_pose=hand_pose[i], betas=host["betas"][i],
                track_id=x.track_id))
        times.camera = _ms(t)
        return hands

    def _place_on_depth(self, hands: list[Hand], depth: np.ndarray | None, K: np.ndarray,
                        dist: np.ndarray | None, stream: bool, alive: set[int]) -> None:
        """Scales the hands along their rays, in place. A tracked hand of a stream goes through its
        track's TrackScales (size kept through frames without depth, hysteresis, a ramp); any other
        hand is scaled onto this frame's depth where depth can place it."""
        anchor = None
        if depth is not None:
            surfaces = [front_faces(h.vertices, h.faces) if h.vertices is not None
                        else joint_surface_points(h.joints[None])[0] for h in hands]
            anchor = anchor_on_depth(surfaces, depth, K, dist)
        for i, h in enumerate(hands):
            measured = float(anchor.scale[i]) if anchor is not None and anchor.used[i] else None
            if stream and h.track_id >= 0:
                scale, h.placement = self._scales.place(h.track_id, measured)
            elif measured is not None:
                scale, h.placement = measured, "rgbd"
            else:
                continue
            if h.placement == "rgbd":
                h.depth_residual = float(anchor.residual[i])
            if h.placement != "rgb":
                _scale_about_camera(h, scale)
        if self.tracker is not None:
            self._scales.keep_only(alive)

    def _track_betas(self, betas: torch.Tensor, dets: list[Detection], alive: set[int]) -> torch.Tensor:
        """Each track's running mean of its MANO shape (one person's hand does not change shape),
        kept on the device: no synchronisation."""
        out = betas.clone()
        for i, d in enumerate(dets):
            mean, n = self._betas.get(d.track_id, (betas[i], 0))
            mean = mean + (betas[i] - mean) / (n + 1)
            self._betas[d.track_id] = (mean, min(n + 1, 100))   # a slow moving average past 100 frames
            out[i] = mean
        for tid in [t for t in self._betas if t not in alive]:
            del self._betas[tid]
        return out

    def _joint_hands(self, dets: list[Detection], K: np.ndarray, dist: np.ndarray | None,
                     times: StageTimes) -> list[Hand]:
        t = time.perf_counter()
        dets = [d for d in dets if d.world_joints is not None and d.keypoints is not None]
        if not dets:
            times.camera = _ms(t)
            return []
        world = np.stack([d.world_joints for d in dets]).astype(np.float64)
        kp = np.stack([d.keypoints for d in dets]).astype(np.float64)
        # MediaPipe's crop is centred on the hand: the box centre.
        centres = np.stack([(d.box[:2] + d.box[2:]) / 2.0 for d in dets]).astype(np.float64)
        depths = [d.keypoint_depth for d in dets]
        depth = np.stack(depths).astype(np.float64) if all(z is not None for z in depths) else None
        joints_cam = place_landmarks(world, kp, depth, centres, K, dist, fit_rotation=self.config.fit_rotation)
        trans = joints_cam[:, 0]
        world = joints_cam - trans[:, None]
        errors = reprojection_error(world, trans, kp, K, dist=dist)
        is_right = np.array([d.is_right for d in dets])
        frames = hand_frame(joints_cam, is_right)
        hands = [Hand(is_right=bool(d.is_right), score=float(d.score), side_score=float(d.side_score), box=d.box,
                      joints=joints_cam[i],
                      keypoints_2d=kp[i], wrist_position=joints_cam[i, 0], wrist_orientation=frames[i],
                      reprojection_error=float(errors[i]), track_id=d.track_id)
                 for i, d in enumerate(dets)]
        times.camera = _ms(t)
        return hands


def _scale_about_camera(hand: Hand, scale: float) -> None:
    """The same hand `scale` times larger and farther along the same rays: every projection, and
    so the reprojection error, stays exactly as it was."""
    hand.joints = hand.joints * scale
    hand.wrist_position = hand.joints[0]
    if hand.vertices is not None:
        hand.vertices = hand.vertices * scale
    hand.scale = scale


def _rotate(points: np.ndarray, R: np.ndarray) -> np.ndarray:
    """[N,P,3] points turned by [N,3,3] rotations about the origin."""
    return points @ np.swapaxes(R, -1, -2)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def pipeline_from_paths(checkpoint: str | Path | None, mano: str | Path | None, **kwargs: Any) -> HandPipeline:
    return HandPipeline(PipelineConfig(checkpoint=str(checkpoint or ""), mano=str(mano or ""), **kwargs))
