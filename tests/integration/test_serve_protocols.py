"""The ecosystem's own clients against `perennial serve` as a real uvicorn process on a free port
(the served `sensors` model of tests/integration/test_serve.py): NVIDIA's `tritonclient[http]`,
the reference client of the Open Inference Protocol (KServe v2), with binary and JSON tensors;
MLflow's own `ScoringServerClient` and the request shapes MLflow documents for its scoring
server and `mlflow models predict`, with pandas' split JSON. Each client's scores equal
`/predict`'s to the last bit. Then the Grafana dashboard and the Prometheus rules shipped in
infra/monitoring are held against the metric names a live `/metrics` really emits."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tasks.core import catalog
from tasks.core.storage import Storage
from tasks.registry.client import CHAMPION, version_by_alias
from tests.conftest import ROOT
from tests.integration.test_serve import Trained, request_rows, server, trained

pytestmark = [pytest.mark.integration, pytest.mark.slow]
__all__ = ["trained"]  # the module-scoped fixture of test_serve.py, trained again for this module

DASHBOARD = ROOT / "infra" / "monitoring" / "grafana" / "perennial.json"
RULES = ROOT / "infra" / "monitoring" / "prometheus" / "rules.yml"


@dataclass
class Served:
    url: str
    model: str
    champion: str
    rows: list[dict[str, Any]]  # /predict's rows: numbers, text, ISO times; some missing
    scores: list[float]  # /predict's scores of them


@pytest.fixture(scope="module")
def served(trained: Trained) -> Iterator[Served]:
    """The newest week monitored (so the pipeline's metrics have values), then one server for
    the module, and /predict's scores of 200 rows with missing numbers and categories."""
    from flows.monitoring import monitoring

    config = trained.config
    monitoring(batch="2024-W05", dataset="sensors")
    frame = Storage(config.home).read_parquet(catalog.key("validated", config, batch="2024-W05"))
    rows = request_rows(frame.head(200), config)
    for i in range(0, 200, 9):
        rows[i]["load"] = None
    for i in range(0, 200, 13):
        rows[i]["site"] = None
    champion = version_by_alias(config, CHAMPION)
    assert champion is not None
    with server(trained) as url:
        answer = httpx.post(f"{url}/predict", json=rows, timeout=30)
        assert answer.status_code == 200, answer.text
        scores = [row["score"] for row in answer.json()["predictions"]]
        yield Served(url, config.model_name, champion.version, rows, scores)


def test_tritonclient_scores_as_predict(served: Served) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=served.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(served.model)
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        metadata = client.get_model_metadata(served.model)
        assert metadata["versions"] == [served.champion]
        types = {tensor["name"]: tensor["datatype"] for tensor in metadata["inputs"]}
        assert [output["name"] for output in metadata["outputs"]] == ["score", "label"]

        rows = served.rows
        # One tensor per column of the metadata's type; a tensor has no null: NaN for a missing
        # number, an empty string for a missing category (scored as a category never seen).
        arrays = {
            name: (
                np.array([np.nan if r[name] is None else r[name] for r in rows], dtype=np.float64)
                if datatype == "FP64"
                else np.array(["" if r[name] is None else r[name] for r in rows], dtype=np.object_)
            )
            for name, datatype in types.items()
            if name in rows[0]
        }
        for binary in (True, False):  # tritonclient's default is binary, both ways
            inputs = []
            for name, array in arrays.items():
                tensor = triton.InferInput(name, [len(rows)], types[name])
                inputs.append(tensor.set_data_from_numpy(array, binary_data=binary))
            outputs = [
                triton.InferRequestedOutput(name, binary_data=binary) for name in ("score", "label")
            ]
            for asked in (None, outputs):  # no outputs named: all of them, binary
                result = client.infer(served.model, inputs, outputs=asked, request_id="r1")
                assert result.as_numpy("score").tolist() == served.scores
                assert result.as_numpy("label").tolist() == [int(s >= 0.5) for s in served.scores]
                response = result.get_response()
                assert response["model_version"] == served.champion and response["id"] == "r1"
        pinned = client.infer(served.model, inputs, model_version=served.champion)
        assert pinned.as_numpy("score").tolist() == served.scores

        wrong = [triton.InferInput("load", [1, 2], "FP64")]
        wrong[0].set_data_from_numpy(np.zeros((1, 2)), binary_data=False)
        with pytest.raises(triton.InferenceServerException, match="one tensor per column"):
            client.infer(served.model, wrong)
        with pytest.raises(triton.InferenceServerException, match="unknown model"):
            client.get_model_metadata("no-such-model")
    finally:
        client.close()


def test_mlflow_clients_score_as_predict(served: Served) -> None:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    frame = pd.DataFrame(served.rows)
    frame["measured_at"] = pd.to_datetime(frame["measured_at"], utc=True)  # pandas times
    host, port = served.url.removeprefix("http://").split(":")
    client = ScoringServerClient(host, int(port))
    client.wait_server_ready(timeout=30)  # MLflow's client waits on /ping
    predictions = client.invoke(frame).get_predictions(predictions_format="ndarray")
    assert np.asarray(predictions).reshape(-1).tolist() == served.scores

    # The documented request shapes (MLflow's scoring server, `mlflow models predict` input
    # files), and pandas' own split JSON, posted as a curl or `requests` user would.
    columns = list(served.rows[0])
    records = served.rows
    split = frame.to_json(orient="split", date_format="iso")
    bodies = {
        "dataframe_split": json.dumps(
            {"dataframe_split": {"columns": columns, "data": [list(r.values()) for r in records]}}
        ),
        "pandas to_json split": f'{{"dataframe_split": {split}}}',
        "dataframe_records": json.dumps({"dataframe_records": records}),
        "instances": json.dumps({"instances": records}),
        "inputs": json.dumps({"inputs": {c: [r[c] for r in records] for c in columns}}),
    }
    for shape, body in bodies.items():
        answer = httpx.post(
            f"{served.url}/invocations",
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 200, (shape, answer.text)
        assert answer.json() == {"predictions": served.scores}, shape
        assert answer.headers["X-Perennial-Version"] == served.champion
        assert answer.headers["X-Perennial-Alias"] == CHAMPION
    refused = httpx.post(f"{served.url}/invocations", json={"columns": columns}, timeout=30)
    assert refused.status_code == 400 and refused.json()["error_code"] == "BAD_REQUEST"


# --- the dashboard and the rules against a live /metrics --------------------------------------

METRIC_NAME = re.compile(r"perennial_[a-z0-9_]+")  # every Perennial metric starts so


def metric_names(text: str) -> set[str]:
    return set(METRIC_NAME.findall(text))


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def rule_expressions() -> list[str]:
    import yaml

    rules = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_and_rules_use_is_emitted(served: Served) -> None:
    # A request of each protocol and an error, so that every labelled series exists.
    httpx.post(f"{served.url}/predict", json=served.rows[:1], timeout=30)
    httpx.post(f"{served.url}/predict", json={"load": "x"}, timeout=30)
    httpx.post(f"{served.url}/invocations", json={"dataframe_records": served.rows[:1]}, timeout=30)
    emitted: set[str] = set()
    for _ in range(60):  # the pipeline's state is read by a thread of its own at start
        text = httpx.get(f"{served.url}/metrics", timeout=30).text
        emitted = {
            line.split("{")[0].split(" ")[0]
            for line in text.splitlines()
            if not line.startswith("#")
        }
        if "perennial_champion_metric" in emitted:
            break
        time.sleep(1)
    used_by_dashboard = set().union(*(metric_names(expr) for expr in dashboard_expressions()))
    used_by_rules = set().union(*(metric_names(expr) for expr in rule_expressions()))
    assert used_by_dashboard and used_by_rules
    assert used_by_dashboard - emitted == set(), "the dashboard uses metrics /metrics never emits"
    assert used_by_rules - emitted == set(), "the rules use metrics /metrics never emits"
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert samples["perennial_champion_version"] == f"{float(served.champion)}"
    assert float(samples['perennial_champion_metric{metric="roc_auc"}']) > 0.5
    assert float(samples['perennial_batch_estimated_metric{metric="roc_auc"}']) > 0.5
    assert (
        'perennial_serve_requests_total{alias="champion",protocol="invocations",status="200"}'
        in samples
    )
