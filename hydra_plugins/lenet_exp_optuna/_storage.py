"""Where a study is stored: ``hydra.sweeper.storage`` as a URL (an SQLite file, a database server, an Optuna
journal file), opened as an Optuna storage, or one sentence saying why it cannot be. Imported by the sweeper and
by a trial's job (``_job.py``); Optuna and SQLAlchemy are imported when a storage is opened, not before."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lenet_exp.errors import UserError, chain, first_line, root_cause
from lenet_exp.runtime.run_folder import STUDY_STORAGE, sqlite_path, sqlite_url

if TYPE_CHECKING:
    import optuna

STORAGE_HINT = (
    "give an SQLAlchemy URL (sqlite:///study.db, postgresql+psycopg://user@host:5432/db) or journal:PATH "
    "(a journal file, for a shared file system)"
)


def stored_at(settings: dict[str, Any], sweep_dir: str, started_in: str) -> str | None:
    """Where the sweeper settings ``settings`` (as written) store their study: its URL, a relative file taken
    from ``started_in``, the folder the sweep's command started in; the storage as written where it cannot be
    resolved (a file in a folder gone since). lenet_exp's checks that a sweep folder holds no other study's trials,
    and no trials of a study its storage lost, compare it."""
    storage = settings.get("storage")
    try:
        return storage_url(storage, sweep_dir, started_in)
    except UserError:
        return storage


def storage_url(storage: str | None, sweep_dir: str, started_in: str | Path = ".") -> str:
    """``hydra.sweeper.storage`` as an absolute URL: null is an SQLite file in the sweep folder; relative
    paths (``sqlite:///study.db``, ``journal:study.log``) are taken from ``started_in``, the folder the command
    started in (a job's current folder is its own with ``hydra.job.chdir=true``). A file the user names must be a
    file in a folder that exists (SQLite and Optuna's journal create the file, not folders)."""
    if not storage:
        return sqlite_url(Path(sweep_dir).resolve() / STUDY_STORAGE)
    if storage in ("sqlite://", "sqlite:///:memory:"):
        raise UserError(
            f"hydra.sweeper.storage={storage} is a database in memory, which each job would see empty; give a "
            "file, such as sqlite:///study.db, or leave it null (optuna.db in the sweep folder)."
        )
    if storage.startswith("journal:"):
        given = storage.removeprefix("journal:")
        path = (Path(started_in) / (given[2:] if given.startswith("//") else given)).resolve()
        url = f"journal://{path}"
    elif storage.startswith("sqlite:///"):
        path = sqlite_path(storage, started_in)
        url = sqlite_url(path)
    else:
        return storage
    if path.is_dir():
        raise UserError(f"hydra.sweeper.storage={storage} is a folder; name a file in it (a new name starts a study).")
    if not path.parent.is_dir():
        raise UserError(
            f"hydra.sweeper.storage={storage}: the folder {path.parent} does not exist; create it, or name a file "
            "in a folder that exists."
        )
    return url


def shown(url: str) -> str:
    """``url`` as logs and files may show it: without its password (also where SQLAlchemy cannot parse it)."""
    if url.startswith("journal:"):
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def open_storage(url: str, ready: bool = False) -> optuna.storages.BaseStorage:
    """The Optuna storage at ``url`` (from storage_url), or one sentence saying why it cannot be used.
    ``ready``: a trial's job, whose worker has made and checked the database's tables (saves ~60 ms)."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal://"))
        try:
            # Optuna reads the whole journal here; it takes a last line that is not JSON for one being written,
            # so a one-line file of another program would be opened, appended to, and then unreadable.
            _check_journal(path)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise UserError(
                f"hydra.sweeper.storage=journal:{path} cannot be opened ({err.strerror}); name a file you can write."
            ) from None
        except (ValueError, KeyError, TypeError) as err:  # bytes that are not UTF-8, lines not JSON, not entries
            raise UserError(
                f"hydra.sweeper.storage=journal:{path} is not an Optuna journal ({first_line(err)}); name another "
                "file (a new name starts a study), or a study's journal file."
            ) from None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError, ProgrammingError

    try:
        dialect = make_url(url).get_dialect()
        dialect.import_dbapi()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise UserError(
            f"hydra.sweeper.storage={shown(url)} is not a storage lenet_exp can open; {STORAGE_HINT}."
        ) from None
    except ImportError as err:
        raise UserError(
            f"hydra.sweeper.storage={shown(url)} needs the database driver {err.name}, which is not installed: "
            "pip install 'lenet_exp[postgres]' (psycopg) or your database's driver."
        ) from None
    # Waits that end: SQLite retries a busy file for a minute (parallel jobs report at once); a server that
    # does not answer is given ten seconds.
    connect = {"sqlite": {"timeout": 60}, "postgresql": {"connect_timeout": 10}}.get(dialect.name, {})
    engine: dict[str, Any] = {"connect_args": connect}
    if dialect.name != "sqlite":
        # A database server: a connection per operation, closed after it, instead of a pool per storage kept open
        # until the storage is collected. Every worker, every job and every heartbeat opens a storage, and a
        # shared study's server allows 100 clients by default (a loaded test run ran out of them).
        from sqlalchemy.pool import NullPool

        engine["poolclass"] = NullPool
    tries = 5
    while True:
        tries -= 1
        try:
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=engine, skip_compatibility_check=ready, skip_table_creation=ready
            )
            if dialect.name == "sqlite":
                serialize_sqlite(storage.engine)
            return storage
        except (IntegrityError, ProgrammingError, OperationalError) as err:
            # Workers starting at once on an empty database race to create its tables and stamp its version
            # (SQLite: "table ... already exists"; PostgreSQL: a duplicate table or row): the loser opens it again,
            # and then finds them made.
            raced = not isinstance(err, OperationalError) or "already exists" in str(err)
            if not (raced and tries):
                if isinstance(err, OperationalError):
                    raise UserError(_unreachable(url, err)) from None
                raise
            time.sleep(random.uniform(0.1, 0.5))
        except optuna.exceptions.StorageInternalError as err:
            # A commit that failed while opening (Optuna stamps its version row each time): seen once from every
            # job of a loaded machine's PostgreSQL study for some seconds; try again, then say what the server said.
            if not tries:
                raise UserError(_unreachable(url, err.__cause__ or err)) from None
            time.sleep(random.uniform(0.5, 2.0))
        except RuntimeError as err:  # Optuna's word for a schema of an older release
            raise UserError(
                f"the study's storage {shown(url)} was written by an older Optuna ({first_line(err)}); upgrade it "
                f"with: optuna storage upgrade --storage '{shown(url)}'"
            ) from None
        except Exception as err:  # SQLAlchemy's errors of the connection and their kin: the server or file is not there
            raise UserError(_unreachable(url, err)) from None


def storage_failure(err: BaseException) -> str | None:
    """What went wrong, in words, when ``err`` is the study's storage failing once opened (its database file
    removed, damaged, locked or read-only; its server gone), else None."""
    from optuna.exceptions import StorageInternalError

    kinds: tuple[type, ...] = (StorageInternalError,)
    try:
        from sqlalchemy.exc import SQLAlchemyError

        kinds += (SQLAlchemyError,)
    except ImportError:  # a journal storage, without SQLAlchemy
        pass
    if not any(isinstance(each, kinds) for each in chain(err)):
        return None
    return first_line(root_cause(err))


def _check_journal(path: Path) -> None:
    """A ValueError unless the journal file at ``path`` begins as Optuna's do: a JSON object with an ``op_code``,
    one a line. An empty or new file is a new journal; a first line still being written (no newline yet) need
    only begin as every entry does."""
    if not path.is_file():
        return
    with path.open("rb") as file:
        first = file.readline(1 << 20)
    if first.endswith(b"\n"):
        try:
            entry = json.loads(first)
        except ValueError:  # bytes that are not UTF-8, text that is not JSON
            entry = None
        if isinstance(entry, dict) and "op_code" in entry:
            return
    elif not first or first.startswith(b"{"):
        return
    raise ValueError("its first line is not an entry of one")


def _unreachable(url: str, err: BaseException) -> str:
    reason = re.sub(r"^[(].*?[)] ", "", first_line(err))  # without SQLAlchemy's "(module.ErrorClass)"
    if url.startswith("sqlite:"):  # a file on this machine: there is no server to start
        return (
            f"hydra.sweeper.storage={shown(url)} cannot be opened as an SQLite database ({reason}); name another "
            "file (a new name starts a study), or a study's database file."
        )
    return (
        f"the study's storage {shown(url)} cannot be reached ({reason}); start its server, or check "
        "hydra.sweeper.storage."
    )


def serialize_sqlite(engine: Any) -> None:
    """Every transaction on an SQLite file takes its write lock when it begins (BEGIN IMMEDIATE), as
    SQLAlchemy's documentation shows: Python's sqlite3 would otherwise run a transaction's reads unlocked,
    and two workers could both see a queued trial WAITING and both take it."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(connection: Any, record: Any) -> None:
        connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # the connections made before the listeners get them too
