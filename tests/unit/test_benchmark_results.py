"""Every committed benchmark result is written by its own script, never edited by hand: each
top-level key of `benchmarks/results/<name>.json` must be one that `benchmarks/<name>.py` puts
into the very object it dumps to that file.

The script is read with `ast`, not run. Its write of the result is the call
`PATH.write_text(json.dumps(OBJECT, ...) ...)` whose PATH names `<name>.json` (a module
constant, or a parameter the script passes such a constant to). The keys of OBJECT are followed
back through the function that writes it: dict literals, `OBJECT["key"] = ...`,
`OBJECT.update(...)`, `dict(key=...)`, and `**spread` of a name or of a call to one of the
script's own functions (the keys of what it returns). A key the script only reads, prints or
writes somewhere else does not count; an OBJECT whose keys cannot be followed fails the test."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
Scope = ast.FunctionDef | ast.Module


class Untraceable(Exception):
    """The script builds the result in a way these rules cannot follow."""


def own_nodes(scope: Scope) -> list[ast.AST]:
    """The nodes of `scope`, without those of the functions defined inside it."""
    found: list[ast.AST] = []
    pending = list(ast.iter_child_nodes(scope))
    while pending:
        node = pending.pop()
        found.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))
    return found


class Script:
    def __init__(self, path: Path) -> None:
        self.name = path.name
        self.tree = ast.parse(path.read_text())
        self.functions = {
            node.name: node for node in self.tree.body if isinstance(node, ast.FunctionDef)
        }
        self.constants = {
            target.id: node.value
            for node in self.tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }

    def names_file(self, path: ast.expr, scope: Scope, file_name: str) -> bool:
        """Whether `path` is the result file: it spells `file_name`, is a module constant that
        does, or is a parameter of `scope` that some call passes such a constant to."""
        spelled = any(
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.split("/")[-1] == file_name
            for node in ast.walk(path)
        )
        if spelled or not isinstance(path, ast.Name):
            return spelled
        if path.id in self.constants:
            return self.names_file(self.constants[path.id], self.tree, file_name)
        if isinstance(scope, ast.FunctionDef):
            parameters = [argument.arg for argument in scope.args.args]
            if path.id in parameters:
                return any(
                    self.names_file(argument, self.tree, file_name)
                    for argument in self.arguments_passed(scope.name, parameters.index(path.id))
                )
        return False

    def arguments_passed(self, function: str, index: int) -> list[ast.expr]:
        calls = [
            node
            for node in ast.walk(self.tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == function
        ]
        return [call.args[index] for call in calls if len(call.args) > index]

    def written_objects(self, file_name: str) -> list[tuple[ast.expr, Scope]]:
        """Each object the script dumps with `json.dumps` into `file_name`."""
        found = []
        for scope in [self.tree, *self.functions.values()]:
            for node in own_nodes(scope):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "write_text"
                    and self.names_file(node.func.value, scope, file_name)
                ):
                    continue
                for inner in ast.walk(node):
                    if (
                        isinstance(inner, ast.Call)
                        and isinstance(inner.func, ast.Attribute)
                        and inner.func.attr == "dumps"
                        and inner.args
                    ):
                        found.append((inner.args[0], scope))
        return found

    def keys_of(self, value: ast.expr, scope: Scope) -> set[str]:
        """The top-level keys `value` can hold, evaluated in `scope`."""
        if isinstance(value, ast.Dict):
            keys: set[str] = set()
            for key, item in zip(value.keys, value.values, strict=True):
                if key is None:  # **spread
                    keys |= self.keys_of(item, scope)
                elif isinstance(key, ast.Constant) and isinstance(key.value, str):
                    keys.add(key.value)
                else:
                    raise Untraceable(f"{self.name}: a computed key {ast.unparse(key)}")
            return keys
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            if value.func.id == "dict" and not value.args:
                return {keyword.arg for keyword in value.keywords if keyword.arg}
            if value.func.id in self.functions:
                function = self.functions[value.func.id]
                returns = [n for n in own_nodes(function) if isinstance(n, ast.Return)]
                if returns:
                    return set().union(
                        *(self.keys_of(r.value, function) for r in returns if r.value)
                    )
        if isinstance(value, ast.Name):
            return self.keys_of_name(value.id, scope)
        raise Untraceable(f"{self.name}: cannot follow the keys of {ast.unparse(value)}")

    def keys_of_name(self, name: str, scope: Scope) -> set[str]:
        """Keys given to the variable `name` in `scope`: what it is assigned, the keys stored
        into it and those its `update` adds."""
        keys: set[str] = set()
        assigned = False
        for node in own_nodes(scope):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id == name:
                        keys |= self.keys_of(node.value, scope)
                        assigned = True
                    elif (
                        isinstance(target, ast.Subscript)
                        and getattr(target.value, "id", None) == name
                        and isinstance(target.slice, ast.Constant)
                        and isinstance(target.slice.value, str)
                    ):
                        keys.add(target.slice.value)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "update"
                and getattr(node.func.value, "id", None) == name
            ):
                keys |= {keyword.arg for keyword in node.keywords if keyword.arg}
                for argument in node.args:
                    keys |= self.keys_of(argument, scope)
        if not assigned:
            raise Untraceable(f"{self.name}: {name} is never assigned where it is written")
        return keys

    def keys_written_to(self, file_name: str) -> set[str]:
        objects = self.written_objects(file_name)
        if not objects:
            raise Untraceable(f"{self.name} has no `.write_text(json.dumps(...))` of {file_name}")
        return set().union(*(self.keys_of(value, scope) for value, scope in objects))


def test_there_are_results() -> None:
    assert RESULTS, "benchmarks/results/ holds no results"


@pytest.mark.parametrize("result", RESULTS, ids=lambda p: p.name)
def test_each_key_is_one_its_script_writes_into_that_file(result: Path) -> None:
    script = ROOT / "benchmarks" / f"{result.stem}.py"
    assert script.exists(), f"{result.name} has no script {script.name} that writes it"
    written = Script(script).keys_written_to(result.name)
    stray = set(json.loads(result.read_text())) - written
    assert not stray, f"{result.name}: keys {sorted(stray)} are not written by {script.name}"


def keys_written(tmp_path: Path, source: str, file_name: str = "demo.json") -> set[str]:
    script = tmp_path / "demo.py"
    script.write_text(source)
    return Script(script).keys_written_to(file_name)


def test_only_keys_of_the_object_written_to_the_file_count(tmp_path: Path) -> None:
    source = (
        "import json\n"
        "from pathlib import Path\n"
        'RESULTS = Path("benchmarks") / "results" / "demo.json"\n'
        'OTHER = Path("other.json")\n'
        "def measure():\n"
        '    return {"wall_s": 1.0}\n'
        "def main(config):\n"
        '    rounds = config["rounds"]\n'  # read, not written
        '    OTHER.write_text(json.dumps({"scratch": 1}))\n'  # another file
        '    print(json.dumps({"printed": 2}))\n'
        '    result = {"rounds": rounds, **measure()}\n'
        '    result["ratio"] = 2.0\n'
        "    result.update(seed=7)\n"
        '    RESULTS.write_text(json.dumps(result, indent=2) + "\\n")\n'
    )
    assert keys_written(tmp_path, source) == {"rounds", "wall_s", "ratio", "seed"}


def test_a_file_passed_as_a_parameter_is_followed(tmp_path: Path) -> None:
    source = (
        "import json\n"
        'RESULTS = "benchmarks/results/demo.json"\n'
        "def main(out):\n"
        '    out.write_text(json.dumps({"rows": 1}))\n'
        "main(RESULTS)\n"
    )
    assert keys_written(tmp_path, source) == {"rows"}
    with pytest.raises(Untraceable, match="has no"):
        keys_written(tmp_path, source, "other.json")


def test_keys_that_cannot_be_followed_fail(tmp_path: Path) -> None:
    source = (
        "import json\n"
        'RESULTS = "demo.json"\n'
        "def main(names):\n"
        "    RESULTS.write_text(json.dumps({name: 1 for name in names}))\n"
    )
    with pytest.raises(Untraceable, match="cannot follow"):
        keys_written(tmp_path, source)
