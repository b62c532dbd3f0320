"""The README is the operator's manual: it must name every setting, trigger key and make target that exists."""

import re
from pathlib import Path

from kedahttp.kube import trigger
from kedahttp.process import settings_doc
from kedahttp.process.settings import SPECS, env_name, flag_name

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_with_its_default() -> None:
    for spec in SPECS:
        row = next((line for line in README.splitlines() if f"`{env_name(spec.name)}`" in line), None)
        assert row is not None, f"{env_name(spec.name)} missing from the README"
        assert f"`--{flag_name(spec.name)}`" in row
        if spec.default:
            assert f"`{spec.default}`" in row, f"{env_name(spec.name)}: README default differs from the code"


def test_the_settings_table_is_the_one_the_code_writes() -> None:
    assert settings_doc.current(README) == settings_doc.block(), "README's settings table is stale: run `make docs`"


def test_every_trigger_key_is_documented() -> None:
    for key in trigger.KEYS:
        assert re.search(rf"^\s+{key}: ", README, re.M), f"trigger key {key} missing from the README"


def test_the_two_commands_and_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "test", "lint", "proto", "bench"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.M), f"make {target} is documented but not defined"
    assert "make test" in (ROOT / ".ci" / "run").read_text()
