"""Read PyTorch `.pth` checkpoints as tensors and plain containers, never running their code.

Upstream training checkpoints (VARSR's `{'trainer': ..., 'args': ...}`) hold objects besides
tensors: an argparse Namespace, optimizer wrappers. `torch.load(weights_only=True)` refuses the
whole file for them; a full unpickle would run whatever the file names. This reader walks the
pickle with an allowlist: tensors (rebuilt from the archive's storages), dicts, lists, numbers and
strings come back as they are; any other object becomes an inert `Skipped` that keeps its class
name and its plain-data state (so `args.pn` stays readable) and never calls into that class.
Tensors are views of the file mapped copy-on-write, so what a caller never reads (a training
checkpoint's optimizer state) takes no memory.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
import zlib
from typing import Any, BinaryIO, cast

import torch

from alignvar_edge.errors import CheckpointError
from alignvar_edge.model.checkpoint import file_kind


class Skipped:
    """Stand-in for an object the reader would not build: its class name and plain state only."""

    def __init__(self, qualname: str, state: Any = None):
        self.qualname = qualname
        self.state = state

    def get(self, key: str, default: Any = None) -> Any:
        return self.state.get(key, default) if isinstance(self.state, dict) else default

    def __repr__(self) -> str:
        return f"Skipped({self.qualname})"


def _skipped_class(qualname: str) -> type:
    class _Stub(Skipped):
        # called by REDUCE / NEWOBJ with whatever arguments the pickle gives: keep none of them
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(qualname)

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            inst = object.__new__(cls)
            Skipped.__init__(inst, qualname)
            return inst

        def __setstate__(self, state: Any) -> None:
            self.state = _plain(state)

    _Stub.__name__ = _Stub.__qualname__ = "Skipped"
    return _Stub


def _plain(state: Any) -> Any:
    """The plain-data part of an object's state (a Namespace's __dict__), nothing else."""
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
        state = {**(state[0] or {}), **state[1]} if isinstance(state[0], dict) else state[1]
    return state if isinstance(state, (dict, list, tuple, str, int, float, bool, type(None))) else None


class _Storage:
    """Raw bytes of one archived storage and the dtype they hold."""

    def __init__(self, data: torch.UntypedStorage, dtype: torch.dtype):
        self.data = data
        self.dtype = dtype


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                    *_: Any) -> torch.Tensor:
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without an archived storage")
    size, stride = tuple(size), tuple(stride)
    if not (isinstance(offset, int) and all(isinstance(v, int) for v in size + stride) and len(size) == len(stride)
            and offset >= 0 and min(size + stride, default=0) >= 0):
        raise pickle.UnpicklingError(f"a tensor of malformed extent (offset {offset!r}, size {size!r}, "
                                     f"stride {stride!r})")
    # torch would grow the storage to fit (and fail on the archive's fixed buffer): the file is damaged
    last = offset + sum((n - 1) * st for n, st in zip(size, stride)) if all(size) else -1
    held = storage.data.nbytes() // torch.empty(0, dtype=storage.dtype).element_size()
    if last >= held:
        raise pickle.UnpicklingError(f"a tensor {list(size)} reaching element {last} of a storage of {held}")
    t = torch.empty(0, dtype=storage.dtype)
    t.set_(storage.data, offset, size, stride)
    return t


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): torch.Size,
}
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool}


def _member_start(fh: BinaryIO, info: zipfile.ZipInfo) -> int:
    """Where a member's bytes begin in the file: after its local header, whose name and extra field
    may differ in length from the central directory's."""
    fh.seek(info.header_offset)
    header = fh.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header of {info.filename!r}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, fh: BinaryIO,
                 mapped: torch.UntypedStorage | None):
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.prefix = prefix
        self.fh = fh
        self.mapped = mapped

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]           # a storage type names only its dtype
        return _skipped_class(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"storage of unknown type {dtype!r}")
        info = self.archive.getinfo(f"{self.prefix}data/{key}")
        size = torch.empty(0, dtype=dtype).element_size()
        if info.file_size != numel * size:
            raise pickle.UnpicklingError(f"storage {key} holds {info.file_size} bytes, expected {numel * size}")
        # torch.save never compresses (a re-zipped file may), and a file system may refuse to map
        if info.compress_type != zipfile.ZIP_STORED or self.mapped is None:
            raw = self.archive.read(info)
            buf = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            return _Storage(buf.untyped_storage(), dtype)
        # a view of the file mapped copy-on-write: what import never uses (a training checkpoint's optimizer
        # state, the other network) costs no memory; the CRC check reads it through the page cache only
        start = _member_start(self.fh, info)
        if start + info.file_size > self.mapped.nbytes():
            raise zipfile.BadZipFile(f"{info.filename!r} reaches past the end of the file")
        data = self.mapped[start:start + info.file_size]
        if info.file_size and zlib.crc32(torch.empty(0, dtype=torch.uint8).set_(data).numpy().data) != info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
        return _Storage(data, dtype)


def read_torch_file(path: str | os.PathLike[str]) -> Any:
    """The contents of a `torch.save` zip file, with every non-plain object replaced by `Skipped`."""
    try:
        with open(path, "rb") as fh, zipfile.ZipFile(fh) as archive:
            pkl = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if len(pkl) != 1:
                raise CheckpointError(f"'{path}' is not a PyTorch checkpoint (no single data.pkl inside)")
            prefix = pkl[0][: -len("data.pkl")]
            try:
                mapped: torch.UntypedStorage | None = cast(torch.UntypedStorage, torch.UntypedStorage.from_file(
                    os.fspath(path), shared=False, nbytes=os.fstat(fh.fileno()).st_size))
            except (RuntimeError, OSError):
                mapped = None
            return _Unpickler(archive.read(pkl[0]), archive, prefix, fh, mapped).load()
    except zipfile.BadZipFile as e:
        if file_kind(path) == "zip":     # a zip whose end (or a member) is damaged: re-saving would not help
            raise CheckpointError(f"'{path}' is a damaged or truncated PyTorch checkpoint ({e}); an interrupted "
                                  "download or copy? fetch the file again") from e
        raise _not_a_torch_zip(path) from e
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"cannot read '{path}': {e}; the file is damaged or not what torch.save writes: "
                              "fetch it again") from e
    except FileNotFoundError as e:
        raise CheckpointError(f"'{path}' does not exist; check the path") from e
    except IsADirectoryError as e:
        raise CheckpointError(f"'{path}' is a folder; pass the checkpoint file inside it (a .pth or .pt)") from e
    except OSError as e:
        raise CheckpointError(f"cannot read '{path}': {e}") from e


def _not_a_torch_zip(path: str | os.PathLike[str]) -> CheckpointError:
    """What to do with a file that is not torch.save's zip, by what it is instead."""
    kind = file_kind(path)
    if kind == "empty":
        return CheckpointError(f"'{path}' is empty (0 bytes); an interrupted download or copy? fetch it again")
    if kind == "safetensors":
        return CheckpointError(f"'{path}' is a safetensors file, not a torch.save checkpoint: import converts "
                               "VAR's and VARSR's .pth files; a folder with config.json and model.safetensors "
                               "is a checkpoint already and needs no import")
    return CheckpointError(f"'{path}' is not a PyTorch zip checkpoint (torch.save since 1.6); "
                           "re-save it with a current PyTorch")


