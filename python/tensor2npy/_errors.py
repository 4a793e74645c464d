"""The exceptions of tensor2npy, one per way the command fails (its exit status in
``exit_status``). The message is the command's, naming the input and the tensor."""

from __future__ import annotations

__all__ = [
    "Tensor2NpyError",
    "CorruptInputError",
    "UnsupportedInputError",
    "TransientError",
    "UsageError",
    "InputNotFoundError",
]


class Tensor2NpyError(Exception):
    """Base class of every tensor2npy error (the command's exit status 1)."""

    exit_status: int = 1


class CorruptInputError(Tensor2NpyError):
    """The input is damaged: truncated, a checksum that does not match, sizes or structures
    that contradict each other (exit status 1)."""


class UnsupportedInputError(Tensor2NpyError):
    """The input, or a tensor in it, is of a kind tensor2npy does not read: no known format,
    a dtype without a NumPy form (pass ``skip_unsupported=True`` to leave such tensors out),
    a format version or feature not supported (exit status 1)."""


class TransientError(Tensor2NpyError):
    """A remote read failed in a way that may pass when retried (a timeout, a refused or reset
    connection, throttling, a server error after the retries); the command's exit status 75
    (``EX_TEMPFAIL``). Task engines (Dask, Ray, Spark) may retry on this class only."""

    exit_status = 75


class UsageError(Tensor2NpyError, ValueError):
    """The call is wrong: an unknown option, a bad value, options that conflict (the command's
    exit status 2). Also a ``ValueError``."""

    exit_status = 2


class InputNotFoundError(Tensor2NpyError, FileNotFoundError):
    """An input (a file, a checkpoint prefix, a remote object) does not exist. Also a
    ``FileNotFoundError``."""

    def __init__(self, message: str) -> None:
        # FileNotFoundError's two-argument form would reformat the message; keep the command's.
        Exception.__init__(self, message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
