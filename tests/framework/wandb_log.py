"""Read what an offline W&B run wrote: its `run-<id>.wandb` event log.

The log is a LevelDB-style record file (a 7-byte `:W&B` header, then 32 KiB blocks of
chunks, each `crc32 (4) | length (2) | type (1) | payload`, type 1 = whole record,
2/3/4 = first/middle/last piece) whose records are `wandb_internal_pb2.Record`s.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK_SIZE = 32768
CHUNK_HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class WandbLog:
    run: Any = None  # the RunRecord: id, project, tags, group, config
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def _payloads(data: bytes) -> list[bytes]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B event log")
    payloads, pending, offset = [], b"", 7
    while offset + CHUNK_HEADER.size <= len(data):
        room = BLOCK_SIZE - offset % BLOCK_SIZE
        _, length, kind = CHUNK_HEADER.unpack_from(data, offset)
        if room < CHUNK_HEADER.size or kind == 0:  # block trailer padding
            offset += room
            continue
        chunk = data[offset + CHUNK_HEADER.size : offset + CHUNK_HEADER.size + length]
        offset += CHUNK_HEADER.size + length
        if kind == FULL:
            payloads.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            payloads.append(pending + chunk)
    return payloads


def read_wandb_log(path: Path) -> WandbLog:
    log = WandbLog()
    for payload in _payloads(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            log.run = record.run
            log.config = {item.key: json.loads(item.value_json) for item in record.run.config.update}
        elif kind == "history":
            log.history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
    return log
