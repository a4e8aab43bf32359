"""Building blocks shared by the three frugal kinds.

The pydantic models in this package are the single source of truth for the API: the CRD
schemas in ``crds/`` are generated from them (see :mod:`frugal.api.schema`). Descriptions come
from attribute docstrings, so the text a reader sees here is what ``kubectl explain`` prints.
Cross-field rules are declared as CEL expressions with :func:`cel` and enforced by the API
server at admission time.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP = "frugal.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
DNS_LABEL_PATTERN = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"

Duration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN, max_length=32),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "maxLength": 32}),
]
"""A Go-style duration such as ``90s``, ``15m`` or ``1h30m``."""


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(f"not a Kubernetes quantity: {value!r} (expected e.g. 4, 500m, 16Gi)")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
        }
    ),
]
"""A Kubernetes resource quantity such as ``4``, ``500m`` or ``16Gi``."""

LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE_PATTERN, max_length=63)]
DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=63)]

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """Parse a Duration string; the schema already rejected anything malformed."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 90s, 15m, 1h30m)")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry; ``field_path`` points the error at a field."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def cel_string(text: str) -> str:
    """``text`` as a single-quoted CEL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules for a model."""
    return {"x-kubernetes-validations": list(rules)}


class FrugalModel(BaseModel):
    """Base of every API model: camelCase on the wire, docstrings as descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def nested(model: type[FrugalModel]) -> Any:
    """A sub-object that is always present, defaulted in the schema to its full default value.

    The API server checks CEL rules against schema defaults without applying nested defaults,
    so the default must be the complete object, not ``{}``.
    """
    return Field(default_factory=model, json_schema_extra={"default": model().wire()})


class CapacityType(StrEnum):
    """How a GPU is bought; prices and node labels differ per type."""

    RESERVED = "reserved"
    SPOT = "spot"
    ON_DEMAND = "on-demand"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(FrugalModel):
    """The latest observation of one aspect of the object (Kubernetes condition conventions)."""

    type: str = Field(max_length=64)
    """Condition type, e.g. Ready, Placed, Degraded."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = Field(default="", max_length=128)
    """One CamelCase word that a machine can match on."""
    message: str = Field(default="", max_length=4096)
    """A sentence for people: what was observed and what to do about it."""
    last_transition_time: str | None = None
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The metadata.generation this condition was computed from."""


CONDITIONS_LIST = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


def conditions_field() -> Any:
    """Field declaration for a status ``conditions`` list keyed by type."""
    return Field(default_factory=list, max_length=16, json_schema_extra=CONDITIONS_LIST)


class LocalObjectReference(FrugalModel):
    """A reference to an object in the same namespace."""

    name: DnsLabel
    """Name of the referenced object."""


class SecretKeyRef(FrugalModel):
    """One key of a Secret in the same namespace."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    """Name of the Secret."""
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)
    """Key within the Secret."""


class ObjectMeta(FrugalModel):
    """The part of Kubernetes object metadata frugal reads."""

    model_config = ConfigDict(extra="allow")

    name: str
    namespace: str | None = None
    generation: int | None = None
    uid: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Decision(FrugalModel):
    """One decision of a control loop, with its inputs, for people and for audits."""

    time: str
    """When it was made (RFC 3339)."""
    action: str = Field(max_length=64)
    """What was decided, e.g. ScaleUp, ScaleToZero, Wake, Reroute, Hold."""
    reason: str = Field(max_length=1024)
    """Why, in a sentence."""
    signals: dict[str, float] = Field(default_factory=dict)
    """The signal values the decision was based on."""


Phase = Literal["Pending", "Serving", "ScaledToZero", "Degraded"]
