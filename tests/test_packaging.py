"""Packaging: setup.cfg and environment.yml name the same dependencies; CI runs the README's command."""

import configparser
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _setup_cfg_requirements() -> dict:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = [line.strip() for line in cfg["options"]["install_requires"].splitlines() if line.strip()]
    return {_name(line): line.replace(" ", "") for line in lines}


def _environment_pip_requirements() -> dict:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml must have exactly one pip section"
    reqs = [r for r in pip_sections[0] if not r.startswith("-")]
    return {_name(r): r.replace(" ", "") for r in reqs}


def test_environment_yml_matches_setup_cfg():
    setup = _setup_cfg_requirements()
    env = _environment_pip_requirements()
    assert setup == env, f"setup.cfg and environment.yml disagree: {set(setup.items()) ^ set(env.items())}"


def test_torch_has_a_version_range():
    torch_req = _setup_cfg_requirements()["torch"]
    assert ">=" in torch_req and "<" in torch_req.replace("<=", ""), torch_req


def test_environment_installs_the_package_itself():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d][0]
    assert any(line.startswith("-e .") for line in pip)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/test.sh" in ci
    assert "bash scripts/test.sh" in readme


def test_console_scripts_resolve():
    import importlib

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    for line in cfg["options.entry_points"]["console_scripts"].splitlines():
        if not line.strip():
            continue
        name, target = [p.strip() for p in line.split("=")]
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name
