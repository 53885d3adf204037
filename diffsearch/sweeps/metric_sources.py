"""Where a trial's metric comes from, besides the JSON lines of its stdout: files the program writes as it
trains, read while it runs (so a pruner can stop it), for scripts that log the way people's scripts do.

- ``TensorBoardEvents``: the event files of ``torch.utils.tensorboard.SummaryWriter`` (accelerate's default
  tracker, Lightning's TensorBoardLogger, Keras' callback), read with TensorBoard's own incremental reader
  (``EventFileLoader``, which resumes where it stopped and waits out a half-written record); a tag is a metric
  name (``train_loss``, ``val/fid``), an event's step is the report's step. ``add_scalars(main, {sub: v})``
  writes a folder per ``sub``; its values are named ``main/sub``.
- ``WandbRun``: a run of the ``wandb`` package, which the trial runs offline in its own folder (see
  ``wandb_environment``), read from the run's transaction log (``run-<id>.wandb``); a logged key is a metric
  name (``val.loss`` for ``{"val": {"loss": ...}}``), ``_step`` (``wandb.log(..., step=n)``) the step.

Every source keeps its place in its files, so ``poll`` returns only what was written since the last poll.
``looked`` says where the source looked and what it found there, for the reason of a trial that reported
nothing.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

from diffsearch.errors import TrialFailed
from diffsearch.sweeps.report_lines import Report

TRIAL_DIR_MACRO = "${trial_dir}"
PARAM_FILE = "wandb-sweep-params.yaml"  # the trial's values, as W&B's agent writes them for wandb.config
FLUSH_SECONDS = "1"  # how often wandb writes its transaction log (its default: 15 s)


class MetricSource:
    """A place a trial's program writes metrics to; ``poll`` reads what is new there."""

    name = ""

    def __init__(self, root: Path, metric: str):
        self.root, self.metric = Path(root), metric
        self.seen: set[str] = set()  # every metric name met, for ``looked``
        self.files = 0

    def poll(self) -> list[Report]:
        raise NotImplementedError

    def looked(self) -> str:
        raise NotImplementedError

    def _others(self) -> str:
        names = sorted(self.seen)
        shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        return f"they hold {shown}" if names else "they hold no numbers"


# ---- TensorBoard ----------------------------------------------------------------------------------------


class TensorBoardEvents(MetricSource):
    """The scalars of every TensorBoard event file under ``root`` (found again at each poll: writers start
    files late, and accelerate puts them in a folder of the project's name)."""

    name = "tensorboard"

    def __init__(self, root: Path, metric: str):
        super().__init__(root, metric)
        self._loaders: dict[Path, Any] = {}

    def poll(self) -> list[Report]:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

        reports = []
        for path in sorted(self.root.rglob("events.out.tfevents.*")) if self.root.is_dir() else ():
            if path not in self._loaders:
                self._loaders[path] = EventFileLoader(str(path))
                self.files += 1
            for event in self._loaders[path].Load():
                for value in event.summary.value:
                    number = _tensor_number(value)
                    if number is None:
                        continue
                    names = _names_of(value.tag, path.parent)
                    self.seen.update(names)
                    if self.metric in names:
                        reports.append(Report(int(event.step), number, {"step": int(event.step), self.metric: number}))
        return reports

    def looked(self) -> str:
        if not self.files:
            return f"no TensorBoard event files under {self.root}"
        return f"{self.files} TensorBoard event file(s) under {self.root}: {self._others()}"


def _tensor_number(value: Any) -> float | None:
    """A scalar summary's number (TensorBoard's reader has turned every scalar into a tensor); None for
    histograms, images, text."""
    from tensorboard.util import tensor_util

    if value.WhichOneof("value") != "tensor":
        return float(value.simple_value) if value.WhichOneof("value") == "simple_value" else None
    try:
        array = tensor_util.make_ndarray(value.tensor)
    except (TypeError, ValueError):
        return None
    if array.size != 1 or array.dtype.kind not in "fiub":
        return None
    return float(array.reshape(()))


