"""Write the chart's values.schema.json parts that are generated from the settings models.

``settings.nodePools`` is checked at ``helm install`` with the JSON Schema of
``NodePoolSettings`` (operator/frugal/render/nodepools.py), inlined. Run by ``make crds``;
tests/unit/test_chart_render.py fails while the file is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from frugal.api.schema import embeddable_json_schema
from frugal.render.nodepools import NodePoolSettings

SCHEMA = Path(__file__).resolve().parents[1] / "charts" / "frugal" / "values.schema.json"
NODE_POOLS_DESCRIPTION = (
    "Karpenter NodePools/EC2NodeClasses frugal provisions (profile karpenter; "
    "docs/node-pools.md). manage: true also grants the operator write access to them."
)


def node_pools_schema() -> dict[str, Any]:
    return {**embeddable_json_schema(NodePoolSettings), "description": NODE_POOLS_DESCRIPTION}


def render(current: str) -> str:
    doc = json.loads(current)
    doc["properties"]["settings"]["properties"]["nodePools"] = node_pools_schema()
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    current = SCHEMA.read_text()
    wanted = render(current)
    if "--check" in sys.argv[1:]:
        if wanted != current:
            print(f"{SCHEMA}: out of date; run `make crds`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        SCHEMA.write_text(wanted)
        print(f"wrote {SCHEMA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
