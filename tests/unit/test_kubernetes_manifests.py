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
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (init,) = pod["initContainers"]
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert env["CLEARSIGHT_MODEL_DIR"] == mounts["model"] == init_mounts["model"]
    assert init["args"][1] == init_mounts["model"]
    assert {v["name"] for v in pod["volumes"]} >= set(mounts)
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ping"
    assert env["CLEARSIGHT_API_KEYS"] == "required"  # /health/* stays open for the probe
    (catalog,) = [e for e in container["env"] if e["name"] == "CLEARSIGHT_CATALOG_URL"]
    assert catalog["valueFrom"]["secretKeyRef"] == {"name": "clearsight-catalog", "key": "url"}


def test_serving_image_runs_the_class_the_local_deployer_runs():
    dockerfile = (K8S / "Dockerfile.serving").read_text()
    model_class = re.search(r"MODEL_NAME=(\S+)", dockerfile).group(1)
    assert model_class == "clearsight.seldon_model.ImageClassifier"
    module, _, name = model_class.rpartition(".")
    assert importlib.util.find_spec(module) is not None
    assert name in (ROOT / "clearsight" / "seldon_model.py").read_text()
    assert "-c constraints.txt" in dockerfile  # the same pinned versions as here
    assert "CLEARSIGHT_MODEL_DIR=/mnt/models" in dockerfile
    assert "CLEARSIGHT_API_KEYS=required" in dockerfile  # listens on every interface in a pod


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


def test_the_jwt_alternative_guards_every_model_behind_the_seldon_gateway():
    (gateway,) = _documents("seldon-gateway.yaml")
    documents = {d["kind"]: d for d in _documents("seldon-jwt.yaml")}
    assert set(documents) == {"RequestAuthentication", "AuthorizationPolicy"}
    for document in documents.values():
        assert document["apiVersion"] == "security.istio.io/v1"
        assert document["metadata"]["namespace"] == gateway["metadata"]["namespace"]
        assert document["spec"]["selector"]["matchLabels"] == gateway["spec"]["selector"]
    (rule,) = documents["RequestAuthentication"]["spec"]["jwtRules"]
    assert rule["issuer"].startswith("https://") and rule["jwksUri"].startswith("https://")
    assert rule["audiences"] and rule.get("forwardOriginalToken", False) is False
    policy = documents["AuthorizationPolicy"]["spec"]
    # Without a verified token nothing under /seldon/ (every model's routes) gets through.
    assert policy["action"] == "DENY"
    (deny,) = policy["rules"]
    assert deny["from"] == [{"source": {"notRequestPrincipals": ["*"]}}]
    assert deny["to"] == [{"operation": {"paths": ["/seldon/*"]}}]
    # The pods then run with keys off, which the deploy step can set.
    deploy = yaml.safe_load((ROOT / "configs" / "deploy.yaml").read_text())
    assert deploy["steps"]["deploy_champion"]["parameters"]["kubernetes_api_keys"] is True
    assert "kubernetes_api_keys: false" in (K8S / "seldon-jwt.yaml").read_text()


def test_the_readme_creates_every_secret_the_manifests_read_with_its_keys():
    readme = (K8S / "README.md").read_text()
    created: dict[str, set[str]] = {}
    for name, literals in re.findall(
        r"create secret generic ([\w-]+)((?:\s*\\?\s*--from-literal=[\w.-]+=\S+)+)", readme
    ):
        created[name] = set(re.findall(r"--from-literal=([\w.-]+)=", literals))
    assert "url" in created.get("clearsight-catalog", set())  # seldon-deployment.yaml's catalog
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


def _mlflow_env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def test_mlflow_runs_its_own_authentication_with_credentials_from_secrets():
    objects = {(d["kind"], d["metadata"]["name"]): d for d in _documents("mlflow.yaml")}
    (server,) = objects[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"]
    command = " ".join(server["args"][0].split())
    assert "exec mlflow server --app-name basic-auth " in command
    env = _mlflow_env(server)
    # The auth config is written before the server starts, where MLflow reads it.
    config = env["MLFLOW_AUTH_CONFIG_PATH"]["value"]
    assert 'mlflow_auth.py config "$MLFLOW_AUTH_CONFIG_PATH" && exec mlflow server' in command
    assert config.startswith("/tmp/") and command.startswith("umask 077 &&")
    secrets = {
        name: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for name, e in env.items()
        if "valueFrom" in e
    }
    assert secrets["MLFLOW_AUTH_ADMIN_PASSWORD"] == ("clearsight-mlflow-auth", "admin-password")
    assert secrets["MLFLOW_FLASK_SERVER_SECRET_KEY"][0] == "clearsight-mlflow-auth"
    assert secrets["MLFLOW_AUTH_DATABASE_URI"] == ("clearsight-mlflow-db", "auth-uri")
    # The Job creates the accounts with the same image, as the Service's in-cluster name.
    job = objects[("Job", "mlflow-accounts")]["spec"]["template"]["spec"]
    (accounts,) = job["containers"]
    assert accounts["image"] == server["image"]
    assert accounts["command"][-2:] == ["/opt/clearsight/mlflow_auth.py", "accounts"]
    job_env = _mlflow_env(accounts)
    host = job_env["CLEARSIGHT_MLFLOW_URI"]["value"].split("//")[1]
    assert host in re.search(r"--allowed-hosts (\S+)", command).group(1).split(",")
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "CLEARSIGHT_MLFLOW_PASSWORD"):
        assert job_env[name]["valueFrom"]["secretKeyRef"]["name"] == "clearsight-mlflow-auth"
    assert "valueFrom" in job_env["CLEARSIGHT_MLFLOW_READER_PASSWORD"]
    # No password is written into a manifest.
    for container in (server, accounts):
        for variable in container["env"]:
            if re.search(r"PASSWORD|SECRET", variable["name"]):
                assert "value" not in variable, variable["name"]


MODELS = {"Deployment": "V1Deployment", "Service": "V1Service", "Job": "V1Job"}


def _dropped(original, parsed, path: str = "") -> list[str]:
    """Keys of ``original`` the Kubernetes model does not know (misspelt or misplaced)."""
    if isinstance(original, dict):
        return [
            found
            for key, value in original.items()
            for found in (
                [f"{path}/{key}"]
                if key not in parsed
                else _dropped(value, parsed[key], f"{path}/{key}")
            )
        ]
    if isinstance(original, list):
        return [
            f
            for i, (a, b) in enumerate(zip(original, parsed, strict=False))
            for f in _dropped(a, b, f"{path}[{i}]")
        ]
    return []


def test_mlflow_and_minio_manifests_match_the_kubernetes_api_models():
    # The Kubernetes client's models (no cluster needed): an unknown or misplaced field
    # is dropped on the way through, a missing required one raises.
    from kubernetes.client import ApiClient

    api = ApiClient()
    for name in ("mlflow.yaml", "minio.yaml"):
        for document in _documents(name):
            if document["kind"] not in MODELS:
                continue
            parsed = api._ApiClient__deserialize(document, MODELS[document["kind"]])
            back = api.sanitize_for_serialization(parsed)
            assert not _dropped(document, back), (name, document["kind"], _dropped(document, back))
    typo = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {"template": {"spec": {"containers": [{"name": "a", "imag": "x"}]}}},
    }
    back = api.sanitize_for_serialization(api._ApiClient__deserialize(typo, "V1Job"))
    assert _dropped(typo, back) == ["/spec/template/spec/containers[0]/imag"]