def _names_of(tag: str, folder: Path) -> set[str]:
    # add_scalars("loss", {"train": v}) writes tag "loss" into a folder "loss_train": that value is loss/train
    if folder.name.startswith(tag + "_"):
        return {f"{tag}/{folder.name[len(tag) + 1 :]}"}
    return {tag}


# ---- wandb -----------------------------------------------------------------------------------------------


def wandb_environment(trial_dir: Path, params: dict[str, Any], environ: dict[str, str]) -> dict[str, str]:
    """The environment under which a program using ``wandb`` runs as under W&B's sweep agent, offline.

    The agent writes the run's values to a file and names it in ``WANDB_SWEEP_PARAM_PATH``; ``wandb.init``
    loads it into ``wandb.config``, locked against the program's own defaults (wandb_agent.py, wandb_setup.py
    of the ``wandb`` package), so a script that reads ``wandb.config.lr`` trains with the trial's value. The
    run is offline (unless ``WANDB_MODE`` says otherwise) and kept in the trial's folder (``WANDB_DIR``); its
    transaction log is written every second instead of every 15, so reports reach a pruner while it trains.
    """
    import yaml

    path = Path(trial_dir) / PARAM_FILE
    # wandb's own format (config_util.save_config_file_from_dict): a version line, then {name: {value: v}}
    path.write_text(
        "wandb_version: 1\n\n"
        + yaml.safe_dump(
            {name: {"value": value} for name, value in params.items()}, sort_keys=False, allow_unicode=True
        )
    )
    return {
        "WANDB_SWEEP_PARAM_PATH": str(path),
        "WANDB_DIR": str(trial_dir),
        "WANDB_MODE": environ.get("WANDB_MODE", "offline"),
        "WANDB__TRANSACTION_LOG_FLUSH_INTERVAL": environ.get("WANDB__TRANSACTION_LOG_FLUSH_INTERVAL", FLUSH_SECONDS),
    }


class WandbRun(MetricSource):
    """The history (``wandb.log``) of each wandb run under ``root``, read from its transaction log.

    Why the transaction log: it is the one record wandb writes while a run trains, online or offline (the
    summary and history files of older versions are gone or written at the end); wandb's own terminal viewer
    (``wandb beta leet``) follows a running run by reading it. Its format is LevelDB's log format (blocks of
    records, each with a CRC32 and a length) behind a 7-byte header; each record is a protobuf ``Record`` of
    the ``wandb`` package, decoded with the package's own classes. A record not yet completely written is
    read again at the next poll.
    """

    name = "wandb"

    def __init__(self, root: Path, metric: str):
        super().__init__(root, metric)
        self._logs: dict[Path, _TransactionLog] = {}

    def poll(self) -> list[Report]:
        reports = []
        for path in sorted(self.root.rglob("run-*.wandb")) if self.root.is_dir() else ():
            if path not in self._logs:
                self._logs[path] = _TransactionLog(path)
                self.files += 1
            for history in self._logs[path].histories():
                row = _history_row(history)
                self.seen.update(name for name in row if not name.startswith("_"))
                if self.metric in row:
                    value, step = row[self.metric], row.get("_step")
                    if isinstance(value, bool) or not isinstance(value, (int, float)):
                        raise TrialFailed(f"metric {self.metric!r} was logged to wandb as {value!r}, not a number")
                    reports.append(
                        Report(
                            step if isinstance(step, int) else None, float(value), {"step": step, self.metric: value}
                        )
                    )
        return reports

    def looked(self) -> str:
        if not self.files:
            return f"no wandb run under {self.root} (the program never called wandb.init)"
        unread = [str(path) for path, log in self._logs.items() if log.broken]
        if unread:
            return f"wandb run(s) under {self.root} written in a format this wandb reader does not know: {unread[0]}"
        return f"the wandb run under {self.root}: {self._others().replace('they hold', 'it logged')}"


