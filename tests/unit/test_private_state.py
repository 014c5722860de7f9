"""Local state is private whatever the umask: what Perennial creates under PERENNIAL_HOME (the
storage layer's folders and files, Optuna's journal, the SQLite databases of served mode and
the shared local Prefect server's home) is the user's only: folders 0700, files 0600 (raw
landed data 0400). The local MLflow registry: tests/integration/test_private_registry.py."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from flows.supervision.served_settings import database_urls, sqlite_files
from tasks.core.private_state import private_file, private_folder
from tasks.core.storage import Storage


def open_to_others(root: Path) -> list[str]:
    """Every folder or file under `root` (itself included) that group or others may use."""
    found = [root, *root.rglob("*")]
    return [
        f"{path} {stat.filemode(path.lstat().st_mode)}"
        for path in found
        if not path.is_symlink() and path.lstat().st_mode & 0o077
    ]


def test_the_storage_layer_creates_private_folders_and_files(
    tmp_path: Path, permissive_umask: int
) -> None:
    home = tmp_path / "a" / "home"  # missing parents are created private too
    storage = Storage(home)
    storage.write_bytes("validated/flights/2013-01.json", b"{}")
    storage.write_bytes("landing/flights/2013-01.csv", b"a,b\n1,2\n", immutable=True)
    assert storage.create_bytes("alerts/flights/drift/2013-01.claim", b"x")
    assert open_to_others(tmp_path / "a") == []
    raw = home / "landing" / "flights" / "2013-01.csv"
    assert stat.S_IMODE(raw.stat().st_mode) == 0o400  # read-only, and the user's only
    assert stat.S_IMODE((home / "validated").stat().st_mode) == 0o700


def test_optuna_journal_is_private(tmp_path: Path, permissive_umask: int) -> None:
    import optuna

    from tasks.learn.study import open_optuna_storage

    home = tmp_path / "home"
    storage = open_optuna_storage(f"journal:{home / 'optuna' / 'journal.log'}")
    study = optuna.create_study(storage=storage, study_name="private")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    assert (home / "optuna" / "journal.log").stat().st_size > 0
    assert open_to_others(home) == []


def test_sqlite_databases_made_first_stay_private_with_their_journals(
    tmp_path: Path, permissive_umask: int
) -> None:
    home = tmp_path / "home"
    files = sqlite_files(home)
    assert database_urls(None, home)["mlflow"].endswith(str(files["mlflow"]))
    for database in files.values():
        private_file(database)
        with sqlite3.connect(database) as connection:  # as MLflow and Prefect open them
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE t (x)")
            connection.execute("INSERT INTO t VALUES (1)")
            assert list(home.rglob("*-wal"))  # its WAL file exists while it is open
            assert open_to_others(home) == []
        connection.close()
    assert open_to_others(home) == []


def test_the_local_prefect_server_home_is_private(tmp_path: Path, permissive_umask: int) -> None:
    from flows.supervision.local_server import locked

    home = tmp_path / "perennial" / "prefect"
    with locked(home) as taken:
        assert taken
    assert open_to_others(tmp_path / "perennial") == []


def test_an_existing_folder_is_left_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    private_folder(shared / "home")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # not ours to change
    assert stat.S_IMODE((shared / "home").stat().st_mode) == 0o700


def test_the_cli_creates_prefect_home_private(tmp_path: Path, permissive_umask: int) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    prefect_home = tmp_path / "perennial" / "prefect"
    result = CliRunner().invoke(app, ["server", "--help"], env={"PREFECT_HOME": str(prefect_home)})
    assert result.exit_code == 0 and prefect_home.is_dir()
    assert open_to_others(tmp_path / "perennial") == []
