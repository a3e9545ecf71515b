from __future__ import annotations

from pathlib import Path

import pytest

from core import cli
from core.accounts import user_for_key
from core.db import make_engine, make_sessionmaker
from core.settings import Settings


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


def test_worker_command_line() -> None:
    args = cli.parser().parse_args(["worker", "--queues", "training", "--beat"])
    assert args.queues == "training" and args.beat and args.func is cli.cmd_worker
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["create-user"])  # --name is required
