"""One frame in, hands out: detection, crops, camera geometry, tracking. No ROS here."""
from .camera import (crop_keypoints_to_image, fov_camera, mirror_points, mirror_rotations, project_points,
                     refine_translation, reference_camera, reprojection_error, weak_perspective_to_translation)
from .crop import HandCrops, crop_boxes, crop_hands
from .detect import FixedRoiDetector, HandDetector, make_detector
from .hand_frame import hand_frame, local_joints
from .pipeline import Frame, HandPipeline, PipelineConfig
from .track import HandTracker
from .types import Detection, Hand, StageTimes

__all__ = ["crop_hands", "HandCrops", "crop_boxes", "weak_perspective_to_translation", "refine_translation",
           "reprojection_error", "project_points", "mirror_points", "mirror_rotations",
           "crop_keypoints_to_image", "reference_camera", "fov_camera", "FixedRoiDetector", "HandDetector",
           "make_detector", "hand_frame", "local_joints", "HandPipeline", "PipelineConfig", "Frame",
           "HandTracker", "Detection", "Hand", "StageTimes"]
