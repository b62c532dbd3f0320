import json
import logging

from kedahttp.process import logs


def test_json_lines_carry_extra_fields(capsys) -> None:
    logs.configure("json", "info")
    logging.getLogger("kedahttp.test").info("started", extra={"port": 8080})
    logging.getLogger("kedahttp.test").debug("hidden")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["msg"] == "started" and record["port"] == 8080 and record["level"] == "info"
    assert record["ts"].endswith("Z")


def test_text_format(capsys) -> None:
    logs.configure("text", "debug")
    logging.getLogger("kedahttp.test").debug("hello", extra={"backend": "default/app"})
    err = capsys.readouterr().err
    assert "DEBUG" in err and "hello" in err and "backend=default/app" in err
    logs.configure("json", "info")
