"""What can go wrong with object storage, each an :class:`~imagenet_pipe.errors.ImagenetPipeError`
whose one-line message names the ``s3://`` URL (or local file) at fault."""

from __future__ import annotations

from ..errors import ImagenetPipeError


class StorageError(ImagenetPipeError):
    """An object-storage operation failed for good."""


class NotFoundError(StorageError):
    """The bucket or the object does not exist."""


class BucketNotFoundError(NotFoundError):
    """The bucket itself does not exist."""


class AccessError(StorageError):
    """Missing or wrong credentials, or no permission for this bucket."""


class TransferError(StorageError):
    """The endpoint stayed unreachable (or kept dropping the connection) for the whole retry budget."""


class IntegrityError(StorageError):
    """Bytes that arrived (or were found) differ from the recorded size or sha256."""
