"""frugal: run LLM inference fleets at the lowest cost that meets a quality and latency bar."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("frugal")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
