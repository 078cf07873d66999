"""Sans-IO Goridge v3 RPC: frames, codecs and the request/response mapping.

Bytes in, events out; no sockets, no asyncio, nothing else from s3rpc.
"""

from s3rpc.goridge.codec import Codec, CodecError, codec_for_flags
from s3rpc.goridge.frame import (
    HEADER_SIZE,
    NEED_DATA,
    RPC_HEADER_SIZE,
    Flag,
    Frame,
    FrameDecoder,
    OversizedFrame,
    ProtocolError,
    encode_frame,
)
from s3rpc.goridge.rpc import Request, encode_error, encode_request, encode_response, parse_request

__all__ = [
    "HEADER_SIZE",
    "NEED_DATA",
    "RPC_HEADER_SIZE",
    "Codec",
    "CodecError",
    "Flag",
    "Frame",
    "FrameDecoder",
    "OversizedFrame",
    "ProtocolError",
    "Request",
    "codec_for_flags",
    "encode_error",
    "encode_frame",
    "encode_request",
    "encode_response",
    "parse_request",
]
