"""Temporal smoothing of tracked hands on the image stamps: One-Euro filters (Casiez et al., CHI
2012: a low-pass whose cutoff rises with the signal's speed, so a still hand is steady and a moving
one does not lag), on vectors and on rotations. Pure numpy, no ROS.

Stamps are the images' (seconds), never arrival times: a frame that sat in a queue is filtered as
of when it was taken. A stamp that does not advance leaves the state unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .hand_frame import hand_frame
from .so3 import so3_exp, so3_log
from .types import Hand


@dataclass(frozen=True)
class FilterConfig:
    min_cutoff: float = 0.5     # Hz: the cutoff of a still hand (lower = steadier, laggier)
    beta: float = 15.0          # Hz per (m/s): how fast the cutoff rises with speed
    d_cutoff: float = 1.0       # Hz: the cutoff of the speed estimate itself
    # Rotations: a turn of w rad/s counts like a point 10 cm from the wrist moving at 0.1 w m/s.
    rotation_radius: float = 0.10


def _alpha(dt: float | np.ndarray, cutoff: float | np.ndarray) -> float | np.ndarray:
    """Smoothing factor of an exponential filter with this cutoff (Hz) for a step of dt seconds."""
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * dt * cutoff))


def one_euro_step(value: np.ndarray, velocity: np.ndarray, x: np.ndarray, dt: np.ndarray,
                  config: FilterConfig, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One step of the One-Euro filter for a batch [B, ..., d] (dt [B] > 0): returns the new value
    and velocity. The velocity vector is low-passed before its norm (over the last axis) sets the
    cutoff: noise averages out, a motion does not. `scale` converts the signal's units to metres."""
    dt = dt.reshape((-1,) + (1,) * (x.ndim - 1))
    change = x - value
    velocity = velocity + _alpha(dt, config.d_cutoff) * (change / dt - velocity)
    speed = np.sqrt((velocity * velocity).sum(-1, keepdims=True))
    return value + _alpha(dt, config.min_cutoff + (config.beta * scale) * speed) * change, velocity


def rotation_one_euro_step(value: np.ndarray, velocity: np.ndarray, R: np.ndarray, dt: np.ndarray,
                           config: FilterConfig) -> tuple[np.ndarray, np.ndarray]:
    """One-Euro on the rotation group for a batch [B,3,3]: the step from the filtered rotation to
    the new one is taken in its tangent space (log map) and only a fraction of it applied (a
    slerp), the fraction set by the angular speed. The result is exactly a rotation; nothing is
    averaged element-wise."""
    step = so3_log(np.swapaxes(value, 1, 2) @ R)            # in the filtered frame
    velocity = velocity + _alpha(dt, config.d_cutoff)[:, None] * (step / dt[:, None] - velocity)
    speed = np.sqrt((velocity * velocity).sum(-1)) * config.rotation_radius
    a = _alpha(dt, config.min_cutoff + config.beta * speed)
    return value @ so3_exp(a[:, None] * step), velocity


