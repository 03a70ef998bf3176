"""Reading rosbag2 recordings without a ROS install: MCAP (a bag folder or a bare .mcap file) and
sqlite3 (a bag folder), as (topic, type, log time, CDR bytes) in log-time order.

MCAP is read with the `mcap` package: through its index when the file is whole, else (a recorder
killed mid-write: no summary at the end) by streaming its records up to the last complete chunk,
with `cut` saying where and why it stopped. sqlite3 bags are read with `rosbags`. Messages are
decoded (CDR → rosbags' message classes) only on request, and only those asked for.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class RecordingError(RuntimeError):
    """A recording that cannot be opened at all: the message names it and why."""


@dataclass(frozen=True)
class Message:
    topic: str
    msgtype: str          # e.g. sensor_msgs/msg/Image
    log_ns: int           # when the recorder received it
    data: bytes           # CDR


@dataclass
class Recording:
    """One recording. topics: topic -> type; counts: messages per topic; start_ns/end_ns: the
    first and last log time; cut: why reading stopped before the end (a truncated file), else None."""

    path: Path
    topics: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0
    cut: str | None = None
    _files: list[Path] = field(default_factory=list)
    _storage: str = "mcap"

    def messages(self, topics: Iterable[str], start_ns: int | None = None,
                 end_ns: int | None = None) -> Iterator[Message]:
        """The messages of these topics with start_ns <= log time < end_ns, in log-time order."""
        wanted = set(topics)
        if self._storage == "sqlite3":
            yield from self._sqlite_messages(wanted, start_ns, end_ns)
            return
        for path in self._files:
            yield from self._mcap_messages(path, wanted, start_ns, end_ns)

    def _mcap_messages(self, path: Path, wanted: set[str], start_ns: int | None,
                       end_ns: int | None) -> Iterator[Message]:
        from mcap.reader import make_reader
        with open(path, "rb") as f:
            if _mcap_summary(path) is not None:
                reader = make_reader(f)
                for schema, channel, msg in reader.iter_messages(
                        topics=list(wanted), log_time_order=True, **_time_range(reader, start_ns, end_ns)):
                    yield Message(channel.topic, schema.name if schema else "", msg.log_time, bytes(msg.data))
                return
            for channel, schema, msg in _stream(f, self):
                if channel.topic in wanted and (start_ns is None or msg.log_time >= start_ns) and (
                        end_ns is None or msg.log_time < end_ns):
                    yield Message(channel.topic, schema, msg.log_time, bytes(msg.data))

    def _sqlite_messages(self, wanted: set[str], start_ns: int | None, end_ns: int | None) -> Iterator[Message]:
        from rosbags.rosbag2 import Reader
        with Reader(self.path) as reader:
            conns = [c for c in reader.connections if c.topic in wanted]
            if not conns:
                return
            for conn, stamp, raw in reader.messages(connections=conns, start=start_ns, stop=end_ns):
                yield Message(conn.topic, conn.msgtype, stamp, bytes(raw))


def open_recording(path: str | Path) -> Recording:
    """A rosbag2 folder (metadata.yaml; MCAP or sqlite3 storage) or a bare .mcap file."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".mcap":
        return _open_mcap(p, [p])
    if not p.is_dir():
        raise RecordingError(f"{p}: not found, or not a rosbag2 folder or .mcap file")
    meta = p / "metadata.yaml"
    mcaps = sorted(p.glob("*.mcap"))
    if meta.is_file():
        try:
            info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
            raise RecordingError(f"{meta}: unreadable ({e}); a rosbag2 folder's metadata.yaml") from None
        files = [p / f for f in info.get("relative_file_paths", [])]
        if info.get("storage_identifier") == "sqlite3":
            return _open_sqlite(p)
        mcaps = [f for f in files if f.suffix == ".mcap" and f.is_file()] or mcaps
    if mcaps:
        return _open_mcap(p, mcaps)
    if list(p.glob("*.db3")):
        raise RecordingError(f"{p}: a sqlite3 bag without its metadata.yaml; run `ros2 bag reindex {p}` first")
    raise RecordingError(f"{p}: no .mcap or .db3 recording in it")


