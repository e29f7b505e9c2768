"""Tiny raw input files in the formats of the shared data (MNIST IDX, PhysioNet 2012).

Tests and the harness smoke test write these into a temporary folder, so that every loader runs
in CI without ``../shared/data``.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np

OUTCOMES_HEADER = "RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death"


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """The IDX encoding of ``array`` (magic ``0 0 type ndim``, big-endian sizes, data)."""
    header = bytes([0, 0, type_code, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def write_tiny_mnist(
    folder: Path, n_per_digit: int = 8, seed: int = 0, compress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Write a tiny MNIST training set (IDX) into ``folder``; return (images, labels).

    ``n_per_digit`` images of each of the digits 3 and 6, plus three '1's, in shuffled order.
    Each image is an off-centre vertical bar (position, length, width and intensity vary), so
    that rotation and shift visibly move it.
    """
    rng = np.random.default_rng(seed)
    labels = np.array([3] * n_per_digit + [6] * n_per_digit + [1] * 3, dtype=np.uint8)
    labels = labels[rng.permutation(labels.size)]
    images = np.zeros((labels.size, 28, 28), dtype=np.uint8)
    for image in images:
        top, col = rng.integers(4, 8), rng.integers(15, 19)
        length, width = rng.integers(14, 19), rng.integers(2, 4)
        image[top : top + length, col : col + width] = rng.integers(180, 256)
    folder.mkdir(parents=True, exist_ok=True)
    pack = gzip.compress if compress else (lambda raw: raw)
    suffix = ".gz" if compress else ""
    (folder / f"train-images-idx3-ubyte{suffix}").write_bytes(pack(idx_bytes(images)))
    (folder / f"train-labels-idx1-ubyte{suffix}").write_bytes(pack(idx_bytes(labels)))
    return images, labels


def physionet_record(rid, age=60, gender=1, icu=2, weight=-1, rows=()) -> str:
    """A PhysioNet 2012 record: the general descriptors at 00:00, then ``(time, name, value)``."""
    lines = [
        "Time,Parameter,Value",
        f"00:00,RecordID,{rid}",
        f"00:00,Age,{age}",
        f"00:00,Gender,{gender}",
        "00:00,Height,170.2",
        f"00:00,ICUType,{icu}",
        f"00:00,Weight,{weight}",
    ]
    lines += [f"{time},{param},{value}" for time, param, value in rows]
    return "\n".join(lines) + "\n"


def write_physionet(
    root: Path, records: dict[int, str], deaths: dict[int, int], set_name: str = "a"
) -> Path:
    """``set-<set_name>.tar.gz`` holding ``records`` and ``Outcomes-<set_name>.txt``."""
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(root / f"set-{set_name}.tar.gz", "w:gz") as tar:
        directory = tarfile.TarInfo(f"set-{set_name}")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for rid, text in records.items():
            payload = text.encode()
            info = tarfile.TarInfo(f"set-{set_name}/{rid}.txt")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    outcome = [OUTCOMES_HEADER] + [f"{rid},10,5,7,-1,{deaths[rid]}" for rid in records]
    (root / f"Outcomes-{set_name}.txt").write_text("\n".join(outcome) + "\n")
    return root


def write_tiny_physionet(folder: Path, n_patients: int = 6) -> Path:
    """``n_patients`` records with HR every hour and Temp every third hour."""
    records = {}
    for rid in range(1, n_patients + 1):
        rows = [(f"{h:02d}:15", "HR", 70 + (rid * h) % 13) for h in range(48)]
        rows += [(f"{h:02d}:40", "Temp", 36 + (h % 5) / 5) for h in range(0, 48, 3)]
        records[rid] = physionet_record(
            rid, age=40 + rid, gender=rid % 2, icu=rid % 4 + 1, rows=rows
        )
    return write_physionet(folder, records, {rid: rid % 2 for rid in records})
