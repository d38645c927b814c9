"""The node model's request/response bodies <-> EVE API v2 protobuf payloads (spec §2, §5).

The EVE rules (``simulator.eve.node.Node`` on the device side, ``simulator.controller.ControllerModel``
on the controller side) speak small dicts. This module is the one place where those dicts become
the protobuf messages that go on the wire, and back:

* device side (``eden agent``): :func:`encode_request`, then :func:`decode_response`;
* controller side (``eden controller serve``): :func:`decode_request`, then :func:`encode_response`.

The payloads returned here are the *inner* serialized messages; signing them into an
AuthContainer is :mod:`eden.wire.signing`'s job. ``CodecError`` means "malformed or semantically
invalid body": the controller answers it with 400/422, never 500.

STATUS: interface contract only; the implementation lands with issue 4.
"""

from __future__ import annotations

from typing import Any, Mapping

API_PREFIX = "/api/v2/edgedevice"


class CodecError(ValueError):
    """A payload that does not decode, or decodes to something the API does not allow."""


def request_path(kind: str, device_uuid: str | None) -> tuple[str, str]:
    """(HTTP method, path) for a request kind (certs, register, uuid, config, info, metrics,
    attest, logs, ping)."""
    raise NotImplementedError


def image_uuid(image_name: str) -> str:
    """The content-tree UUID that names an image on the wire (uuid5 of the image name)."""
    raise NotImplementedError


def encode_request(kind: str, body: Mapping[str, Any], *, device_uuid: str | None = None, device_cert_pem: bytes | None = None) -> list[bytes]:
    """Device side: a node request body -> serialized protobuf payload(s)."""
    raise NotImplementedError


def decode_response(kind: str, status: int, payload: bytes, *, images: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Device side: a response payload -> the body dict the node expects."""
    raise NotImplementedError


def decode_request(kind: str, payload: bytes) -> dict[str, Any]:
    """Controller side: a request payload -> the body dict ControllerModel.answer expects."""
    raise NotImplementedError


def merge_info(previous: Mapping[str, Any] | None, partial: Mapping[str, Any]) -> dict[str, Any]:
    """Controller side: fold one decoded info message (device or one app) into the device's
    latest report, which then has the shape ``Node.report()`` produced on the device."""
    raise NotImplementedError


def encode_response(kind: str, status: int, body: Mapping[str, Any], *, device_uuid: str | None = None) -> bytes:
    """Controller side: ControllerModel.answer's (status, body) -> serialized response payload."""
    raise NotImplementedError
