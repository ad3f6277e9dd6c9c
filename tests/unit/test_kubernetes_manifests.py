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


def _documents(name):
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def test_minio_and_mlflow_manifests_fit_together():
    objects = {
        (d["kind"], d["metadata"]["name"]): d
        for n in ("minio.yaml", "mlflow.yaml")
        for d in _documents(n)
    }
    assert {k for k, _ in objects} == {"PersistentVolumeClaim", "Deployment", "Service", "Job"}
    assert {d["metadata"]["namespace"] for d in objects.values()} == {"clearsight"}
    for app, port in (("minio", 9000), ("mlflow", 5000)):
        deployment, service = objects[("Deployment", app)], objects[("Service", app)]
        pod = deployment["spec"]["template"]
        assert (
            deployment["spec"]["selector"]["matchLabels"].items()
            <= pod["metadata"]["labels"].items()
        )
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        (container,) = pod["spec"]["containers"]
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        service_ports = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
        assert named[service_ports[port]] == port
        assert container["readinessProbe"]["httpGet"]["port"] in named
        image = container["image"]
        assert ":" in image and not image.endswith(":latest")
        for variable in container.get("env", []):
            if "valueFrom" in variable:
                assert variable["valueFrom"]["secretKeyRef"]["name"].startswith("clearsight-")
            else:
                assert not re.search(r"PASSWORD|SECRET", variable["name"])
    mlflow_env = {
        e["name"]: e.get("value")
        for e in objects[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert mlflow_env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio.clearsight.svc.cluster.local:9000"
    buckets = objects[("Job", "minio-buckets")]["spec"]["template"]["spec"]["containers"][0][
        "args"
    ][0]
    assert (
        "clearsight/clearsight-artifacts" in buckets and "clearsight/clearsight-mlflow" in buckets
    )
    assert "s3://clearsight-mlflow" in str(objects[("Deployment", "mlflow")])


def test_seldon_core_helm_values_match_the_deployment():
    values = yaml.safe_load((K8S / "seldon-core-values.yaml").read_text())
    deployment = (K8S / "seldon-deployment.yaml").read_text()
    initializer = values["storageInitializer"]["image"]
    assert initializer in deployment  # the same rclone initializer version
    assert "--version 1.19.0" in (K8S / "seldon-core-values.yaml").read_text()
    assert values["crd"]["create"] is True and values["usageMetrics"]["enabled"] is False


def test_mlflow_accepts_the_host_names_it_is_called_by():
    (deployment,) = [d for d in _documents("mlflow.yaml") if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command = " ".join(container["args"][0].split())
    allowed = set(re.search(r"--allowed-hosts (\S+)", command).group(1).split(","))
    namespace = deployment["metadata"]["namespace"]
    for host in ("mlflow", f"mlflow.{namespace}", f"mlflow.{namespace}.svc.cluster.local"):
        assert {host, f"{host}:5000"} <= allowed
    assert {"localhost:5000", "127.0.0.1:5000"} <= allowed  # kubectl port-forward


def test_the_istio_gateway_is_the_one_the_helm_values_name():
    values = yaml.safe_load((K8S / "seldon-core-values.yaml").read_text())
    (gateway,) = _documents("seldon-gateway.yaml")
    assert gateway["kind"] == "Gateway"
    assert gateway["apiVersion"].startswith("networking.istio.io/")
    meta = gateway["metadata"]
    assert values["istio"]["enabled"] is True
    assert values["istio"]["gateway"] == f"{meta['namespace']}/{meta['name']}"
    assert gateway["spec"]["selector"] == {"istio": "ingressgateway"}
    assert {s["port"]["protocol"] for s in gateway["spec"]["servers"]} == {"HTTP"}


def test_the_readme_creates_every_secret_the_manifests_read_with_its_keys():
    readme = (K8S / "README.md").read_text()
    created: dict[str, set[str]] = {}
    for name, literals in re.findall(
        r"create secret generic ([\w-]+)((?:\s*\\?\s*--from-literal=[\w.-]+=\S+)+)", readme
    ):
        created[name] = set(re.findall(r"--from-literal=([\w.-]+)=", literals))
    for manifest in ("minio.yaml", "mlflow.yaml"):
        for document in _documents(manifest):
            text = yaml.safe_dump(document)
            for ref in re.findall(r"secretKeyRef:\s*\n\s*key: (\S+)\n\s*name: (\S+)", text):
                key, name = ref
                assert key in created.get(name, set()), f"{manifest}: secret {name} key {key}"
            for name in re.findall(r"secretRef:\s*\n\s*name: (\S+)", text):
                assert name in created, f"{manifest}: secret {name}"


def test_the_readme_applies_files_that_exist_and_documents_every_manifest():
    readme = (K8S / "README.md").read_text()
    applied = re.findall(r"stack/kubernetes/([\w.-]+\.ya?ml)", readme)
    assert applied
    for name in applied:
        assert (K8S / name).is_file(), name
    for path in K8S.glob("*.yaml"):
        assert f"`{path.name}`" in readme, f"{path.name} is not documented in the README"
    # Every manifest parses and names its kind.
    for path in K8S.glob("*.yaml"):
        for document in _documents(path.name):
            assert document.get("kind") or path.name == "seldon-core-values.yaml", path.name
