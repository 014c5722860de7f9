"""MLflow's `/invocations` and the Open Inference Protocol (KServe v2) on the real app over a real
fitted model (no registry): every payload shape scores exactly as `/predict` does, each answer
names its version and arm, and errors come in each protocol's own shape. The v2 requests and
answers are made and read by tritonclient's own codecs; the real client against a real server
runs in tests/integration/test_serve_protocols.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig
from tasks.registry.client import CHAMPION
from tests.unit.test_serve_refusals import ROW, TOKEN, client_for, make_config
from tests.unit.test_serving import as_json_rows, fitted, raw_rows

MODEL = "sensors-overheat"
INFER = f"/v2/models/{MODEL}/infer"


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return fitted(make_config(tmp_path_factory.mktemp("protocols")), 0)


@pytest.fixture()
def config(tmp_path: Path) -> PerennialConfig:
    return make_config(tmp_path)


def sample_rows(count: int = 40) -> list[dict[str, Any]]:
    """Rows with unseen and missing categories and missing numbers, as JSON values."""
    frame = raw_rows(count, 11)
    frame.loc[::5, "site"] = "west"
    frame.loc[::7, "site"] = None
    frame.loc[::6, "load"] = np.nan
    return as_json_rows(frame)


def predict_scores(client: Any, rows: list[dict[str, Any]]) -> list[float]:
    answer = client.post("/predict", json=rows)
    assert answer.status_code == 200, answer.text
    return [row["score"] for row in answer.json()["predictions"]]


def test_every_mlflow_payload_scores_as_predict(config: PerennialConfig, scorer: Any) -> None:
    rows = sample_rows()
    columns = list(rows[0])
    frame = pd.DataFrame(rows)
    payloads = {
        "dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]},
        "dataframe_records": rows,
        "instances": rows,
        "inputs": {c: [r[c] for r in rows] for c in columns},
    }
    with client_for(config, scorer) as client:
        expected = predict_scores(client, rows)
        for key, payload in payloads.items():
            answer = client.post("/invocations", json={key: payload, "params": {}})
            assert answer.status_code == 200, (key, answer.text)
            assert answer.json() == {"predictions": expected}, key
            assert answer.headers["X-Perennial-Version"] == "1"
            assert answer.headers["X-Perennial-Alias"] == CHAMPION
        # pandas' own split JSON (index included, times as ISO text, missing numbers as null)
        split = frame.to_json(orient="split", date_format="iso")
        answer = client.post(
            "/invocations", content=f'{{"dataframe_split": {split}}}', headers=JSON_HEADERS
        )
        assert answer.json() == {"predictions": expected}
        # json.dumps of a frame with a missing number writes NaN: read as missing, as pandas does
        nan_body = json.dumps({"dataframe_records": frame.to_dict(orient="records")})
        assert "NaN" in nan_body
        answer = client.post("/invocations", content=nan_body, headers=JSON_HEADERS)
        assert answer.json() == {"predictions": expected}
        one = client.post("/invocations", json={"inputs": rows[0]})  # one row as an object
        assert one.json() == {"predictions": expected[:1]}


JSON_HEADERS = {"Content-Type": "application/json"}


def test_mlflow_errors_are_mlflow_shaped(
    config: PerennialConfig, scorer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with client_for(config, scorer) as client:
        answer = client.post("/invocations", json={"data": [ROW]})
        assert answer.status_code == 400
        assert answer.json()["error_code"] == "BAD_REQUEST"
        assert "exactly one of the fields" in answer.json()["message"]
        answer = client.post(
            "/invocations", json={"dataframe_records": [ROW, {**ROW, "load": "x"}]}
        )
        assert answer.status_code == 400 and "load: " in answer.json()["message"]
        assert "(row 1)" in answer.json()["message"]
        body = json.dumps({"dataframe_records": [{**ROW, "load": float("inf")}]})
        answer = client.post("/invocations", content=body, headers=JSON_HEADERS)
        assert answer.status_code == 400 and "load: " in answer.json()["message"]
        answer = client.post(
            "/invocations", content="load\n1\n", headers={"Content-Type": "text/csv"}
        )
        assert answer.status_code == 415 and answer.json()["error_code"] == "BAD_REQUEST"
        split = {"columns": ["load"], "data": [[1.0, 2.0]]}
        answer = client.post("/invocations", json={"dataframe_split": split})
        assert answer.status_code == 400 and "2 values for 1 columns" in answer.json()["message"]
        too_many = {"dataframe_records": [ROW] * (config.serve.max_rows + 1)}
        assert client.post("/invocations", json=too_many).status_code == 413
        text = client.get("/metrics").text
    assert (
        'perennial_serve_requests_total{alias="none",protocol="invocations",status="400"} 4.0'
        in text
    )
    monkeypatch.setenv("PERENNIAL_SERVE_TOKEN", TOKEN)
    with client_for(config, scorer) as client:
        answer = client.post("/invocations", json={"dataframe_records": [ROW]})
        assert answer.status_code == 401 and answer.json()["error_code"] == "UNAUTHENTICATED"
        answer = client.post(
            "/invocations",
            json={"dataframe_records": [ROW]},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert answer.status_code == 200


def triton_request(
    rows: list[dict[str, Any]], binary: bool, outputs: list[tuple[str, bool]] | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers tritonclient sends for rows: one tensor per column (numbers FP64,
    text BYTES), made by the client's own InferInput and request builder."""
    from tritonclient.http import InferInput, InferRequestedOutput
    from tritonclient.http._utils import _get_inference_request

    tensors = []
    for column in rows[0]:
        values = [row[column] for row in rows]
        if column in ("load", "ambient"):
            array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            tensor = InferInput(column, [len(rows)], "FP64")
        else:
            array = np.array(["" if v is None else v for v in values], dtype=np.object_)
            tensor = InferInput(column, [len(rows)], "BYTES")
        tensors.append(tensor.set_data_from_numpy(array, binary_data=binary))
    asked = [InferRequestedOutput(name, binary_data=b) for name, b in outputs] if outputs else None
    body, header_length = _get_inference_request(
        tensors, "req-1", asked, 0, False, False, 0, None, None
    )
    headers = (
        {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
    )
    return body, headers


def triton_result(answer: Any) -> Any:
    from tritonclient.http import InferResult

    return InferResult.from_response_body(
        answer.content, header_length=answer.headers.get("Inference-Header-Content-Length")
    )


def test_v2_infer_scores_as_predict_binary_and_json(config: PerennialConfig, scorer: Any) -> None:
    # A v2 tensor has no null: a missing number is NaN, and a missing category an empty string,
    # which the model scores as it scores a null (a category it never saw).
    rows = [{**row, "site": row["site"] or ""} for row in sample_rows()]
    with client_for(config, scorer) as client:
        expected = predict_scores(client, rows)
        labels = [int(score >= 0.5) for score in expected]
        for binary in (True, False):
            body, headers = triton_request(rows, binary)
            answer = client.post(INFER, content=body, headers=headers)
            assert answer.status_code == 200, answer.text
            result = triton_result(answer)
            assert result.as_numpy("score").tolist() == expected
            assert result.as_numpy("label").tolist() == labels
            response = result.get_response()
            assert response["model_name"] == MODEL and response["model_version"] == "1"
            assert response["id"] == "req-1"
            assert response["parameters"] == {"perennial_alias": CHAMPION}
        # A binary header seen before is read once; the values after it are read every time.
        body, headers = triton_request(rows[::-1], True)
        answer = client.post(INFER, content=body, headers=headers)
        assert triton_result(answer).as_numpy("score").tolist() == expected[::-1]
        body, headers = triton_request(rows, True, outputs=[("label", False)])
        answer = client.post(INFER, content=body, headers=headers)
        response = triton_result(answer).get_response()
        assert [o["name"] for o in response["outputs"]] == ["label"]
        assert response["outputs"][0]["data"] == labels
        # The version may be pinned: the arm that serves it answers.
        pinned = client.post(f"/v2/models/{MODEL}/versions/1/infer", content=body, headers=headers)
        assert pinned.status_code == 200
        text = client.get("/metrics").text
    assert 'perennial_serve_requests_total{alias="champion",protocol="v2",status="200"} 5.0' in text


def test_v2_errors_are_error_objects(config: PerennialConfig, scorer: Any) -> None:
    rows = [ROW, ROW]
    request = orjson.loads(triton_request(rows, False)[0])
    with client_for(config, scorer) as client:

        def refused(path: str, payload: Any, status: int) -> str:
            answer = client.post(path, content=orjson.dumps(payload))
            assert answer.status_code == status, answer.text
            assert list(answer.json()) == ["error"]
            return str(answer.json()["error"])

        assert "unknown model 'other'" in refused("/v2/models/other/infer", request, 404)
        assert "v9 of" in refused(f"/v2/models/{MODEL}/versions/9/infer", request, 404)
        missing = {**request, "inputs": [t for t in request["inputs"] if t["name"] != "load"]}
        assert "load: Field required (element 0 and 1 more)" in refused(INFER, missing, 400)
        wide = {**request, "inputs": [{**t, "shape": [1, 2]} for t in request["inputs"]]}
        assert "one tensor per column" in refused(INFER, wide, 400)
        asked = {**request, "outputs": [{"name": "probabilities"}]}
        assert "unknown output 'probabilities'" in refused(INFER, asked, 400)
        short = {**request, "inputs": [{**request["inputs"][0], "shape": [3]}]}
        assert "2 values for shape [3]" in refused(INFER, short, 400)
        answer = client.post(INFER, content=b"not json")
        assert answer.status_code == 400 and "not JSON" in answer.json()["error"]
        answer = client.post(
            INFER, content=orjson.dumps(request), headers={"Content-Encoding": "gzip"}
        )
        assert answer.status_code == 415


def test_v2_health_and_metadata(config: PerennialConfig, scorer: Any) -> None:
    with client_for(config, scorer) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert client.get(f"/v2/models/{MODEL}/ready").status_code == 200
        assert client.get("/v2/models/other/ready").status_code == 404
        metadata = client.get(f"/v2/models/{MODEL}").json()
        assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]
        assert client.get("/ping").status_code == 200
    assert metadata["name"] == MODEL and metadata["versions"] == ["1"]
    inputs = {tensor["name"]: tensor for tensor in metadata["inputs"]}
    assert {name: tensor["datatype"] for name, tensor in inputs.items()} == {
        "load": "FP64",
        "ambient": "FP64",
        "site": "BYTES",
        "measured_at": "BYTES",
        "reading_id": "BYTES",
    }
    assert inputs["reading_id"]["parameters"]["optional"] is True
    assert metadata["outputs"] == [
        {"name": "score", "datatype": "FP64", "shape": [-1]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    ]


def test_v2_readiness_follows_the_champion_and_the_token(
    tmp_path: Path, scorer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from flows.serve import create_app
    from tasks.core.storage import Storage
    from tasks.serve.serving import AliasPoller, ModelSlot
    from tasks.watch.live import LiveSampler
    from tests.unit.test_serving import Registry

    config = make_config(tmp_path)
    empty = AliasPoller(config, ModelSlot(), Registry().load, Registry().lookup)
    monkeypatch.setenv("PERENNIAL_SERVE_TOKEN", TOKEN)
    with TestClient(create_app(config, empty, LiveSampler(config, Storage(config.home)))) as client:
        assert client.get("/v2/health/live").status_code == 200  # open, like /health
        answer = client.get("/v2/health/ready")
        assert answer.status_code == 503 and "no champion" in answer.json()["error"]
        assert client.get(f"/v2/models/{MODEL}").status_code == 401
        answer = client.post(INFER, content=b"{}")
        assert answer.status_code == 401 and list(answer.json()) == ["error"]
        authorized = {"Authorization": f"Bearer {TOKEN}"}
        answer = client.post(INFER, content=b"{}", headers=authorized)
        assert answer.status_code == 503 and list(answer.json()) == ["error"]


TARGETS = {
    "regression": "target: {name: peak, column: peak, task: regression}",
    "multiclass": (
        "target: {name: band, column: peak, task: multiclass, bins: [60, 90], "
        "classes: [low, mid, high]}"
    ),
}


@pytest.mark.parametrize("task", list(TARGETS))
def test_every_protocol_answers_what_the_model_answers_for_its_task(
    tmp_path: Path, task: str
) -> None:
    """A value (regression), or each class's probability and the chosen class (multiclass): as
    `/predict` answers, in v2's output tensors, and in `/invocations` as the registered MLflow
    model's `predict` answers."""
    from tasks.data.features import label, model_inputs
    from tasks.learn.scorer import pyfunc_answer
    from tasks.learn.train import fit_model
    from tests.unit.test_serve_refusals import KEYED_CONFIG

    text = KEYED_CONFIG.replace(
        'target: {name: overheat, column: peak, expression: "peak > 80"}', TARGETS[task]
    )
    config = make_config(tmp_path, text)
    frame = raw_rows(2000, 0)
    scorer = fit_model(
        model_inputs(frame, config), label(frame, config), {"max_depth": 3}, 20, config
    )
    rows = sample_rows(12)
    with client_for(config, scorer) as client:
        predictions = client.post("/predict", json=rows).json()["predictions"]
        invocations = client.post("/invocations", json={"dataframe_records": rows}).json()
        body, headers = triton_request([{**r, "site": r["site"] or ""} for r in rows], False)
        answer = client.post(f"/v2/models/{config.model_name}/infer", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        result = triton_result(answer)
        metadata = client.get(f"/v2/models/{config.model_name}").json()
    if task == "regression":
        values = [p["value"] for p in predictions]
        assert invocations == {"predictions": values}
        assert result.as_numpy("value").tolist() == values
        assert metadata["outputs"] == [{"name": "value", "datatype": "FP64", "shape": [-1]}]
        return
    classes = ["low", "mid", "high"]
    probabilities = [[p["probabilities"][c] for c in classes] for p in predictions]
    chosen = [p["class"] for p in predictions]
    assert result.as_numpy("probabilities").tolist() == probabilities
    assert [c.decode() for c in result.as_numpy("class").tolist()] == chosen
    expected = pyfunc_answer(np.array(probabilities), "multiclass", tuple(classes))
    assert invocations == {"predictions": expected.to_dict(orient="records")}
    assert [r["predicted_class"] for r in invocations["predictions"]] == chosen
    assert metadata["outputs"] == [
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        {"name": "class", "datatype": "BYTES", "shape": [-1]},
    ]
