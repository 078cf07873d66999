"""The S3 domain of s3rpc: buckets, clients, object operations and the ``s3.*`` method table.

Knows aioboto3 and the configuration, never frames, sockets or codecs::

    async with BucketManager(config.s3) as buckets:
        table = build_methods(buckets)   # {"s3.Write": <.handler, .bytes_fields>, ...}
"""

from s3rpc.storage.buckets import Bucket, BucketManager
from s3rpc.storage.methods import StorageMethod, build_methods

__all__ = ["Bucket", "BucketManager", "StorageMethod", "build_methods"]
