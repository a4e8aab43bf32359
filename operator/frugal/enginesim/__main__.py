"""``python -m frugal.enginesim``."""

from frugal.enginesim.cli import app

app(prog_name="python -m frugal.enginesim")
