from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from core.accounts import user_for_key
from core.celery_app import beat_schedule_file
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from service import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, str]]:
    code = cli.main(list(argv))
    out = capsys.readouterr().out
    return code, dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def test_operator_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    assert run(capsys, "migrate")[0] == 0
    code, admin = run(capsys, "create-admin", "--name", "ops")
    assert code == 0 and admin["role"] == "admin" and admin["api_key"].startswith("svd_")
    code, user = run(capsys, "create-user", "--name", "ada")
    assert code == 0 and user["role"] == "user"
    code, extra = run(capsys, "create-key", user["user_id"])
    assert code == 0 and extra["api_key"] != user["api_key"]
    assert run(capsys, "create-key", "no-such-user")[0] == 1
    engine = make_engine(settings.db_url)
    with make_sessionmaker(engine)() as session:
        found = [user_for_key(session, key) for key in (admin["api_key"], user["api_key"], extra["api_key"])]
        assert [u.role if u else None for u in found] == ["admin", "user", "user"]
        assert found[1] is found[2]
    engine.dispose()
    listed = cli.main(["keys", "list", user["user_id"]]) == 0 and capsys.readouterr().out.splitlines()
    assert listed and len(listed) == 2 and all("active" in line for line in listed)
    first_key_id = listed[0].split()[0]
    code, rotated = run(capsys, "keys", "rotate", first_key_id)
    assert code == 0 and rotated["api_key"].startswith("svd_")
    assert run(capsys, "keys", "rotate", first_key_id)[0] == 1  # revoked by the rotation
    assert run(capsys, "keys", "revoke", rotated["key_id"])[0] == 0
    assert run(capsys, "keys", "revoke", "no-such-key")[0] == 1
    engine = make_engine(settings.db_url)
    with make_sessionmaker(engine)() as session:
        assert user_for_key(session, user["api_key"]) is None and user_for_key(session, rotated["api_key"]) is None
        assert user_for_key(session, extra["api_key"]) is not None
    engine.dispose()


def test_worker_command_line() -> None:
    args = cli.parser().parse_args(["worker", "--queues", "training", "--beat"])
    assert args.queues == "training" and args.beat and args.func is cli.cmd_worker
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["create-user"])  # --name is required


def test_worker_beat_keeps_its_schedule_in_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.app

    argvs: list[list[str]] = []
    monkeypatch.setattr(worker.app.app, "worker_main", argvs.append)
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    assert cli.main(["worker", "--queues", "cpu", "--beat"]) == 0
    (argv,) = argvs
    assert argv[argv.index("--schedule") + 1] == str(tmp_path / "data" / "celerybeat-schedule")
    assert argv[argv.index("-Q") + 1] == "cpu" and "--beat" in argv


def test_beat_schedule_falls_back_to_the_temporary_folder(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    settings = Settings(data_dir=blocked / "data", _env_file=None)  # type: ignore[call-arg]
    assert beat_schedule_file(settings).startswith(tempfile.gettempdir())
