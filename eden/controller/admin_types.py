"""The shapes of what the controller keeps and the admin API answers (docs/controller.md).

Declared once: the server code that builds these records (:mod:`eden.controller.core`,
:mod:`eden.controller.store`, :mod:`eden.controller.admin`, ...) and the client that reads them
(:class:`eden.controller.client.AdminClient`) use the same types, so a key renamed on one side is a
type error on the other.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, NotRequired, TypeAlias, TypedDict

JsonValue: TypeAlias = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
"""Parsed JSON of no fixed shape (a stored setting, an event's data): narrow before use."""

TemplateStatus: TypeAlias = Literal["pending", "approved"]
"""A PCR template waits for an admin's approval, or is approved (learned or approved by hand): only
approved templates attest."""

EventSpec: TypeAlias = tuple[str, "str | None", Mapping[str, object]]
"""An event to record with a commit: (kind, serial or None for a controller-wide one, data)."""


# ------------------------------------------------------------------- stored records --
class Template(TypedDict):
    """A PCR template (``GET /v1/templates``, ``POST /v1/templates/{id}/approve``)."""

    id: int
    serial: str
    digest: str
    pcrs: dict[str, str]  # PCR index (decimal) -> value (hex)
    status: TemplateStatus
    created: float


class ContentRow(TypedDict):
    """Registered content: one (name, version) of a base OS image in the datastore."""

    name: str
    version: str
    sha256: str
    size: int
    pcr13: str | None
    created: float


class ContentView(ContentRow):
    """A content row as the admin API answers it (``POST``/``GET /v1/content``)."""

    url: str  # the datastore path devices download it from


class Event(TypedDict):
    """One line of ``GET /v1/events``."""

    id: int
    t: float
    kind: str
    serial: str | None
    data: dict[str, JsonValue]


class StoredDevice(TypedDict):
    """A device's row in the database (:meth:`eden.controller.model.RealModel.dump`): the model's
    DeviceRecord fields and the controller's :class:`~eden.controller.model.Side` fields, by name.
    Their values are of each field's own type (``dataclasses.asdict``, then ``setattr`` and
    ``Side(**side)`` on restore), so ``Any``."""

    device: dict[str, Any]
    side: dict[str, Any]


# ------------------------------------------------------------- per-device extras --
class ReportExtra(TypedDict, total=False):
    """What a report summary may carry beyond its counters."""

    at: float | None  # the report's own timestamp
    content_fields: list[str]  # the info message's content fields (object and other kinds)


class ReportSummary(ReportExtra):
    """The last report of one kind (``reports`` of a device view)."""

    count: int
    received: float
    size: int


class ObjectEntry(TypedDict):
    """The last info of one object (a volume, a content tree, ...) of a device."""

    at: float
    received: float
    data: Mapping[str, object]  # the decoded info object


class AttestDetail(TypedDict, total=False):
    """What the controller adds to an attest result: why a quote failed, or the certs posted."""

    field: str
    reason: str
    certs: list[str]


class AttestationResult(AttestDetail):
    """One QUOTE/STORE_KEYS result in a device's attestation history (and its event)."""

    t: float
    type: str
    code: str | None
    mismatch: list[int]
    tpm: bool


# ------------------------------------------------------------------ admin answers --
class DeviceRow(TypedDict):
    """A device in ``GET /v1/devices`` (and in a change's ``changed``)."""

    serial: str
    uuid: str | None
    onboarded: bool
    registered: bool
    last_seen: float | None
    config_hash: str | None
    config_version: int
    served_hash: str | None
    has_config: bool


class AttestationView(TypedDict):
    token_required: bool
    has_token: bool
    escrowed: bool
    failures: int
    last: AttestationResult | None
    results: list[AttestationResult]


class CertsView(TypedDict):
    posted: int
    at: float | None
    types: list[str]
    refused: bool  # the admin refuses the device's ATTEST_REQ_CERT posts (404)
    pem: dict[str, str]  # ZCertType name -> PEM


class AdminDeviceView(DeviceRow):
    """One device in full (``GET /v1/devices/{serial}``, pre-registration, cert revocation)."""

    firmware: str
    images: dict[str, dict[str, str]]  # name -> {version, measurement[, pcr13]}
    learn: bool
    tofu: bool
    firmware_pcrs_learned: bool
    items: Mapping[str, object]
    baseos: Mapping[str, object] | None
    reboot: int
    shutdown: int
    apps: Mapping[str, Mapping[str, object]]
    maintenance: bool
    attestation: AttestationView
    certs: CertsView
    info: Mapping[str, object] | None
    info_count: int
    metrics: Mapping[str, object] | None
    metrics_count: int
    logs_count: int
    reports: dict[str, ReportSummary]
    revoked_certs: list[str]
    manufacturer: str
    product_name: str


class InfoView(TypedDict):
    """``GET /v1/devices/{serial}/info``: the last info of each object by ZInfoTypes name. ZI_DEVICE
    holds {"device": report}, ZI_APP the apps by name, every other kind its objects by uuid."""

    serial: str
    kinds: dict[str, Mapping[str, object]]
    dropped: int


class LastReport(TypedDict):
    """``GET /v1/devices/{serial}/reports/{kind}``."""

    serial: str
    kind: str
    received: float
    payload_b64: str


class Changed(TypedDict):
    """The answer of every per-device admin change (items, baseos, reboot, apps, ...)."""

    changed: list[DeviceRow]


class BulkResult(TypedDict):
    """``POST /v1/bulk/devices``."""

    created: int
    updated: int


class LearnSetting(TypedDict):
    learn: bool


class TofuSetting(TypedDict):
    tofu: bool


AnswerMode = Literal["normal", "503", "hang"]
ANSWER_MODES: tuple[AnswerMode, ...] = ("normal", "503", "hang")
"""The device API's answer switch (``PUT /v1/settings/answer``, :meth:`Controller.set_answer_mode`)."""


class AnswerSetting(TypedDict):
    mode: AnswerMode


class Settings(TypedDict):
    """``GET /v1/settings``."""

    learn: bool
    tofu: bool
    global_items: Mapping[str, object]
    last_event_id: int
    answer_mode: AnswerMode


class EndpointSummary(TypedDict):
    """One endpoint in ``GET /v1/stats``."""

    requests: int
    status: dict[str, int]  # HTTP status -> count
    p50_ms: float
    p95_ms: float
    p99_ms: float
    window: int


# ------------------------------------------------------------------ admin requests --
class BaseosSpec(TypedDict):
    image: str
    version: NotRequired[str]
    activate: NotRequired[bool]


class DeviceConfig(TypedDict, total=False):
    """A device's config given at pre-registration (``config`` of ``POST /v1/devices``)."""

    items: Mapping[str, object]
    baseos: BaseosSpec
    apps: Mapping[str, dict[str, Any] | None]  # name -> app spec (eve.controller's), None: remove it
    maintenance: bool


class Preregistration(TypedDict):
    """One device of ``POST /v1/bulk/devices`` (as for ``POST /v1/devices``)."""

    serial: str
    firmware: NotRequired[str]
    images: NotRequired[dict[str, dict[str, str]]]
    config: NotRequired[DeviceConfig]
    learn: NotRequired[bool]
    tofu: NotRequired[bool]
