import pathlib
import re

ROOT = pathlib.Path(__file__).parent.parent


def _commands(text):
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    test_cmd = next(c for c in _commands(readme) if c.rstrip().endswith("pytest"))
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci_lines


def test_readme_main_command_installs_demos_trains_and_evaluates():
    readme = (ROOT / "README.md").read_text()
    main = _commands(readme)[0]
    assert main.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install .")
    for step in ("textgym demo", "textgym train ppo", "textgym eval runs/reverse"):
        assert step in main


def test_readme_lists_every_env_and_example():
    import textgym

    readme = (ROOT / "README.md").read_text()
    for info in textgym.ENVS:
        assert f"`{info.id}`" in readme
    for example in sorted((ROOT / "examples").glob("*.py")):
        assert f"examples/{example.name}" in readme


def test_readme_rlhf_walkthrough_shows_the_benchmarked_commands():
    import importlib.util

    spec = importlib.util.spec_from_file_location("rlhf", ROOT / "benchmarks" / "rlhf.py")
    rlhf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rlhf)
    assert "\n".join(rlhf.PIPELINE) in _commands((ROOT / "README.md").read_text())


def _requirement_module(requirement: str) -> str:
    """The import name of a requirement such as ``"sb3-contrib>=2.3"``."""
    name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()
    return {"stable-baselines3": "stable_baselines3", "sb3-contrib": "sb3_contrib", "rouge-score": "rouge_score",
            "array-api-compat": "array_api_compat"}.get(name, name.replace("-", "_"))


def test_every_python_snippet_imports_only_what_the_install_lines_above_it_install():
    import ast
    import sys

    tomllib = __import__("pytest").importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_requirement_module(r) for r in project["dependencies"]} | {"textgym"}
    extras = {name: {_requirement_module(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    readme = (ROOT / "README.md").read_text()
    sections = re.split(r"\n(?=#{1,3} )", readme)
    checked = 0
    for section in sections:
        named = {e for group in re.findall(r"textgym\[([\w,]+)\]", section) for e in group.split(",")}
        assert named <= set(extras), f"README names extras {named - set(extras)} that pyproject.toml lacks"
        allowed = core.union(*(extras[e] for e in named)) | set(sys.stdlib_module_names)
        for snippet in re.findall(r"```python\n(.*?)```", section, flags=re.S):
            tree = ast.parse(snippet)
            imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
            imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                         if isinstance(node, ast.ImportFrom) and node.module}
            missing = imported - allowed
            assert not missing, f"a snippet in README section {section.splitlines()[0]!r} imports {missing}, which " \
                                f"neither textgym nor the install line above it ({sorted(named)}) installs"
            checked += 1
    assert checked >= 8
    dev = {_requirement_module(r) for r in project["optional-dependencies"]["dev"]}
    assert extras["all"] <= dev and set().union(*(m for e, m in extras.items() if e != "dev")) <= dev | core