class OneEuro:
    """A One-Euro filter on one signal [..., d] (a box's corners, a point set)."""

    def __init__(self, config: FilterConfig, scale: float = 1.0) -> None:
        self.config, self.scale = config, scale
        self.value: np.ndarray | None = None
        self._velocity: np.ndarray | None = None
        self._stamp = 0.0

    def __call__(self, x: np.ndarray, stamp: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.value is None or self.value.shape != x.shape:
            self.value, self._velocity, self._stamp = x.copy(), np.zeros_like(x), stamp
            return self.value
        if stamp <= self._stamp:
            return self.value
        value, velocity = one_euro_step(self.value[None], self._velocity[None], x[None],
                                        np.array([stamp - self._stamp]), self.config, self.scale)
        self.value, self._velocity, self._stamp = value[0], velocity[0], stamp
        return self.value


class RotationOneEuro:
    """rotation_one_euro_step on one rotation."""

    def __init__(self, config: FilterConfig) -> None:
        self.config = config
        self.value: np.ndarray | None = None
        self._velocity = np.zeros(3)
        self._stamp = 0.0

    def __call__(self, R: np.ndarray, stamp: float) -> np.ndarray:
        R = np.asarray(R, dtype=np.float64)
        if self.value is None:
            self.value, self._velocity, self._stamp = R.copy(), np.zeros(3), stamp
            return self.value
        if stamp <= self._stamp:
            return self.value
        value, velocity = rotation_one_euro_step(self.value[None], self._velocity[None], R[None],
                                                 np.array([stamp - self._stamp]), self.config)
        self.value, self._velocity, self._stamp = value[0], velocity[0], stamp
        return self.value


@dataclass
class _TrackState:
    is_right: bool
    position: np.ndarray          # [21,3]: the wrist (row 0), then joints 1-20 in the hand frame
    velocity: np.ndarray
    rotation: np.ndarray          # hand frame -> camera
    angular: np.ndarray           # [3]
    stamp: float
    last: Hand


@dataclass
class HandSmoother:
    """Per track: the wrist position, the hand frame's rotation and the joints in that frame, each
    One-Euro filtered (all hands of a frame in one batch); the joints (and the mesh, rigidly) are
    rebuilt from the filtered pose. Also holds a track's last hand for `hold_time` seconds after it
    was last seen, flagged held."""

    config: FilterConfig = field(default_factory=FilterConfig)
    hold_time: float = 0.1
    _tracks: dict[int, _TrackState] = field(default_factory=dict)

    def reset(self) -> None:
        self._tracks.clear()

    def __call__(self, hands: list[Hand], stamp: float) -> list[Hand]:
        out = list(hands)
        idx = [i for i, h in enumerate(hands) if h.track_id >= 0]
        if not idx:
            return out
        frames = np.stack([hands[i].wrist_orientation for i in idx]).astype(np.float64)
        joints = np.stack([hands[i].joints for i in idx]).astype(np.float64)
        position = (joints - joints[:, :1]) @ frames                 # joints in the hand frame (row 0: 0)
        position[:, 0] = joints[:, 0]                                 # ... and the wrist
        states = [self._tracks.get(hands[i].track_id) for i in idx]
        run = [k for k, s in enumerate(states) if s is not None and s.is_right == hands[idx[k]].is_right
               and stamp > s.stamp]
        rotation = frames.copy()
        if run:
            st = [states[k] for k in run]
            dt = np.array([stamp - s.stamp for s in st])
            pos, vel = one_euro_step(np.stack([s.position for s in st]), np.stack([s.velocity for s in st]),
                                     position[run], dt, self.config)
            rot, ang = rotation_one_euro_step(np.stack([s.rotation for s in st]), np.stack([s.angular for s in st]),
                                              frames[run], dt, self.config)
            position[run], rotation[run] = pos, rot
        else:
            vel, ang = None, None
        smoothed = position[:, :1] + position @ np.swapaxes(rotation, 1, 2)
        smoothed[:, 0] = position[:, 0]
        # the hand frame of the smoothed joints (it is a function of them): the published joints,
        # orientation and local joints agree exactly
        sides = np.array([hands[i].is_right for i in idx])
        R = hand_frame(smoothed, sides)
        turn = R @ np.swapaxes(frames, 1, 2)
        ran = dict(zip(run, range(len(run))))
        for k, i in enumerate(idx):
            h = hands[i]
            s = states[k]
            if s is not None and k not in ran and s.is_right == h.is_right and stamp <= s.stamp:
                out[i] = s.last                                       # no time has passed: as before
                continue
            vertices = None
            if h.vertices is not None:   # the mesh follows the filtered rigid motion
                vertices = (h.vertices - h.wrist_position) @ turn[k].T + smoothed[k, 0]
            out[i] = replace(h, joints=smoothed[k], wrist_position=smoothed[k, 0], wrist_orientation=R[k],
                             vertices=vertices,
                             global_orient=None if h.global_orient is None else turn[k] @ h.global_orient)
            if k in ran:
                j = ran[k]
                self._tracks[h.track_id] = _TrackState(h.is_right, position[k], vel[j], rotation[k], ang[j], stamp,
                                                       out[i])
            else:
                self._tracks[h.track_id] = _TrackState(h.is_right, position[k], np.zeros_like(position[k]), rotation[k],
                                                       np.zeros(3), stamp, out[i])
        return out

    def held(self, track_ids: list[int], stamp: float) -> list[Hand]:
        """The last hand of each given (missed) track seen at most `hold_time` ago, flagged held."""
        out = []
        for tid in track_ids:
            s = self._tracks.get(tid)
            if s is not None and 0.0 < stamp - s.stamp <= self.hold_time:
                out.append(replace(s.last, held=True))
        return out

    def keep_only(self, track_ids: set[int]) -> None:
        """Forget the filters of tracks that no longer exist."""
        for tid in list(self._tracks):
            if tid not in track_ids:
                del self._tracks[tid]
