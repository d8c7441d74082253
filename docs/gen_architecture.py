"""Draw docs/architecture.png from the code: the package's layers (the import-linter contract in
pyproject.toml) and every import between recforge's subpackages, as grimp reads them.

    python docs/gen_architecture.py
"""

from __future__ import annotations

from pathlib import Path

import grimp
import matplotlib
import tomllib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    layers = config["tool"]["importlinter"]["contracts"][0]["layers"]
    rows = [[m.strip() for m in layer.split("|")] for layer in layers]
    graph = grimp.build_graph("recforge")
    units = [m for row in rows for m in row]

    def unit_of(module: str) -> str | None:
        for u in units:
            if module == u or module.startswith(u + "."):
                return u
        return None

    edges: dict[tuple[str, str], int] = {}
    for module in graph.modules:
        src = unit_of(module)
        for imported in graph.find_modules_directly_imported_by(module):
            dst = unit_of(imported)
            if src and dst and src != dst:
                edges[(src, dst)] = edges.get((src, dst), 0) + 1
    pos = {}
    height = len(rows)
    for y, row in enumerate(rows):
        for x, unit in enumerate(row):
            pos[unit] = ((x + 0.5) / len(row), height - 1 - y)
    fig, ax = plt.subplots(figsize=(11, 0.9 * height + 1))
    for (src, dst), count in edges.items():
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        ax.annotate("", xy=(x1, y1 + 0.18), xytext=(x0, y0 - 0.18),
                    arrowprops={"arrowstyle": "->", "color": "0.55", "lw": 0.4 + 0.15 * count,
                                "shrinkA": 4, "shrinkB": 4})  # fmt: skip
    for unit, (x, y) in pos.items():
        files = sum(1 for m in graph.modules if unit_of(m) == unit)
        box = FancyBboxPatch((x - 0.09, y - 0.18), 0.18, 0.36, boxstyle="round,pad=0.01",
                             fc="#dbe9f6", ec="#1f4e79")  # fmt: skip
        ax.add_patch(box)
        ax.text(x, y, f"{unit.removeprefix('recforge.')}\n{files} module(s)", ha="center",
                va="center", fontsize=8)  # fmt: skip
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.6, height - 0.4)
    ax.axis("off")
    ax.set_title("recforge layers (top imports bottom, never the reverse); arrows: imports "
                 "between packages, width ~ count", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "architecture.png", dpi=110)
    print(f"{len(edges)} package-level import edges; wrote docs/architecture.png")


if __name__ == "__main__":
    main()