def _open_sqlite(path: Path) -> Recording:
    from rosbags.rosbag2 import Reader
    try:
        with Reader(path) as r:
            rec = Recording(path, _storage="sqlite3", start_ns=r.start_time, end_ns=r.end_time)
            for c in r.connections:
                rec.topics[c.topic] = c.msgtype
                rec.counts[c.topic] = rec.counts.get(c.topic, 0) + c.msgcount
    except Exception as e:  # noqa: BLE001 -- rosbags raises several kinds for one broken file
        raise RecordingError(f"{path}: cannot read this sqlite3 bag: {e}") from None
    return rec


def _open_mcap(path: Path, files: list[Path]) -> Recording:
    rec = Recording(path, _files=files)
    starts, ends = [], []
    for f in files:
        summary = _mcap_summary(f)
        if summary is not None:
            names = {sid: s.name for sid, s in summary.schemas.items()}
            for cid, ch in summary.channels.items():
                rec.topics[ch.topic] = names.get(ch.schema_id, "")
                n = summary.statistics.channel_message_counts.get(cid, 0) if summary.statistics else 0
                rec.counts[ch.topic] = rec.counts.get(ch.topic, 0) + n
            if summary.statistics and summary.statistics.message_count:
                starts.append(summary.statistics.message_start_time)
                ends.append(summary.statistics.message_end_time)
            continue
        # no summary: a file cut short. One pass over what is there gives topics, counts and times.
        with open(f, "rb") as fh:
            for channel, schema, msg in _stream(fh, rec):
                rec.topics[channel.topic] = schema
                rec.counts[channel.topic] = rec.counts.get(channel.topic, 0) + 1
                starts.append(msg.log_time)
                ends.append(msg.log_time)
    if not rec.topics and rec.cut:
        raise RecordingError(f"{path}: no complete message in it ({rec.cut})")
    rec.start_ns, rec.end_ns = (min(starts), max(ends)) if starts else (0, 0)
    return rec


def _time_range(reader: Any, start_ns: int | None, end_ns: int | None) -> dict[str, int | None]:
    """[start_ns, end_ns) in the keywords of the installed mcap (1.6 renamed them)."""
    import inspect
    if "starting_at" in inspect.signature(reader.iter_messages).parameters:
        return {"starting_at": start_ns, "ending_before": end_ns}
    return {"start_time": start_ns, "end_time": end_ns}


def _mcap_summary(path: Path) -> Any:
    from mcap.reader import make_reader
    try:
        with open(path, "rb") as f:
            return make_reader(f).get_summary()
    except Exception:  # noqa: BLE001 -- a file without a valid footer: read it as a stream
        return None


def _stream(f: Any, rec: Recording) -> Iterator[tuple[Any, str, Any]]:
    """(channel, schema name, message) records of an MCAP read front to back, up to where it
    breaks off; rec.cut then says where."""
    from mcap.exceptions import McapError
    from mcap.records import Channel, Message as McapMessage, Schema
    from mcap.stream_reader import StreamReader

    schemas: dict[int, str] = {}
    channels: dict[int, Any] = {}
    n = 0
    try:
        for record in StreamReader(f, skip_magic=False, emit_chunks=False).records:
            if isinstance(record, Schema):
                schemas[record.id] = record.name
            elif isinstance(record, Channel):
                channels[record.id] = record
            elif isinstance(record, McapMessage) and record.channel_id in channels:
                n += 1
                ch = channels[record.channel_id]
                yield ch, schemas.get(ch.schema_id, ""), record
    except (McapError, EOFError, struct.error, ValueError) as e:
        rec.cut = f"{Path(getattr(f, 'name', '?')).name} breaks off after {n} complete messages " \
                  f"({type(e).__name__}{': ' + str(e) if str(e) else ''})"


_TYPESTORE: Any = None


def typestore() -> Any:
    """rosbags' message types of ROS 2 (Jazzy; the image, CameraInfo and TF messages are the same
    in Humble) plus hamer_ros_msgs, from definitions/ here (a link to ros2/hamer_ros_msgs/msg)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore
        store = get_typestore(Stores.ROS2_JAZZY)
        msg_dir = Path(__file__).parent / "definitions"
        types: dict[str, Any] = {}
        for f in sorted(msg_dir.glob("*.msg")):
            types.update(get_types_from_msg(f.read_text(), f"hamer_ros_msgs/msg/{f.stem}"))
        store.register(types)
        _TYPESTORE = store
    return _TYPESTORE


def decode(msg: Message) -> Any:
    """The message as rosbags' class of its type (attributes named as in ROS 2)."""
    return typestore().deserialize_cdr(msg.data, msg.msgtype)
