"""Where the configuration comes from: a YAML file watched for changes, or a fixed object.

The file is checked by (mtime, size, inode) every ``reloadIntervalSeconds`` and on SIGHUP. An
editor that writes a new file and renames it over the old one changes the inode; one that writes
in place changes mtime and usually size — either way the change is seen. A file that does not
parse is refused whole and the running configuration stays.
"""

from __future__ import annotations

import os
from pathlib import Path

from frugal.gateway.config import GatewayConfig, load_config


class ConfigSource:
    """A configuration and how to get the next one."""

    def __init__(self, path: Path | str | None = None, config: GatewayConfig | None = None):
        if (path is None) == (config is None):
            raise ValueError("a ConfigSource needs exactly one of path or config")
        self.path = Path(path) if path is not None else None
        self._config = config
        self._seen: tuple[int, int, int] | None = None

    def __repr__(self) -> str:
        return f"ConfigSource({self.path or 'inline'})"

    def _signature(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def read(self) -> GatewayConfig:
        """The configuration now (the file is parsed and validated whole)."""
        if self.path is None:
            assert self._config is not None
            return self._config
        # Remember the file as seen before parsing: a broken file is then retried only once it
        # changes again, and a file caught half-written changes again when the write ends.
        self._seen = self._signature()
        return load_config(self.path)

    def changed(self) -> bool:
        """Whether the file differs from the one last read (always False for an object)."""
        if self.path is None:
            return False
        signature = self._signature()
        return signature is not None and signature != self._seen

    def set(self, config: GatewayConfig) -> None:
        """Replace an inline configuration (the gateway picks it up on its next reload)."""
        if self.path is not None:
            raise ValueError("this source reads a file; write the file instead")
        self._config = config


def as_source(source: ConfigSource | GatewayConfig | Path | str) -> ConfigSource:
    if isinstance(source, ConfigSource):
        return source
    if isinstance(source, GatewayConfig):
        return ConfigSource(config=source)
    return ConfigSource(path=source)
