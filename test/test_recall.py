"""The recall benchmark's counting (benchmarks/recall.py) on synthetic boxes, and its annotation file
against the example photos."""
import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import recall
from benchmarks.recall import ANNOTATIONS, Box, Counts, match
from hamer_ros.perception.track import iou_matrix

REPO = Path(__file__).resolve().parents[1]


def hand(x1, y1, x2, y2, side="right", partial=False):
    return Box((float(x1), float(y1), float(x2), float(y2)), side, partial)


def shifted(b, dx, dy=0.0, side=None):
    x1, y1, x2, y2 = b.box
    return hand(x1 + dx, y1 + dy, x2 + dx, y2 + dy, side or b.side)


HANDS = [hand(10, 10, 110, 150, "right"), hand(300, 40, 400, 160, "left"), hand(500, 300, 620, 420, "right")]


def test_perfect_detections_are_all_found_with_precision_one():
    m = match(HANDS, list(reversed(HANDS)))          # order does not matter
    c = m.counts
    assert (c.found, c.visible, c.false, c.detections) == (3, 3, 0, 3)
    assert c.precision == 1.0 and c.recall == 1.0
    assert c.side_agree == 3 and c.iou_sum == pytest.approx(3.0)
    assert sorted((h, d) for h, d, _ in m.pairs) == [(0, 2), (1, 1), (2, 0)]
    assert m.missed == [] and m.false == []


def test_a_shifted_duplicate_counts_once_found_and_once_false():
    dup = shifted(HANDS[0], 15)                      # IoU with the hand 85/115 = 0.74: eligible too
    assert iou_matrix(np.array([HANDS[0].box]), np.array([dup.box]))[0, 0] > 0.3
    m = match(HANDS[:1], [HANDS[0], dup])
    c = m.counts
    assert (c.found, c.visible, c.false, c.detections) == (1, 1, 1, 2)
    assert c.precision == 0.5 and c.recall == 1.0
    assert m.pairs == [(0, 0, 1.0)] and m.false == [1]    # the better box is the one paired


def test_interlaced_hands_each_matched_to_its_own_detection():
    # Two hands whose boxes overlap each other at IoU 0.48 (like test3.jpg's crossed hands), each
    # detected by its own box: each detection must go to its own hand, not both to one.
    a, b = hand(0, 0, 100, 100, "right"), hand(0, 0, 100, 48, "left")
    assert iou_matrix(np.array([a.box]), np.array([b.box]))[0, 0] == pytest.approx(0.48)
    m = match([a, b], [b, a])
    assert sorted((h, d) for h, d, _ in m.pairs) == [(0, 1), (1, 0)]
    assert m.counts.found == 2 and m.counts.false == 0 and m.counts.side_agree == 2


def test_pairing_prefers_more_pairs_over_a_higher_total_iou():
    # d0 fits hand 0 almost exactly, but hand 1 can only be paired with d0 and hand 0 also with d1:
    # the largest total IoU alone would pair hand 0 with d0 and leave hand 1 unfound.
    h0, h1 = hand(0, 0, 100, 100), hand(50, 0, 150, 100)
    d0, d1 = hand(2, 0, 102, 100), hand(-50, 0, 50, 100)
    iou = iou_matrix(np.array([h0.box, h1.box]), np.array([d0.box, d1.box]))
    assert min(iou[0, 0], iou[1, 0], iou[0, 1]) >= 0.3 and iou[1, 1] < 0.3
    assert iou[0, 0] > iou[1, 0] + iou[0, 1]
    m = match([h0, h1], [d0, d1])
    assert sorted((h, d) for h, d, _ in m.pairs) == [(0, 1), (1, 0)]
    assert m.counts.found == 2 and m.counts.false == 0


def test_below_the_threshold_is_a_miss_and_a_false_detection():
    far = shifted(HANDS[0], 80)                      # IoU 20/180 = 0.11
    m = match(HANDS[:1], [far])
    c = m.counts
    assert (c.found, c.false) == (0, 1) and c.precision == 0.0 and c.recall == 0.0
    assert m.missed == [0] and m.false == [0]


def test_side_disagreement_is_counted_among_matches():
    dets = [shifted(HANDS[0], 0, side="left"), HANDS[1], shifted(HANDS[2], 0, side="left")]
    c = match(HANDS, dets).counts
    assert c.found == 3 and c.side_agree == 1 and c.pairs == 3
    assert c.recall == 1.0 and c.precision == 1.0         # a wrong side is still a found hand


