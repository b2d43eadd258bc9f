"""The layout's contracts: pyproject.toml's import-linter layers hold (and an upward import breaks them),
no import cycle among jaxqa's modules, and the public names at the package root."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, require

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")  # import-linter, of the test extra


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the jaxqa package of `project`, with the contracts of its pyproject.toml."""
    require("importlinter")
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=project, capture_output=True,
                          text=True, timeout=120)


def test_the_layers_hold():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 2 kept, 0 broken." in proc.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    """The contract is checked, not only written: `from jaxqa.training import trainer` in a scoring module
    (a copy of the package) fails both contracts, naming the import and its line."""
    shutil.copytree(ROOT / "jaxqa", tmp_path / "jaxqa", ignore=shutil.ignore_patterns("sample_data", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    metrics = tmp_path / "jaxqa/scoring/metrics.py"
    line = len(metrics.read_text(encoding="utf-8").splitlines()) + 1
    with metrics.open("a", encoding="utf-8") as f:
        f.write("from jaxqa.training import trainer  # noqa: E402, F401\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "jaxqa.scoring is not allowed to import jaxqa.training:" in proc.stdout
    assert f"- jaxqa.scoring.metrics -> jaxqa.training.trainer (l.{line})" in proc.stdout
    assert "Contracts: 0 kept, 2 broken." in proc.stdout  # training imports scoring: now a cycle too


def test_no_import_cycle_among_the_modules():
    """Module by module, package __init__s included (the contract's acyclic_siblings looks at siblings):
    no module imports, directly or through others, a module that imports it."""
    grimp = require("grimp")
    graph = grimp.build_graph("jaxqa", cache_dir=None)
    cycles = [(module, imported) for module in sorted(graph.modules)
              for imported in sorted(graph.find_modules_directly_imported_by(module))
              if graph.find_shortest_chain(importer=imported, imported=module)]
    assert cycles == []


def test_the_public_names_at_the_package_root():
    """`jaxqa.Trainer`, `.RunConfig`, `.train_state`, `.QuestionAnswerer`, `.evaluate` (the scorer), imported
    on first use: `import jaxqa` alone loads no JAX and no submodule but the clock it records LAUNCHED on."""
    import jaxqa
    from jaxqa import train_state
    from jaxqa.config import RunConfig
    from jaxqa.scoring import evaluate
    from jaxqa.scoring.answer import QuestionAnswerer
    from jaxqa.training.trainer import Trainer

    assert (jaxqa.Trainer, jaxqa.RunConfig, jaxqa.QuestionAnswerer) == (Trainer, RunConfig, QuestionAnswerer)
    assert train_state is jaxqa.train_state and train_state.__name__ == "jaxqa.training.train_state"
    assert jaxqa.evaluate.evaluate_files is evaluate.evaluate_files and jaxqa.evaluate.main is evaluate.main
    assert set(jaxqa.__all__) <= set(dir(jaxqa))

    probe = ("import sys, jaxqa; print(sorted(m for m in sys.modules if m.split('.')[0] in ('jaxqa', 'jax')), "
             "type(jaxqa.LAUNCHED).__name__)")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["['jaxqa',", "'jaxqa.clock']", "float"]


def test_no_function_over_50_lines_and_no_class_over_250_in_jaxqa():
    """The size limits of the layout: every function (from `def` to its last line, docstring included) at
    most 50 lines and every class at most 250, in every module of jaxqa/; the message lists each offender."""
    import ast

    limits = {ast.FunctionDef: 50, ast.AsyncFunctionDef: 50, ast.ClassDef: 250}
    offenders, modules = [], sorted((ROOT / "jaxqa").rglob("*.py"))
    assert len(modules) > 30  # the walk found the package
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            limit = limits.get(type(node))
            if limit and node.end_lineno - node.lineno + 1 > limit:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                                 f"{node.end_lineno - node.lineno + 1} lines (limit {limit})")
    assert not offenders, "\n".join(offenders)
