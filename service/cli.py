"""Operator commands: `svdiff-service migrate | create-admin | create-user | create-key | keys | serve | worker`."""

from __future__ import annotations

import argparse
import logging
import sys

from sqlalchemy import select

from core.settings import Settings, get_settings


def _runtime(settings: Settings):  # type: ignore[no-untyped-def]
    from core.runtime import build_runtime

    return build_runtime(settings)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from core import migrate

    migrate.upgrade(settings.db_url, args.revision)
    print(f"database at {args.revision}")
    return 0


def _create(settings: Settings, name: str, role: str) -> int:
    from core.accounts import create_user
    from core.db import session_scope

    runtime = _runtime(settings)
    with session_scope(runtime.sessions) as session:
        user, key = create_user(session, name, role)
        print(f"user_id: {user.id}\nrole: {role}\napi_key: {key}\nwebhook_secret: {user.webhook_secret}")
    print("(the key is shown once; only its hash is stored)", file=sys.stderr)
    return 0


def cmd_create_admin(settings: Settings, args: argparse.Namespace) -> int:
    return _create(settings, args.name, "admin")


def cmd_create_user(settings: Settings, args: argparse.Namespace) -> int:
    return _create(settings, args.name, args.role)


def cmd_create_key(settings: Settings, args: argparse.Namespace) -> int:
    from core.accounts import add_key
    from core.db import session_scope
    from models import User

    runtime = _runtime(settings)
    with session_scope(runtime.sessions) as session:
        user = session.scalar(select(User).where(User.id == args.user_id))
        if user is None:
            print(f"no user {args.user_id}", file=sys.stderr)
            return 1
        print(f"api_key: {add_key(session, user)}")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from core import migrate

    if settings.environment == "development":
        migrate.upgrade(settings.db_url)  # the embedded mode starts from nothing
    runtime = _runtime(settings)
    if settings.embedded_broker:
        from worker.embedded import start_embedded_worker

        start_embedded_worker(runtime)
    uvicorn.run(create_app(runtime), host=args.host or settings.host, port=args.port or settings.port)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from core.celery_app import beat_schedule_file
    from worker.app import app

    argv = ["worker", "-Q", args.queues, "--concurrency", str(args.concurrency), "--loglevel", args.loglevel]
    argv += ["--prefetch-multiplier", "1", "-n", f"{args.queues.replace(',', '-')}@%h"]
    if args.beat:
        argv += ["--beat", "--schedule", beat_schedule_file(settings)]
    app.worker_main(argv)
    return 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    """`keys list USER_ID`, `keys revoke KEY_ID`, `keys rotate KEY_ID`."""
    from core.accounts import revoke_key, rotate_key
    from core.db import session_scope
    from models import ApiKey

    runtime = _runtime(settings)
    with session_scope(runtime.sessions) as session:
        if args.action == "list":
            rows = session.scalars(select(ApiKey).where(ApiKey.user_id == args.id).order_by(ApiKey.created_at)).all()
            for row in rows:
                state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
                print(f"{row.id}  {row.prefix}...  created {row.created_at:%Y-%m-%d %H:%M}  {state}")
            return 0
        row = session.get(ApiKey, args.id, with_for_update=True)
        if row is None:
            print(f"no API key {args.id}", file=sys.stderr)
            return 1
        if args.action == "revoke":
            revoke_key(row)
            print(f"revoked {row.id} ({row.prefix}...)")
            return 0
        if row.revoked_at is not None:
            print(f"API key {args.id} is revoked", file=sys.stderr)
            return 1
        new_row, key = rotate_key(session, row)
        print(f"revoked {row.id} ({row.prefix}...)\nkey_id: {new_row.id}\napi_key: {key}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="svdiff-service", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)
    p = sub.add_parser("migrate", help="run the database migrations")
    p.add_argument("--revision", default="head")
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("create-admin", help="create an admin and print its API key")
    p.add_argument("--name", default="admin")
    p.set_defaults(func=cmd_create_admin)
    p = sub.add_parser("create-user", help="create a user and print its API key")
    p.add_argument("--name", required=True)
    p.add_argument("--role", choices=["user", "admin"], default="user")
    p.set_defaults(func=cmd_create_user)
    p = sub.add_parser("create-key", help="add an API key to a user")
    p.add_argument("user_id")
    p.set_defaults(func=cmd_create_key)
    p = sub.add_parser("keys", help="list a user's API keys, revoke or rotate one")
    p.add_argument("action", choices=["list", "revoke", "rotate"])
    p.add_argument("id", help="the user's id (list) or the key's id (revoke, rotate)")
    p.set_defaults(func=cmd_keys)
    p = sub.add_parser("serve", help="serve the API (embedded mode: with its workers)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("worker", help="start a Celery worker")
    p.add_argument("--queues", default="training,inference,cpu,webhooks",
                   help="comma-separated: training,inference,cpu,webhooks")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--beat", action="store_true", help="also run the periodic reconciler (one per deployment)")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(func=cmd_worker)
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    return int(args.func(get_settings(), args))


if __name__ == "__main__":
    sys.exit(main())
