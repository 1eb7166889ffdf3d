"""The server and the metrics see the pipeline through its ports only (stream_detect.ports)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import stream_detect

PACKAGE = Path(stream_detect.__file__).parent
# Whole modules the server may not import, and names it may not import from a module.
FORBIDDEN_MODULES = ("stream_detect.pipeline", "stream_detect.detect.worker")
FORBIDDEN_NAMES = {"stream_detect.sinks": {"Dispatcher"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in module ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def violations(source: str, importer: str, is_package: bool = False) -> Iterator[str]:
    """What ``source`` imports (at run time or for type checking alone) that it must not."""
    tree = ast.parse(source)
    modules_as: dict[str, str] = {}  # local name -> a module with forbidden names
    for node in ast.walk(tree):
        imported: list[tuple[str, str]] = []  # (module, local name)
        if isinstance(node, ast.Import):
            imported = [(alias.name, alias.asname or alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(importer, is_package, node.level, node.module)
            for alias in node.names:
                local = alias.asname or alias.name
                if alias.name in FORBIDDEN_NAMES.get(base, ()):
                    yield f"{base}.{alias.name}"
                imported.append((f"{base}.{alias.name}" if base else alias.name, local))
                imported.append((base, ""))
        for module, local in imported:
            if any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN_MODULES):
                yield module
            if module in FORBIDDEN_NAMES and local:
                modules_as[local] = module
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules_as:
            module = modules_as[node.value.id]
            if node.attr in FORBIDDEN_NAMES[module]:
                yield f"{module}.{node.attr}"


def checked_modules() -> list[Path]:
    return [*sorted((PACKAGE / "server").glob("*.py")), PACKAGE / "metrics.py"]


@pytest.mark.parametrize("path", checked_modules(), ids=lambda path: module_name(path))
def test_the_server_and_the_metrics_import_no_part_of_the_pipeline(path: Path) -> None:
    found = sorted(set(violations(path.read_text(), module_name(path), path.name == "__init__.py")))
    assert not found, f"{module_name(path)} imports {', '.join(found)}: use the ports of stream_detect.ports"


@pytest.mark.parametrize("source", [
    "from ..pipeline import Pipeline",
    "from .. import pipeline",
    "import stream_detect.pipeline",
    "from stream_detect.detect.worker import WorkerState",
    "from ..detect import worker",
    "from ..sinks import Dispatcher",
    "from ..sinks import FrameResult as R, Dispatcher as D",
    "from .. import sinks\nsinks.Dispatcher()",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..pipeline import StreamRuntime",
])
def test_the_check_finds_each_way_of_importing_the_pipeline(source: str) -> None:
    assert list(violations(source, "stream_detect.server.example"))


@pytest.mark.parametrize("source", [
    "from ..ports import StreamRegistry",
    "from ..sinks import FrameResult",
    "from .. import sinks\nsinks.FrameResult",
    "from ..detect.base import Detector",
    "import stream_detect.pipelines_elsewhere",
])
def test_the_check_lets_the_ports_and_records_through(source: str) -> None:
    assert not list(violations(source, "stream_detect.server.example"))
