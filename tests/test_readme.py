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
