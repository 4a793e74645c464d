"""Tensor files into NumPy arrays, with no framework installed.

TensorFlow checkpoints and SavedModels, TFRecords, TensorProtos, frozen GraphDefs, ONNX,
PyTorch and Hugging Face folders, safetensors, GGUF, Keras/HDF5 and Flax msgpack, read by the
same Rust code as the ``tensor2npy`` command installed with this package: the arrays are the
ones ``tensor2npy convert`` writes into an ``.npz`` (names, dtypes and values), read without
executing anything inside the input, with the interpreter lock released while reading.

Options are the command line's, written as keyword arguments with underscores:
``bf16="bits"`` is ``--bf16 bits``, ``skip_unsupported=True`` is ``--skip-unsupported``,
``cast={"f64": "f32"}`` is ``--cast f64=f32``, ``from_="gguf"`` is ``--from gguf``. Byte
counts take an int or a string such as ``"64 MiB"``. See ``tensor2npy convert --help``.

>>> import tensor2npy
>>> weights = tensor2npy.load("model.safetensors", select="encoder/*")
>>> with tensor2npy.open("ckpt/model-100") as f:
...     kernel = f["dense/kernel/.ATTRIBUTES/VARIABLE_VALUE"]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._errors import (
    CorruptInputError,
    InputNotFoundError,
    Tensor2NpyError,
    TransientError,
    UnsupportedInputError,
    UsageError,
)

__version__: str = _native.__version__

__all__ = [
    "load",
    "open",
    "convert",
    "verify",
    "list_tensors",
    "TensorFile",
    "TensorInfo",
    "Tensor2NpyError",
    "CorruptInputError",
    "UnsupportedInputError",
    "TransientError",
    "UsageError",
    "InputNotFoundError",
    "__version__",
]

PathLike = Union[str, "os.PathLike[str]"]
Inputs = Union[PathLike, Sequence[PathLike]]
Globs = Union[str, Sequence[str], None]


def load(
    path_or_url: Inputs,
    *,
    select: Globs = None,
    exclude: Globs = None,
    **options: Any,
) -> Dict[str, np.ndarray]:
    """Reads every selected tensor of an input into a dict of NumPy arrays.

    The result is exactly what ``tensor2npy convert INPUT -o x.npz`` writes, as ``np.load``
    gives it back: the same names (a list of inputs prefixes each name with ``<stem>/``, as
    the command does), dtypes and values, in input order.

    Args:
        path_or_url: a file, a checkpoint prefix, a directory (SavedModel, Hugging Face
            folder), ``s3://``, ``gs://``, ``az://`` or ``http(s)://`` URL, or a list of them.
        select: keep only tensors whose name matches this glob (or any of these globs); a
            glob that matches nothing is an error, as on the command line.
        exclude: drop tensors whose name matches.
        **options: ``convert``'s options (``bf16``, ``f8``, ``cast``, ``quant``, ``sparse``,
            ``ragged``, ``fill``, ``skip_unsupported``, ``from_``, ``chunk_size``, ``device``,
            ...), but not those that shape an output file (``output``, ``compress``, ...).

    Raises:
        CorruptInputError, UnsupportedInputError, TransientError, InputNotFoundError,
        UsageError: with the command's message; ``KeyboardInterrupt`` on Ctrl-C.
    """
    return _native.load(path_or_url, select=select, exclude=exclude, **options)


@dataclass(frozen=True)
class TensorInfo:
    """What an input says about one tensor, before reading it (the fields of
    ``tensor2npy list --json``)."""

    name: str
    #: The element type as the format names it (``"bfloat16"``, ``"q4_K"``).
    dtype: str
    #: The ``.npy`` descr the array gets (``"<f4"``); ``numpy.dtype(descr)`` is its dtype.
    descr: str
    #: The array's shape (``None`` for a ragged dimension in ``list_tensors``).
    shape: Tuple[Optional[int], ...]
    #: ``"dense"``, ``"string"``, ``"sparse"`` or ``"ragged"``.
    kind: str
    #: Bytes the tensor occupies in the input.
    bytes: int
    #: Bytes of the array it is read into.
    nbytes: int
    #: The input it comes from.
    source: str


class TensorFile(Mapping):
    """A read-only mapping of tensor names to arrays, read one at a time on access.

    Returned by :func:`open`. ``f[name]`` reads that tensor into a new array (memory is the
    array plus a chunk); iterating yields names, and ``f.items()`` reads each tensor as it is
    reached. Use it as a context manager, or call :meth:`close`, to release the input.
    """

    def __init__(self, native: Any) -> None:
        self._native = native
        self._names: List[str] = native.names()

    def __getitem__(self, name: str) -> np.ndarray:
        return self._native.read(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._native

    def keys(self):  # type: ignore[override]
        """The tensor names, in input order."""
        return super().keys()

    def info(self, name: str) -> TensorInfo:
        """The dtype, ``.npy`` descr, shape, kind and sizes of tensor ``name``, without
        reading it."""
        d = self._native.info(name)
        return TensorInfo(**d)

    @property
    def metadata(self) -> Any:
        """The input's own metadata (GGUF key/values), or ``None`` where the format has none;
        for several inputs, a dict by input."""
        text = self._native.metadata_json()
        return None if text is None else json.loads(text)

    @property
    def closed(self) -> bool:
        return self._native.closed

    def close(self) -> None:
        """Releases the input; reading afterwards raises ``ValueError``."""
        self._native.close()

    def __enter__(self) -> "TensorFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} tensors"
        return f"<tensor2npy.TensorFile ({state})>"


def open(
    path_or_url: Inputs,
    *,
    select: Globs = None,
    exclude: Globs = None,
    **options: Any,
) -> TensorFile:
    """Opens an input for reading tensor by tensor; a :class:`TensorFile`.

    Only the metadata is read here; ``f[name]`` reads one tensor, so the memory used is that
    tensor's array plus a chunk (``chunk_size``, 4 MiB by default), however large the input.
    The keys, arrays and options are those of :func:`load`.

    >>> with tensor2npy.open("model.gguf", quant="raw") as f:
    ...     print(f.info("token_embd.weight"), f.metadata["general.architecture"])
    """
    return TensorFile(
        _native.open_file(path_or_url, select=select, exclude=exclude, **options)
    )


def convert(
    inputs: Inputs, output: Optional[PathLike] = None, **options: Any
) -> None:
    """Runs ``tensor2npy convert`` in this process: ``output`` is ``-o`` (an ``.npz``, an
    ``.npy``, a directory; ``None`` writes ``IN.npz`` beside each input), ``**options`` the
    command's other options (``select``, ``compress=True``, ``to="npz"``, ``jobs``, ...).
    The output is written atomically; on an error or Ctrl-C nothing is left behind."""
    _native.convert(inputs, output, **options)


def verify(paths: Inputs, **options: Any) -> List[Dict[str, Any]]:
    """Reads every tensor of every input, checking each checksum the format carries, like
    ``tensor2npy verify``; raises on the first damage (``CorruptInputError``).

    Returns one dict per input: ``input``, ``format`` (where the reader says what the input
    was read as, else ``None``), ``tensors`` (how many were read) and ``bytes`` (how many
    bytes of tensor data were read and checked)."""
    return _native.verify(paths, **options)


def list_tensors(paths: Inputs, **options: Any) -> List[Dict[str, Any]]:
    """What ``tensor2npy list --json`` prints, without reading any tensor: one dict per
    tensor with ``name``, ``dtype``, ``npy_dtype``, ``shape``, ``bytes``, ``kind``,
    ``source`` (and ``format`` where the reader says)."""
    return _native.list_tensors(paths, **options)