def test_a_missed_partial_hand_does_not_lower_recall():
    hands = HANDS + [hand(700, 10, 760, 60, "left", partial=True)]
    c = match(hands, HANDS).counts
    assert (c.found, c.visible, c.partial_found, c.partial) == (3, 3, 0, 1)
    assert c.recall == 1.0 and c.false == 0 and c.precision == 1.0
    assert match(hands, HANDS).missed == []               # and it is not drawn as a miss


def test_a_found_partial_hand_counts_found_not_false():
    hands = [HANDS[0], hand(700, 10, 760, 60, "left", partial=True)]
    c = match(hands, [HANDS[0], hands[1]]).counts
    assert (c.found, c.visible, c.partial_found, c.partial, c.false) == (1, 1, 1, 1, 0)
    assert c.precision == 1.0 and c.recall == 1.0 and c.pairs == 2


def test_nothing_to_find_and_nothing_found():
    c = match([], []).counts
    assert (c.found, c.visible, c.false, c.detections) == (0, 0, 0, 0)
    assert np.isnan(c.precision) and np.isnan(c.recall)
    c = match(HANDS, []).counts
    assert c.recall == 0.0 and np.isnan(c.precision)


def test_counts_add_up_over_photos():
    total = match(HANDS, HANDS[:2]).counts + match(HANDS[:1], [HANDS[0], shifted(HANDS[0], 15)]).counts
    assert (total.found, total.visible, total.false, total.detections) == (3, 4, 1, 4)
    assert isinstance(total, Counts) and total.recall == 0.75 and total.precision == 0.75


def test_a_mode_that_cannot_start_is_a_row_saying_why(monkeypatch, tmp_path):
    def missing(_hands):
        raise ImportError("needs the palm model: pip install something")
    monkeypatch.setitem(recall.MODES, "palm", recall.Mode(missing, "a detector whose dependency is missing"))
    monkeypatch.setitem(recall.MODES, "unregistered", recall.Mode(recall.registered("no-such-detector"), "not yet"))
    photo = recall.Photo("blank.jpg", np.zeros((8, 8, 3), np.uint8), list(HANDS))
    for name, why in (("palm", "needs the palm model"), ("unregistered", "unknown hand detector")):
        rows = recall.bench_mode(name, [photo], repeat=1, out=tmp_path)
        assert len(rows) == 1 and rows[0].startswith(f"| {name} | unavailable: ") and why in rows[0]
        assert rows[0].count("|") == 11                   # the table's 10 columns
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- the annotation file

def annotations() -> dict:
    return json.loads(ANNOTATIONS.read_text())


def photos_folder() -> Path:
    """$HAMER_ROS_EXAMPLES, else ../shared/data/hamer_examples beside the repository."""
    env = os.environ.get("HAMER_ROS_EXAMPLES")
    folder = Path(env).expanduser() if env else REPO.parent / "shared" / "data" / "hamer_examples"
    if not all((folder / name).is_file() for name in annotations()["images"]):
        pytest.skip(f"the example photos are not in {folder} (set HAMER_ROS_EXAMPLES, or run "
                    "`python -m hamer_ros.examples` and point HAMER_ROS_EXAMPLES at the folder it prints)")
    return folder


def test_annotation_covers_the_four_photos_with_valid_hands():
    images = annotations()["images"]
    assert sorted(images) == ["test1.jpg", "test2.jpg", "test3.jpg", "test4.jpg"]
    for name, entry in images.items():
        w, h = entry["size"]
        assert len(entry["sha256"]) == 64 and entry["hands"], name
        for k, a in enumerate(entry["hands"]):
            x1, y1, x2, y2 = a["box"]
            # inside the image, pixel centres at integers: 0 <= x <= w - 1
            assert 0 <= x1 < x2 <= w - 1 and 0 <= y1 < y2 <= h - 1, (name, k, a["box"])
            assert a["side"] in ("left", "right") and isinstance(a["partial"], bool), (name, k)


def test_annotation_hashes_and_sizes_match_the_photos():
    folder = photos_folder()
    for name, entry in annotations()["images"].items():
        data = (folder / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert [img.shape[1], img.shape[0]] == entry["size"], name