def _history_row(history: Any) -> dict[str, Any]:
    """A ``HistoryRecord`` as {name: value}; a nested key (``{"val": {"loss": x}}``) is ``val.loss``."""
    row: dict[str, Any] = {}
    for item in history.item:
        name = ".".join(item.nested_key) if item.nested_key else item.key
        try:
            row[name] = json.loads(item.value_json)  # Python's json reads NaN and Infinity, as wandb writes them
        except ValueError:
            continue
    if "_step" not in row and history.HasField("step"):
        row["_step"] = history.step.num
    return row


_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)  # ident, magic, version
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class _TransactionLog:
    """A wandb transaction log read as it grows: ``histories`` yields the history records written since the
    last call."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0  # where the next unread record starts
        self.broken = False

    def histories(self) -> Iterator[Any]:
        try:
            from wandb.proto import wandb_internal_pb2
        except ImportError:  # the program ran wandb from another environment than diffsearch's
            raise TrialFailed(
                f"the program wrote a wandb run ({self.path}), which diffsearch reads with the wandb "
                "package: install it beside diffsearch (pip install wandb)"
            ) from None
        if self.broken:
            return
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        base = self.offset
        if base == 0:
            if len(data) < len(_HEADER):
                return
            if data[: len(_HEADER)] != _HEADER:
                self.broken = True
                return
        for payload, end in _records(data, base):
            self.offset = end
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(payload)
            except Exception:  # noqa: BLE001 - a record of a newer wandb we cannot decode: skipped
                continue
            if record.WhichOneof("record_type") == "history":
                yield record.history


def _records(data: bytes, base: int) -> Iterator[tuple[bytes, int]]:
    """Complete records in ``data`` (which starts at file offset ``base``) and the offset after each; stops at
    a record still being written (its length runs past the end, or its CRC does not match yet)."""
    position = max(base, len(_HEADER))
    pending = b""
    while True:
        room = _BLOCK - position % _BLOCK
        if room < 7:  # a block's tail too short for a record header is zero-filled
            position += room
            continue
        start = position - base
        if start + 7 > len(data):
            return
        crc, length, kind = struct.unpack("<IHB", data[start : start + 7])
        payload = data[start + 7 : start + 7 + length]
        if (
            len(payload) < length
            or kind not in (_FULL, _FIRST, _MIDDLE, _LAST)
            or zlib.crc32(bytes([kind]) + payload) & 0xFFFFFFFF != crc
        ):
            return  # not written out yet: read again from the last complete record at the next poll
        position += 7 + length
        if kind == _FULL:
            yield payload, position
        elif kind == _FIRST:
            pending = payload
        elif kind == _MIDDLE:
            pending += payload
        else:
            yield pending + payload, position
            pending = b""


# ---- which sources a trial reads ------------------------------------------------------------------------

FILE_SOURCES = {"tensorboard": TensorBoardEvents, "wandb": WandbRun}


def file_sources(source: str, path: str | None, trial_dir: Path, metric: str) -> list[MetricSource]:
    """The file sources a trial's metric may come from: ``auto`` reads all; ``stdout`` none.

    ``path`` (``metric.path``): where the files are, relative to the trial's folder (or absolute; may hold
    ``${trial_dir}``); by default the trial's folder itself, searched to any depth.
    """
    if source == "stdout":
        return []
    root = Path(trial_dir)
    if path:
        root = Path(path.replace(TRIAL_DIR_MACRO, str(trial_dir)))
        if not root.is_absolute():
            root = Path(trial_dir) / root
    names = list(FILE_SOURCES) if source == "auto" else [source]
    return [FILE_SOURCES[name](root, metric) for name in names]


def uses_wandb(source: str) -> bool:
    return source in ("auto", "wandb")
