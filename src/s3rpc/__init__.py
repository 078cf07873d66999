"""s3rpc: S3-compatible object storage for PHP over RoadRunner's Goridge RPC."""

__version__ = "0.1.0"
