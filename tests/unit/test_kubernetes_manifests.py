"""The Kubernetes files for Seldon Core cannot run here; check what can be checked."""

import importlib.util
import re

import yaml

from tests.conftest import ROOT

K8S = ROOT / "stack" / "kubernetes"


def test_seldon_deployment_runs_our_wrapper_on_the_downloaded_model():
    deployment = yaml.safe_load((K8S / "seldon-deployment.yaml").read_text())
    assert deployment["apiVersion"] == "machinelearning.seldon.io/v1"
    assert deployment["kind"] == "SeldonDeployment"
    predictor = deployment["spec"]["predictors"][0]
    graph = predictor["graph"]
    pod = predictor["componentSpecs"][0]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == graph["name"]]
    assert graph["type"] == "MODEL"
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (init,) = pod["initContainers"]
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert env["CLEARSIGHT_MODEL_DIR"] == mounts["model"] == init_mounts["model"]
    assert init["args"][1] == init_mounts["model"]
    assert {v["name"] for v in pod["volumes"]} >= set(mounts)
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ping"


def test_serving_image_runs_the_class_the_local_deployer_runs():
    dockerfile = (K8S / "Dockerfile.serving").read_text()
    model_class = re.search(r"MODEL_NAME=(\S+)", dockerfile).group(1)
    assert model_class == "clearsight.seldon_model.ImageClassifier"
    module, _, name = model_class.rpartition(".")
    assert importlib.util.find_spec(module) is not None
    assert name in (ROOT / "clearsight" / "seldon_model.py").read_text()
    assert "-c constraints.txt" in dockerfile  # the same pinned versions as here
    assert "CLEARSIGHT_MODEL_DIR=/mnt/models" in dockerfile


def test_secret_is_an_example_only():
    secret = yaml.safe_load((K8S / "rclone-secret.example.yaml").read_text())
    assert all("<" in value for key, value in secret["stringData"].items() if "KEY" in key)
