"""Personal data planted in flights batches, as a user meets it with the `perennial` command.

Made-up customers (a seeded Faker and generator, nobody real) book the flights of 2013-01..03:
each row gets a customer id, an e-mail, a phone number, a card number, and a free-text note that
sometimes quotes one of them. Undeclared, the gate refuses the batch with one line per column and
no value. Declared (`drop` and `hash`), the whole loop runs: gate (with Data Docs), train,
predict with reasons, serve with live samples, report, status; and then no planted value is found
in any file under the home, nor in the MLflow database or the Prefect server's database. Last,
`perennial forget` erases one customer, and `status` names the model trained on their rows."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from faker import Faker

from tests.conftest import FLIGHTS, ROOT, run_perennial, stop_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MONTHS = ("2013-01", "2013-02", "2013-03")
SUBJECT = "C-00042"
PERSONAL = ["customer_id", "email", "phone", "card", "notes"]
DECLARED = (
    "privacy:\n  columns: {email: drop, phone: hash, card: drop, notes: drop, customer_id: hash}\n"
)
AREAS = ["202", "212", "312", "415", "617", "713"]


@dataclass
class Planted:
    """Every planted value, by kind (the raw customer ids too: only their hashes may be kept)."""

    values: dict[str, set[str]] = field(default_factory=dict)

    def found_in(self, text: str) -> set[str]:
        """The kinds of planted values that occur in `text` (never the values themselves)."""
        tokens = {
            "email": re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text),
            "phone": re.findall(r"\+1 \d{3}-555-01\d{2}", text),
            "card": re.findall(r"(?<!\d)\d{16}(?!\d)", text),
            "customer_id": re.findall(r"C-\d{5}", text),
        }
        return {kind for kind, found in tokens.items() if set(found) & self.values[kind]}


def customers(count: int) -> pd.DataFrame:
    fake = Faker("en_US")
    fake.seed_instance(2032)
    rng = np.random.default_rng(2032)
    ids = [f"C-{i:05d}" for i in range(count)]
    return pd.DataFrame(
        {
            "customer_id": ids,
            "email": [f"{fake.user_name()}.{i}@{fake.free_email_domain()}" for i in range(count)],
            "phone": [f"+1 {rng.choice(AREAS)}-555-01{rng.integers(0, 100):02d}" for _ in ids],
            "card": [fake.credit_card_number(card_type="visa16") for _ in ids],
        }
    )


def with_customers(flights: pd.DataFrame, people: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    booked = people.iloc[rng.integers(0, len(people), len(flights))].reset_index(drop=True)
    booked.loc[rng.choice(len(flights), 5, replace=False), :] = people.iloc[42].to_numpy()
    notes = np.full(len(flights), "no remarks", dtype=object)
    for share, column, text in ((0.03, "phone", "call {}"), (0.02, "card", "paid by {}"),
                                (0.02, "email", "receipt to {}")):  # fmt: skip
        picked = rng.random(len(flights)) < share
        notes[picked] = [text.format(v) for v in booked.loc[picked, column]]
    return pd.concat([flights, booked], axis=1).assign(notes=notes)


def dataset_folder(tmp_path: Path, name: str, declared: bool, suite: str = "people") -> Path:
    """A configs folder with `people.yaml` (the flights recipe on the planted files) and its own
    Great Expectations project, drafting the suite `suite` (or using the flights one)."""
    folder = tmp_path / name
    shutil.copytree(
        ROOT / "great_expectations", folder / "gx", ignore=shutil.ignore_patterns("unc*")
    )
    text = (
        FLIGHTS.read_text()
        .replace("dataset: flights", "dataset: people")
        .replace("home: ../.perennial ", "")
        .replace("gx_root: ../great_expectations", f"gx_root: {folder / 'gx'}")
        .replace("suite: flights", f"suite: {suite}")
        .replace("trials: 10 ", "trials: 2 ")
        .replace(
            "key_columns: [carrier, flight, time_hour]",
            "key_columns: [carrier, flight, time_hour, customer_id]",
        )
    )
    text = re.sub(
        r"source:\n(  .*\n|    .*\n)+",
        f"source:\n  kind: files\n  path_template: {tmp_path / 'incoming'}/{{batch}}.csv\n",
        text,
    )
    (folder / "people.yaml").write_text(text + (DECLARED if declared else ""))
    return folder / "people.yaml"


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Planted]:
    from tasks.core.config import load_config
    from tasks.data.raw_files import read_raw
    from tasks.data.source import extract_from_source

    tmp = tmp_path_factory.mktemp("people")
    (tmp / "incoming").mkdir()
    people = customers(3000)
    flights = load_config(FLIGHTS)
    for seed, month in enumerate(MONTHS):
        frame = read_raw(extract_from_source(flights, month)[0], ".csv")
        with_customers(frame, people, seed).to_csv(tmp / "incoming" / f"{month}.csv", index=False)
    values = {kind: set(people[kind]) for kind in ("customer_id", "email", "phone", "card")}
    return tmp, Planted(values)


def perennial(home: Path, api: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_perennial({"PERENNIAL_HOME": str(home), "PREFECT_API_URL": api, **env}, *args)


def test_undeclared_personal_data_is_refused_one_line_per_column(
    planted: tuple[Path, Planted], prefect_api_url: str
) -> None:
    tmp, values = planted
    config = dataset_folder(tmp, "undeclared", declared=False, suite="flights")
    home = tmp / "home-undeclared"
    run = lambda *a: perennial(home, prefect_api_url, *a, "--config", str(config))  # noqa: E731
    assert run("ingest", "--batches", "2013-01..2013-02", "--no-validate").returncode == 0
    # No suite is drafted from them: its value sets would copy them into the suite's JSON.
    drafted = run("validate", "--profile", "2013-01..2013-02")
    assert drafted.returncode == 1, drafted.stdout + drafted.stderr
    assert "4 column(s) hold undeclared personal data; no suite drafted" in drafted.stderr
    assert values.found_in(drafted.stdout + drafted.stderr) == set()
    # The gate, with a suite (the flights one: the planted columns fail its column set too).
    refused = run("validate", "--batch", "2013-02")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    lines = [line for line in refused.stdout.splitlines() if "perennial_personal_data" in line]
    flagged = [line for line in lines if line.strip().startswith("FAILED")]
    assert sorted(re.search(r"column '(\w+)'", line)[1] for line in flagged) == [  # type: ignore[index]
        "card", "email", "notes", "phone"
    ]  # fmt: skip
    assert any("card in" in line and "phone in" in line for line in flagged)  # the free text
    assert values.found_in(refused.stdout + refused.stderr) == set()
    reason = (home / "quarantine" / "people" / "2013-02.reason.json").read_text()
    assert values.found_in(reason) == set()


def files_with_planted_values(root: Path, values: Planted) -> dict[str, set[str]]:
    """Each file under `root` that holds a planted value, with the kinds; Parquet, gzip and zip
    are read, not searched as compressed bytes."""
    found = {}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".parquet":
            text = pd.read_parquet(io.BytesIO(data)).to_csv(index=False)
        elif data[:2] == b"PK":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                text = "".join(archive.read(n).decode(errors="replace") for n in archive.namelist())
        else:
            text = data.decode(errors="replace")
        if path.suffix in (".db", ".sqlite") and data.startswith(b"SQLite format 3"):
            with sqlite3.connect(path) as db:  # what SQL reads, beside the pages' bytes
                text += "\n".join(db.iterdump())
        if kinds := values.found_in(text):
            found[str(path.relative_to(root))] = kinds
    return found


def test_declared_personal_data_runs_the_loop_and_leaves_no_trace(
    planted: tuple[Path, Planted], prefect_api_url: str, tmp_path: Path
) -> None:
    tmp, values = planted
    config, home = dataset_folder(tmp, "declared", declared=True), tmp / "home-declared"
    docs = {"PERENNIAL_VALIDATION__DATA_DOCS": "true", "PERENNIAL_SERVE__LIVE_SAMPLE_RATE": "1.0"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = perennial(home, prefect_api_url, *args, "--config", str(config), **docs)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done

    run("ingest", "--batches", "2013-01..2013-03", "--no-validate")
    run("validate", "--profile", "2013-01..2013-02")
    trained = run("train", "--batches", "2013-01..2013-03", "--trials", "2")
    assert "v1 promoted to champion" in trained.stdout
    run("predict", "--batch", "2013-03", "--explain")
    serve_some_rows(home, config, prefect_api_url, docs)
    run("report")
    from tasks.data.data_docs import wait_idle

    wait_idle(home / "data_docs", timeout=900)  # a niced worker, on a shared machine
    assert list((home / "data_docs").rglob("*.html")), "no Data Docs were built"
    assert list((home / "live").rglob("*.parquet")), "serve kept no live sample"

    assert files_with_planted_values(home, values) == {}
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    prefect_db = Path(str(PREFECT_API_DATABASE_CONNECTION_URL.value()).split(":///", 1)[1])
    assert files_with_planted_values(prefect_db.parent, values) == {}

    # Erasure of one customer: dry run, then for real; status names the model trained on them.
    where = f"customer_id == '{SUBJECT}'"
    dry = run("forget", "--where", where, "--reason", "request 7", "--dry-run")
    assert "would erase" in dry.stdout and SUBJECT not in dry.stdout
    done = run("forget", "--where", where, "--reason", "request 7", "--json")
    erasure = json.loads(done.stdout)
    assert erasure["models"] == ["1"] and erasure["files"]
    status = run("status")
    assert "v1 was trained on erased rows" in status.stdout
    again = run("forget", "--where", where, "--reason", "request 7")
    assert "nothing to erase" in again.stdout
    audit = list((home / "audit" / "people" / "erasures").glob("*.json"))
    assert len(audit) == 1 and SUBJECT not in audit[0].read_text()


def serve_some_rows(home: Path, config: Path, api: str, settings: dict[str, str]) -> None:
    """`perennial serve` scores rows of March, the subject's among them (as a client sends
    them: the customer id itself), and keeps them as live samples; stopped by PID."""
    from tasks.core.config import load_config

    cfg = load_config(config)
    frame = pd.read_csv(home.parent / "incoming" / "2013-03.csv").head(40)
    frame.loc[:4, "customer_id"] = SUBJECT
    features = [*cfg.features.numeric, *cfg.features.categorical, *cfg.validation.key_columns]
    columns = list(dict.fromkeys(features))  # carrier is both a feature and a key
    rows = frame[columns].astype(object).where(frame[columns].notna(), None).to_dict("records")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PERENNIAL_HOME": str(home), "PREFECT_API_URL": api, **settings}
    log = (home.parent / "serve.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "perennial"), "serve", "--port", str(port),
         "--config", str(config)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, (home.parent / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not become healthy"
            time.sleep(0.3)
        answer = httpx.post(f"{url}/predict", json=rows, timeout=60)
        assert answer.status_code == 200, answer.text
    finally:
        stop_process(process, grace_s=30)  # flushes the live samples at shutdown
        log.close()
