"""The frugal.dev/v1alpha1 API: pydantic models that are the single source of the CRDs."""

from frugal.api.base import API_VERSION, GROUP, VERSION, CapacityType, Condition, Decision
from frugal.api.cache import CachePolicy, CachePolicySpec
from frugal.api.endpoint import InferenceEndpoint, InferenceEndpointSpec
from frugal.api.routing import RoutingPolicy, RoutingPolicySpec

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "CachePolicy",
    "CachePolicySpec",
    "CapacityType",
    "Condition",
    "Decision",
    "InferenceEndpoint",
    "InferenceEndpointSpec",
    "RoutingPolicy",
    "RoutingPolicySpec",
]
