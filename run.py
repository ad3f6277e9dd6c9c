"""Run Clearsight's pipelines on the active ZenML stack.

Examples:
    python run.py                                  # ingest, train, gate and promote
    python run.py --data-dir ~/data/skin-lesions   # any <split>/<label>/* or <label>/* folder
    python run.py --pipeline ingest --dry-run      # validate and catalogue, upload nothing
    python run.py --pipeline train --epochs 5      # retrain on the latest dataset, no gate
    python run.py promote --model-version 3        # re-judge version 3 against the champion
    python run.py rollback                         # restore the previous champion
    python run.py champion                         # show the model in production

Switch stacks the ZenML way (`zenml stack set NAME`); this script only checks
that the active stack has what the chosen pipelines need.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
STATE_DIR = ROOT / ".state"

# Project-local ZenML state and quiet libraries, unless the caller chose otherwise.
os.environ.setdefault("ZENML_CONFIG_PATH", str(STATE_DIR / "zenml"))
os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402
import yaml  # noqa: E402

from clearsight.catalog import sqlite_url  # noqa: E402
from clearsight.errors import ClearsightError, DataFolderError  # noqa: E402
from clearsight.layout import detect_layout  # noqa: E402
from clearsight.names import DEFAULT_MODEL_NAME, ArtifactName  # noqa: E402
from stack.runtime import quiet_shutdown, quiet_warnings  # noqa: E402

quiet_shutdown()
quiet_warnings()

CONFIGS = ROOT / "configs"
DEFAULT_CATALOG_URL = sqlite_url(STATE_DIR / "catalog.db")
CATALOG_URL_ENV = "CLEARSIGHT_CATALOG_URL"
ZENML_DASHBOARD_PORT = 8237  # `make dashboard`
MLFLOW_UI_PORT = 5001  # `make mlflow-ui` (5000 is the production MLflow server's)


class PreconditionError(click.ClickException):
    """A precondition failed; the message names the command that fixes it."""

    def show(self, file: Any = None) -> None:  # noqa: D102
        click.secho(f"Error: {self.message}", fg="red", err=True)


def _load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PreconditionError(f"Config file {path} not found.")
    return yaml.safe_load(path.read_text()) or {}


STACK_FIX = (
    "\n  Fix: python -m stack.register   (registers and activates the 'embedded' stack)"
    "\n  or:  zenml stack set embedded"
)


def _check_stack(
    needs_tracker: bool, needs_validator: bool = False, needs_deployer: bool = False
) -> None:
    """Fail before anything runs when the active stack lacks what the commands need.

    Args:
        needs_tracker: Training: an MLflow experiment tracker.
        needs_validator: The promotion gate: an Evidently data validator.
        needs_deployer: Deployment: a model deployer.
    """
    from zenml.client import Client

    from stack.preflight import ServiceDownError, check_active_stack

    try:
        check_active_stack()
    except ServiceDownError as error:
        raise PreconditionError(str(error)) from None
    stack = Client().active_stack_model

    def flavor(component_type: str) -> str | None:
        components = stack.components.get(component_type) or []
        return components[0].flavor_name if components else None

    missing = []
    if needs_tracker and flavor("experiment_tracker") != "mlflow":
        missing.append("no MLflow experiment tracker, which training needs")
    if needs_validator and flavor("data_validator") != "evidently":
        missing.append("no Evidently data validator, which the promotion gate needs")
    if needs_deployer and flavor("model_deployer") is None:
        missing.append("no model deployer, which deploying the champion needs")
    if missing:
        raise PreconditionError(
            f"The active stack '{stack.name}' has "
            + "; ".join(missing)
            + ". Nothing was run."
            + STACK_FIX
        )


def _execute(pipeline: Any) -> Any:
    """Run on the active stack (waiting for Airflow when it orchestrates)."""
    from stack.orchestration import PipelineRunError, execute
    from stack.preflight import ServiceDownError

    try:
        return execute(pipeline, echo=click.echo)
    except (ServiceDownError, PipelineRunError) as error:
        raise PreconditionError(str(error)) from None
    except ClearsightError as error:  # a step refused bad input (the step log has details)
        raise PreconditionError(f"The run failed: {error}") from None


def _check_data_dir(data_dir: Path) -> None:
    try:
        detect_layout(data_dir)
    except DataFolderError as error:
        raise PreconditionError(str(error)) from error


def _check_decoding(decoding: Any, config: Path) -> None:
    """Refuse invalid decoding rules before anything runs."""
    from pydantic import ValidationError

    from clearsight.decode import DecodeOptions

    try:
        DecodeOptions(**(decoding or {}))
    except (ValidationError, TypeError) as error:
        raise PreconditionError(
            f"{config}: parameters.decoding is invalid: {error}".rstrip()
        ) from None


def _check_ingest_options(params: dict[str, Any], config: Path) -> None:
    """Refuse invalid label aliases, imbalance threshold, groups or near-duplicate options."""
    from clearsight.dataset import validate_imbalance_ratio
    from clearsight.groups import validate_groups_option
    from clearsight.layout import validate_label_aliases
    from clearsight.leakage import validate_near_duplicates_option

    for name, check in (
        ("label_aliases", validate_label_aliases),
        ("imbalance_warning_ratio", validate_imbalance_ratio),
        ("groups", validate_groups_option),
        ("near_duplicates", validate_near_duplicates_option),
    ):
        if name in params:
            try:
                check(params[name])
            except ValueError as error:
                message = f"{config}: parameters.{name} is invalid: {error}"
                raise PreconditionError(message) from None


def _check_group_table(folder: Path, groups: Any) -> None:
    """Refuse a configured group table that is missing or lacks its columns."""
    from clearsight.groups import load_group_table, validate_groups_option

    try:
        load_group_table(folder, validate_groups_option(groups))
    except DataFolderError as error:
        raise PreconditionError(str(error)) from error


def _check_ingest_folder(folder: Path, label_aliases: Any) -> None:
    """Refuse a folder whose layout or labels cannot make a dataset (no image is read)."""
    from clearsight.layout import scan_folder, validate_class_count

    try:
        found = scan_folder(folder, label_aliases)
        validate_class_count(found.labels, str(folder))
    except DataFolderError as error:
        raise PreconditionError(str(error)) from error
    if found.wrappers:
        click.echo(
            f"Reading {found.root}: {'/'.join(found.wrappers)}/ wraps the dataset "
            f"(the only folder of {folder} besides archive metadata)."
        )


def _ingest_parameters(config: Path, data_dir: str | None, dry_run: bool) -> dict[str, Any]:
    """The checked ingest parameters of ``config``: folder resolved, catalog URL absolute."""
    params = _load_yaml(config).get("parameters", {})
    folder = Path(data_dir or params.get("data_dir") or "data/digits").expanduser()
    if not folder.is_absolute():
        folder = (Path.cwd() if data_dir else ROOT) / folder
    folder = folder.resolve()
    _check_data_dir(folder)
    _check_decoding(params.get("decoding"), config)
    _check_ingest_options(params, config)
    _check_ingest_folder(folder, params.get("label_aliases"))
    _check_group_table(folder, params.get("groups"))
    resolved: dict[str, Any] = {**params, "data_dir": str(folder), "dry_run": dry_run}
    if not params.get("catalog_url") and not os.environ.get(CATALOG_URL_ENV):
        resolved["catalog_url"] = DEFAULT_CATALOG_URL
    return resolved


def _ingest_pipeline(config: Path, data_dir: str | None, dry_run: bool, no_cache: bool) -> Any:
    """The ingest pipeline with its options (data folder resolved, catalog URL absolute)."""
    from pipelines import ingest_pipeline

    options: dict[str, Any] = {"parameters": _ingest_parameters(config, data_dir, dry_run)}
    if no_cache:
        options["enable_cache"] = False
    return ingest_pipeline.with_options(**options)


def _run_ingest(config: Path, data_dir: str | None, dry_run: bool, no_cache: bool) -> Any:
    return _execute(_ingest_pipeline(config, data_dir, dry_run, no_cache))


def _training_parameters(config: Path, overrides: dict[str, Any]) -> Any:
    """Validate the YAML plus the command-line overrides before anything runs."""
    from pydantic import ValidationError

    from clearsight.config import TrainingParameters

    configured = _load_yaml(config).get("parameters", {}).get("hyperparameters") or {}
    try:
        return TrainingParameters.model_validate({**configured, **overrides})
    except ValidationError as error:
        raise PreconditionError(
            f"Invalid hyper-parameters in {config} or options:\n{error}"
        ) from None


def _check_label_review(label_review: Any, config: Path) -> None:
    """Refuse an invalid label-error review section before anything runs."""
    from pydantic import ValidationError

    from clearsight.config import LabelReviewParameters

    try:
        LabelReviewParameters.model_validate(label_review or {})
    except ValidationError as error:
        raise PreconditionError(f"{config}: parameters.label_review is invalid: {error}") from None


def _train_pipeline(config: Path, hyperparameters: Any, no_cache: bool) -> Any:
    """The train pipeline with validated hyper-parameters (needs an ingested dataset)."""
    from zenml.client import Client

    from pipelines import training_pipeline

    if not Client().list_artifact_versions(name=ArtifactName.DATASET, size=1).items:
        raise PreconditionError(
            "No dataset has been ingested on this ZenML store yet.\n"
            "  Fix: python run.py --pipeline ingest   (or plain python run.py)"
        )
    _check_label_review(_load_yaml(config).get("parameters", {}).get("label_review"), config)
    options: dict[str, Any] = {
        "config_path": str(config),
        "parameters": {"hyperparameters": hyperparameters.model_dump(mode="json")},
    }
    if no_cache:
        options["enable_cache"] = False
    return training_pipeline.with_options(**options)


def _run_train(config: Path, hyperparameters: Any, no_cache: bool) -> Any:
    return _execute(_train_pipeline(config, hyperparameters, no_cache))


def _summary(
    ingest_run: Any,
    train_run: Any,
    promote_run: Any,
    model_name: str,
    deploy_run: Any = None,
    notes: list[str] | None = None,
) -> None:
    from zenml.client import Client
    from zenml.utils.dashboard_utils import get_run_url

    client = Client()
    click.echo("")
    click.secho("Summary", bold=True)
    click.echo(f"  stack           {client.active_stack_model.name}")
    dashboard = False
    listed = {run.id: run for run in (ingest_run, train_run, promote_run, deploy_run) if run}
    for run in listed.values():  # the retrain pipeline's one run plays every part
        run = client.get_pipeline_run(run.id)
        click.echo(f"  run             {run.name}  [{run.status.value}]")
        url = get_run_url(run)  # None without a ZenML server
        if url:
            dashboard = True
            click.echo(f"                  {url}")
    if not dashboard and any((ingest_run, train_run, promote_run, deploy_run)):
        click.echo(  # no ZenML server yet: `make dashboard` starts one on the same store
            f"  dashboard       make dashboard, then http://127.0.0.1:{ZENML_DASHBOARD_PORT}"
            "  (runs, steps, artifacts, lineage)"
        )
    if ingest_run is not None:
        run = client.get_pipeline_run(ingest_run.id)
        steps = run.steps
        report_step = steps.get("store_images") or steps.get("scan_images")
        report_name = (
            ArtifactName.INGESTION_REPORT if "store_images" in steps else ArtifactName.SCAN_REPORT
        )
        report = report_step.outputs[report_name][0].load()
        click.echo(f"  dataset         {report.summary()}")
        if report.decoding:
            click.echo(f"  decoding        {report.decoding_summary()}")
        click.echo(f"  fingerprint     {report.fingerprint}")
        sizes = {s: sum(c.values()) for s, c in report.counts.items()}
        click.echo(
            "  splits          "
            + ", ".join(f"{s} {n}" for s, n in sizes.items())
            + f"; {len(next(iter(report.counts.values()), {}))} classes"
        )
        if report.skipped:
            click.echo(
                f"  skipped         {len(report.skipped)} files; first: "
                f"{report.skipped[0].path} ({report.skipped[0].reason})"
            )
        if report.dry_run:
            click.echo("  dry run         catalogue refreshed, nothing uploaded")
    if train_run is not None:
        run = client.get_pipeline_run(train_run.id)
        metrics = run.steps["evaluate_model"].outputs[ArtifactName.TEST_METRICS][0].load()
        registered = run.steps["register_model"].outputs[ArtifactName.REGISTERED_MODEL][0].load()
        if run.model_version is not None:
            click.echo(
                f"  model version   {run.model_version.model.name} "
                f"#{run.model_version.number} (ZenML)"
            )
        click.echo(
            f"  MLflow model    {registered['registered_model_name']} "
            f"v{registered['registered_model_version']}, run {registered['mlflow_run_id']}"
        )
        click.echo(
            f"  test metrics    accuracy {metrics['accuracy']:.4f}, "
            f"macro-F1 {metrics['macro_f1']:.4f} on {metrics['test_images']} images"
        )
        tracker = client.active_stack.experiment_tracker
        if tracker is not None:
            click.echo(
                "  MLflow run      " + _mlflow_run_link(tracker, registered["mlflow_run_id"])
            )
        review = run.steps.get("find_label_issues")
        found = dict(review.run_metadata) if review is not None else {}
        if "label_checked_images" in found:
            click.echo(
                f"  label review    {found.get('label_suspects', 0)} possible label errors "
                f"among {found['label_checked_images']} images, "
                f"{found.get('label_suspects_queued', 0)} newly queued "
                "(review app: make ui, Review queue)"
            )
    if promote_run is not None:
        _decision_summary(promote_run)
    if train_run is not None or promote_run is not None:
        _champion_line(model_name)
    if deploy_run is not None:
        _deployment_summary(deploy_run)
    for line in notes or []:
        click.echo(line)
    click.echo("")
    click.echo("Next:")
    click.echo("  make dashboard            # ZenML dashboard: runs, artifacts, lineage")
    click.echo("  python run.py champion    # the model in production; also: promote, rollback")
    click.echo("  python run.py --help      # options: data folder, epochs, dry run")


def _mlflow_run_link(tracker: Any, run_id: str) -> str:
    """The MLflow UI page of a run: on the stack's MLflow server, or via `make mlflow-ui`."""
    uri = tracker.get_tracking_uri()
    server = uri.startswith(("http://", "https://"))
    base = uri.rstrip("/") if server else f"http://127.0.0.1:{MLFLOW_UI_PORT}"
    experiment_id = _mlflow_experiment_id(tracker, run_id)
    page = f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if experiment_id else base
    return page if server else f"make mlflow-ui, then {page}"


def _mlflow_experiment_id(tracker: Any, run_id: str) -> str | None:
    import mlflow

    try:
        tracker.configure_mlflow()  # the tracking URI and the server's credentials
        return mlflow.MlflowClient().get_run(run_id).info.experiment_id
    except Exception:  # noqa: BLE001 - a link is a convenience; the run id is printed anyway
        return None


def _model_name(train_config: Path) -> str:
    return (_load_yaml(train_config).get("model") or {}).get("name") or DEFAULT_MODEL_NAME


def _promotion_rules(config: Path) -> Any:
    from pydantic import ValidationError

    from clearsight.gate import PromotionRules

    try:
        return PromotionRules.model_validate(
            _load_yaml(config).get("parameters", {}).get("rules") or {}
        )
    except ValidationError as error:
        raise PreconditionError(f"Invalid promotion rules in {config}:\n{error}") from None


def _run_promote(
    config: Path,
    model_name: str,
    rules: Any,
    challenger: int | None = None,
    current_data_dir: str | None = None,
    actor: str | None = None,
) -> Any:
    from pipelines import promotion_pipeline
    from steps.promotion.champion import PromotionError, model_version, production_version

    try:
        challenger_version = model_version(model_name, challenger)
    except PromotionError as error:
        raise PreconditionError(str(error)) from None
    champion = production_version(model_name)
    parameters: dict[str, Any] = {
        "model_name": model_name,
        "challenger_version": challenger_version.number,
        "champion_version": champion.number if champion else None,
        "rules": rules.model_dump(mode="json"),
    }
    if actor:
        parameters["actor"] = actor
    if current_data_dir:
        folder = Path(current_data_dir).expanduser().resolve()
        _check_data_dir(folder)
        parameters["current_data_dir"] = str(folder)
    return _execute(
        promotion_pipeline.with_options(
            config_path=str(config), parameters=parameters, tags=_actor_tags(actor)
        )
    )


def _decision_summary(promote_run: Any) -> None:
    from zenml.client import Client

    run = Client().get_pipeline_run(promote_run.id)
    decision = run.steps["promotion_gate"].outputs[ArtifactName.PROMOTION_DECISION][0].load()
    verdict = "promoted" if decision.promote else "rejected (production unchanged)"
    click.echo(f"  gate            v{decision.challenger.version} {verdict}")
    for reason in decision.reasons:
        click.echo(f"                  - {reason}")


def _champion_line(model_name: str) -> None:
    from steps.promotion.champion import current_champion

    champion = current_champion(model_name)
    if champion is None:
        click.echo("  champion        none yet")
    else:
        click.echo(
            f"  champion        {model_name} v{champion.zenml_version} (ZenML, stage production)"
            f" = MLflow {champion.registered_model} v{champion.registered_version}"
            " (alias champion)"
        )


def _actor_tags(actor: str | None) -> list[str] | None:
    """Run tags naming who started a promote or deploy run (the review app passes --actor)."""
    return [f"actor:{actor}"] if actor else None


def _run_deploy(config: Path, model_name: str, actor: str | None = None) -> Any:
    from zenml.client import Client

    from pipelines import deployment_pipeline

    if Client().active_stack.model_deployer is None:
        raise PreconditionError(
            f"The active stack '{Client().active_stack_model.name}' has no model deployer, "
            "which deploying the champion needs." + STACK_FIX
        )
    return _execute(
        deployment_pipeline.with_options(
            config_path=str(config), parameters={"model_name": model_name}, tags=_actor_tags(actor)
        )
    )


def _deployment_summary(deploy_run: Any) -> None:
    from zenml.client import Client

    run = Client().get_pipeline_run(deploy_run.id)
    deployment = run.steps["deploy_champion"].outputs["deployment"][0].load()
    smoke = run.steps["smoke_test"].outputs["smoke_test"][0].load()
    answer = smoke["answer"]
    changed = "deployed" if deployment["changed"] else "already serving"
    click.echo(
        f"  endpoint        {deployment['prediction_url']}  "
        f"({changed} MLflow v{deployment['registered_version']})"
    )
    click.echo(
        f"  smoke test      true {smoke['true_label']} -> predicted {answer['label']} "
        f"(confidence {answer['confidence']:.3f}{', uncertain' if answer['uncertain'] else ''})"
    )
    from stack.endpoint import curl_command, key_hint

    keys = deployment.get("api_keys", False)
    click.echo(
        "  try it          "
        + curl_command(deployment["prediction_url"], smoke.get("image_path"), keys)
    )
    if keys:
        click.echo(f"                  ({key_hint()})")


def _endpoint_service(model_name: str) -> Any:
    from stack.endpoint import EndpointNotFoundError, running_server

    try:
        return running_server(model_name)
    except EndpointNotFoundError as error:
        raise PreconditionError(str(error)) from None


actor_option = click.option(
    "--actor",
    default=lambda: os.environ.get("USER", "cli"),
    show_default="$USER",
    help="Who asks for it, recorded with the action (the review app passes the user).",
)

EXAMPLES = (
    "Examples:\n\n"
    "\b\n"
    "  python run.py\n"
    "  python run.py --data-dir ~/data/skin-lesions --epochs 20 --image-size 224\n"
    "  python run.py --pipeline ingest --dry-run\n"
    "  python run.py --pipeline train --learning-rate 3e-4 --no-cache\n"
    "  python run.py promote --model-version 3\n"
    "  python run.py promote --current-data-dir ~/data/new-batch\n"
    "  python run.py rollback\n"
    "  python run.py champion\n"
    "  python run.py deploy\n"
    "  python run.py endpoint\n"
    "  python run.py monitor --window-hours 168\n"
    "  python run.py monitor --retrain        # retrain, gate, deploy when a check fails\n"
    "  python run.py retrain --reason 'new reviewed images'\n"
    "  python run.py schedule                 # production stack: ingest, retrain, monitor\n"
    "  python run.py trigger retrain --conf '{\"epochs\": 5}'"
)


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXAMPLES,
)
@click.option(
    "--pipeline",
    type=click.Choice(["all", "ingest", "train"]),
    default="all",
    show_default=True,
    help="all: ingest, train, then gate and promote; or only ingest, or only train.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Image folder: <split>/<label>/* or <label>/*. [default: from configs/ingest.yaml]",
)
@click.option("--dry-run", is_flag=True, help="Validate and catalogue; upload nothing.")
@click.option("--no-cache", is_flag=True, help="Run every step, even unchanged ones.")
@click.option(
    "--ingest-config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=CONFIGS / "ingest.yaml",
    show_default=True,
    help="Ingest pipeline configuration.",
)
@click.option(
    "--train-config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=CONFIGS / "train.yaml",
    show_default=True,
    help="Train pipeline configuration (also names the model).",
)
@click.option(
    "--deploy-config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=CONFIGS / "deploy.yaml",
    show_default=True,
    help="Deployment configuration.",
)
@click.option(
    "--promote-config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=CONFIGS / "promote.yaml",
    show_default=True,
    help="Promotion gate configuration.",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Override: maximum epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Override: batch size.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), help="Override.")
@click.option("--image-size", type=click.IntRange(min=8), help="Override: input side in px.")
@click.option(
    "--architecture",
    type=click.Choice(["small_cnn", "efficientnet_b0", "mobilenet_v2"]),
    help="Override: model architecture.",
)
@click.option(
    "--pretrained-weights",
    type=click.Path(dir_okay=False, exists=True),
    help="Local weights file for efficientnet_b0 / mobilenet_v2 (nothing is downloaded).",
)
@click.pass_context
def main(
    ctx: click.Context,
    pipeline: str,
    data_dir: str | None,
    dry_run: bool,
    no_cache: bool,
    ingest_config: Path,
    train_config: Path,
    deploy_config: Path,
    promote_config: Path,
    **hyperparameters: Any,
) -> None:
    """Ingest labelled images, train a classifier, and promote it if it beats the champion."""
    ctx.obj = {
        "ingest_config": ingest_config,
        "train_config": train_config,
        "promote_config": promote_config,
        "deploy_config": deploy_config,
    }
    if ctx.invoked_subcommand is not None:
        return
    overrides = {k: v for k, v in hyperparameters.items() if v is not None}
    if dry_run and pipeline == "train":
        raise click.UsageError("--dry-run applies to the ingest pipeline only.")
    if overrides and pipeline == "ingest":
        raise click.UsageError("Training options need --pipeline all or train.")
    train = pipeline == "train" or (pipeline == "all" and not dry_run)
    promote = pipeline == "all" and not dry_run
    # Everything the chosen pipelines need, before any of them runs (promote also deploys).
    _check_stack(needs_tracker=train, needs_validator=promote, needs_deployer=promote)
    hyperparameters = _training_parameters(train_config, overrides) if train else None
    rules = _promotion_rules(promote_config) if promote else None

    ingest_run = train_run = promote_run = None
    if pipeline in ("all", "ingest"):
        ingest_run = _run_ingest(ingest_config, data_dir, dry_run, no_cache)
    if train:
        train_run = _run_train(train_config, hyperparameters, no_cache)
    if promote:
        from zenml.client import Client

        number = Client().get_pipeline_run(train_run.id).model_version.number
        promote_run = _run_promote(promote_config, _model_name(train_config), rules, number)
    deploy_run = None
    if promote and _has_champion(_model_name(train_config)):
        deploy_run = _run_deploy(deploy_config, _model_name(train_config))
    _summary(ingest_run, train_run, promote_run, _model_name(train_config), deploy_run)


def _has_champion(model_name: str) -> bool:
    from steps.promotion.champion import current_champion

    return current_champion(model_name) is not None


@main.command()
@click.option(
    "--model-version",
    type=click.IntRange(min=1),
    default=None,
    help="ZenML model version number to judge. [default: the latest]",
)
@click.option(
    "--current-data-dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Labelled folder of new images to check for drift. [default: the test split]",
)
@actor_option
@click.pass_obj
def promote(
    obj: dict[str, Any], model_version: int | None, current_data_dir: str | None, actor: str
) -> None:
    """Re-judge a model version against the champion; promote it if it passes."""
    _check_stack(needs_tracker=True, needs_validator=True)
    name = _model_name(obj["train_config"])
    rules = _promotion_rules(obj["promote_config"])
    run = _run_promote(obj["promote_config"], name, rules, model_version, current_data_dir, actor)
    _summary(None, None, run, name)


@main.command()
@actor_option
@click.pass_obj
def rollback(obj: dict[str, Any], actor: str) -> None:
    """Restore the previous champion in ZenML and MLflow."""
    from steps.promotion.champion import PromotionError
    from steps.promotion.champion import rollback as restore

    _check_stack(needs_tracker=True)
    name = _model_name(obj["train_config"])
    start = time.perf_counter()
    try:
        champion = restore(name, actor=actor)
    except PromotionError as error:
        raise PreconditionError(str(error)) from None
    click.echo(
        f"Rolled back in {time.perf_counter() - start:.1f} s: champion is now {name} "
        f"v{champion.zenml_version} (MLflow v{champion.registered_version})."
    )
    if _endpoint_service(name) is not None:
        click.echo("Redeploying the endpoint with the restored champion ...")
        _summary(None, None, None, name, _run_deploy(obj["deploy_config"], name, actor))


@main.command()
@click.pass_obj
def champion(obj: dict[str, Any]) -> None:
    """Show the model in production."""
    _check_stack(needs_tracker=False)
    click.echo("Production")
    _champion_line(_model_name(obj["train_config"]))


@main.command()
@actor_option
@click.pass_obj
def deploy(obj: dict[str, Any], actor: str) -> None:
    """Serve the champion (new server first, old one stopped after) and smoke-test it."""
    _check_stack(needs_tracker=True, needs_deployer=True)
    name = _model_name(obj["train_config"])
    if not _has_champion(name):
        raise PreconditionError(f"{name} has no champion yet. Fix: python run.py")
    _summary(None, None, None, name, _run_deploy(obj["deploy_config"], name, actor))


@main.command()
@click.pass_obj
def endpoint(obj: dict[str, Any]) -> None:
    """Print the prediction URL of the served champion (and a curl to try it)."""
    from stack.endpoint import EndpointNotFoundError, curl_command, find_endpoint, key_hint

    name = _model_name(obj["train_config"])
    try:
        found = find_endpoint(name)
    except EndpointNotFoundError as error:
        raise PreconditionError(
            f"No endpoint is serving {name} ({error.reason}). Fix: python run.py deploy"
        ) from None
    click.echo(found.prediction_url)
    click.echo(curl_command(found.prediction_url, None, found.keys_required), err=True)
    if found.keys_required:
        click.echo(f"({key_hint()})", err=True)


@main.command()
@click.option(
    "--window-hours",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Hours of traffic to judge, up to now. [default: from configs/monitor.yaml]",
)
@click.option(
    "--model-version",
    type=click.IntRange(min=1),
    default=None,
    help="ZenML model version to judge. [default: the champion]",
)
@click.option(
    "--monitor-config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=CONFIGS / "monitor.yaml",
    show_default=True,
    help="Monitor configuration: window, minimum evidence, thresholds.",
)
@click.option(
    "--retrain",
    is_flag=True,
    help="When a check in the config's retrain_on fails, run the retrain chain (python run.py "
    "retrain) with the monitor's reasons.",
)
@actor_option
@click.pass_obj
def monitor(
    obj: dict[str, Any],
    window_hours: float | None,
    model_version: int | None,
    monitor_config: Path,
    retrain: bool,
    actor: str,
) -> None:
    """Judge the served model's recent traffic: drift, uncertainty, production accuracy.

    \b
    Examples:
      python run.py monitor
      python run.py monitor --window-hours 168
      python run.py monitor --retrain      # retrain, gate and deploy when a check fails
    """
    from clearsight.monitoring import MonitoringError, check_prediction_log
    from steps.monitoring.target import reference_and_classes, serving_target

    _check_stack(needs_tracker=True, needs_validator=True)
    name = _model_name(obj["train_config"])
    parameters = _load_yaml(monitor_config).get("parameters") or {}
    pipeline = _monitor_pipeline(monitor_config, name, window_hours)  # checks the rules
    try:
        chosen = model_version or parameters.get("model_version")
        target = serving_target(name, chosen)
        if retrain and chosen is not None and target.zenml_version != _champion_number(name):
            raise PreconditionError(
                f"--retrain acts on the champion's traffic only; version "
                f"{target.zenml_version} is not the champion. Drop --model-version (or "
                "--retrain), or retrain by hand: python run.py retrain --reason '...'"
            )
        reference_and_classes(target)
        check_prediction_log(parameters.get("catalog_url"))
    except MonitoringError as error:
        raise PreconditionError(str(error)) from None
    run = _execute(pipeline.with_options(parameters={"model_version": target.zenml_version}))
    result = _monitor_summary(run)
    if retrain and result.retrain_reasons:
        click.echo("")
        click.secho("The monitor asks for retraining: running the retrain chain.", bold=True)
        _retrain(obj, result.retrain_reasons, "monitor", None, actor, monitor_run=run)
    elif retrain:
        click.echo(
            "  retrain         not needed: every check in retrain_on passed or was not judged"
        )


def _champion_number(model_name: str) -> int | None:
    from steps.promotion.champion import current_champion

    champion = current_champion(model_name)
    return champion.zenml_version if champion else None


def _monitor_pipeline(config: Path, model_name: str, window_hours: float | None = None) -> Any:
    """The monitor pipeline with checked rules; it judges the champion unless told a version."""
    from pydantic import ValidationError

    from clearsight.monitoring import MonitorRules
    from pipelines import monitoring_pipeline

    parameters = _load_yaml(config).get("parameters") or {}
    try:
        rules = MonitorRules.model_validate(parameters.get("rules") or {})
    except ValidationError as error:
        raise PreconditionError(f"Invalid rules in {config}:\n{error}") from None
    if window_hours is not None:
        rules = rules.model_copy(update={"window_hours": window_hours})
    return monitoring_pipeline.with_options(
        config_path=str(config),
        parameters={"model_name": model_name, "rules": rules.model_dump(mode="json")},
    )


def _monitor_summary(monitor_run: Any) -> Any:
    from zenml.client import Client
    from zenml.utils.dashboard_utils import get_run_url

    from clearsight.monitoring import summary_lines

    run = Client().get_pipeline_run(monitor_run.id)
    result = run.steps["monitoring_decision"].outputs[ArtifactName.MONITOR_RESULT][0].load()
    click.echo("")
    click.secho("Monitor", bold=True)
    click.echo(f"  run             {run.name}  [{run.status.value}]")
    for line in summary_lines(result):
        click.echo(line)
    url = get_run_url(run)
    click.echo(
        f"  dashboard       {url}"
        if url
        else f"  dashboard       make dashboard, then http://127.0.0.1:{ZENML_DASHBOARD_PORT}"
        "  (the run's Evidently reports and summary)"
    )
    return result


@main.command()
@click.option(
    "--reason",
    default="manual",
    show_default=True,
    help="Why: recorded with the runs (ZenML run metadata), on the MLflow run "
    "(tag clearsight.retrain_reason) and in the audit log.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Image folder to ingest. [default: from configs/ingest.yaml]",
)
@actor_option
@click.pass_obj
def retrain(obj: dict[str, Any], reason: str, data_dir: str | None, actor: str) -> None:
    """The retrain chain: ingest (with reviewed images), train, gate; deploy only if promoted.

    A challenger the gate rejects is never deployed, and a chain that fails
    leaves the champion serving. Every run of the chain carries the ZenML tag
    retrain:<trigger> (manual here; monitor for python run.py monitor --retrain).

    \b
    Examples:
      python run.py retrain
      python run.py retrain --reason "new reviewed images from site north"
    """
    _retrain(obj, [reason], "manual", data_dir, actor)


def _retrain_pipeline(
    obj: dict[str, Any],
    trigger: str,
    reasons: list[str],
    actor: str | None,
    data_dir: str | None = None,
    monitor_run_id: str | None = None,
) -> Any:
    """The retrain pipeline configured from the four configs, every option checked first."""
    from zenml import Model

    from pipelines import retrain_pipeline

    name = _model_name(obj["train_config"])
    if _champion_number(name) is None:
        raise PreconditionError(
            f"Model {name!r} has no champion yet, so a retrained version has nothing to be "
            "compared with. Fix: python run.py (trains, judges and serves the first one)."
        )
    train = _load_yaml(obj["train_config"])
    label_review = train.get("parameters", {}).get("label_review")
    _check_label_review(label_review, obj["train_config"])
    promote = _load_yaml(obj["promote_config"]).get("parameters", {})
    deploy = _load_yaml(obj["deploy_config"])
    deployment = {
        **(deploy.get("parameters") or {}),
        **((deploy.get("steps") or {}).get("deploy_champion", {}).get("parameters") or {}),
    }
    return retrain_pipeline.with_options(
        model=Model(**train["model"]),
        parameters={
            "model_name": name,
            "ingest": _ingest_parameters(obj["ingest_config"], data_dir, dry_run=False),
            "hyperparameters": _training_parameters(obj["train_config"], {}).model_dump(
                mode="json"
            ),
            "label_review": label_review or {},
            "rules": _promotion_rules(obj["promote_config"]).model_dump(mode="json"),
            "embedding_components": promote.get("embedding_components", 5),
            "deployment": deployment,
            "trigger": trigger,
            "reasons": reasons,
            "actor": actor or "pipeline",
            "monitor_run_id": monitor_run_id,
        },
        tags=[f"retrain:{trigger}", *(_actor_tags(actor) or [])],
    )


def _retrain(
    obj: dict[str, Any],
    reasons: list[str],
    trigger: str,
    data_dir: str | None,
    actor: str | None,
    monitor_run: Any = None,
) -> None:
    """Run the retrain pipeline; a monitor's request first checks for new data."""
    from zenml.client import Client

    from clearsight.names import PipelineName
    from steps.promotion.retrain import record_retrain

    _check_stack(needs_tracker=True, needs_validator=True, needs_deployer=True)
    name = _model_name(obj["train_config"])
    pipeline = _retrain_pipeline(
        obj, trigger, reasons, actor, data_dir, str(monitor_run.id) if monitor_run else None
    )
    runs: dict[str, Any] = {"monitor": monitor_run}
    if trigger == "monitor":  # retraining on the champion's own data would learn nothing new
        check = _ingest_pipeline(obj["ingest_config"], data_dir, False, False)
        runs["ingest"] = _execute(check.with_options(tags=[f"retrain:{trigger}"]))
        if _same_data_as_champion(name):
            record_retrain(name, reasons, trigger, actor or "pipeline", "skipped", runs)
            click.echo(
                "  retrain         skipped: the ingested dataset is the one the champion was "
                "trained on, so retraining would learn nothing new about the drift. Label "
                "the drifted images first (review app: Review queue; kept images: "
                "prediction_log.image_uri), then: python run.py retrain --reason '...'"
            )
            return
    started = Client().list_pipeline_runs(pipeline_name=PipelineName.RETRAIN, size=1).total
    try:
        run = _execute(pipeline)
    except PreconditionError:
        newest = Client().list_pipeline_runs(
            pipeline_name=PipelineName.RETRAIN, sort_by="desc:created", size=1
        )
        if newest.total > started:
            runs["retrain"] = newest.items[0]
        record_retrain(name, reasons, trigger, actor or "pipeline", "failed", runs)
        raise
    notes = [f"  retrain         {trigger}: {'; '.join(reasons)}"]
    if not _promoted(run):
        notes.append(
            "  deployment      unchanged: the gate rejected the challenger; the champion serves"
        )
    _summary(run, run, run, name, run, notes)


def _same_data_as_champion(model_name: str) -> bool:
    """Whether the latest dataset is the champion's training dataset (same fingerprint)."""
    from zenml import Model
    from zenml.client import Client

    from steps.promotion.champion import current_champion

    champion = current_champion(model_name)
    if champion is None:
        return False
    trained_on = Model(name=model_name, version=champion.zenml_version).get_artifact(
        ArtifactName.DATASET
    )
    latest = Client().get_artifact_version(ArtifactName.DATASET)
    return trained_on is not None and trained_on.load().fingerprint == latest.load().fingerprint


def _promoted(promote_run: Any) -> bool:
    from zenml.client import Client

    run = Client().get_pipeline_run(promote_run.id)
    decision = run.steps["promotion_gate"].outputs[ArtifactName.PROMOTION_DECISION][0].load()
    return bool(decision.promote)


SCHEDULED = ("ingest", "retrain", "monitor")


@main.command("schedule")
@click.option(
    "--schedules-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=CONFIGS / "schedules.yaml",
    show_default=True,
    help="Cron per pipeline (ingest, retrain, monitor).",
)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder the ingest runs read.")
@click.option("--remove", is_flag=True, help="Delete the schedules instead.")
@click.pass_obj
def schedule_command(
    obj: dict[str, Any], schedules_config: Path, data_dir: str | None, remove: bool
) -> None:
    """Schedule ingest (daily), the retrain chain (weekly) and the monitor (hourly) on Airflow.

    The retrain chain ingests, trains, judges the new version against the
    champion of the moment and serves the champion (a rejected challenger
    changes nothing). It needs a champion: run python run.py first.

    \b
    Examples:
      python run.py schedule
      python run.py schedule --remove
    """
    from stack.orchestration import (
        PipelineRunError,
        registered_schedules,
        remove_schedule,
        schedule,
    )
    from stack.preflight import ServiceDownError

    _check_stack(needs_tracker=True)
    crons = _load_yaml(schedules_config)
    if "train-schedule" in registered_schedules():  # bare training, scheduled before the chain
        remove_schedule("train-schedule")
        click.echo("  train   removed (the retrain chain replaces bare training)")
    for name in SCHEDULED:
        if remove:
            done = remove_schedule(f"{name}-schedule")
            click.echo(f"  {name:7} {'removed' if done else 'not scheduled'}")
            continue
        cron = (crons.get(name) or {}).get("cron")
        if not cron:
            continue
        if name == "ingest":
            pipeline = _ingest_pipeline(obj["ingest_config"], data_dir, False, False)
        elif name == "monitor":  # judges whichever version is champion when it runs
            pipeline = _monitor_pipeline(CONFIGS / "monitor.yaml", _model_name(obj["train_config"]))
        else:
            pipeline = _retrain_pipeline(obj, "schedule", [f"scheduled ({cron})"], None, data_dir)
        try:
            outcome = schedule(pipeline, f"{name}-schedule", cron)
        except (ServiceDownError, PipelineRunError) as error:
            raise PreconditionError(str(error)) from None
        click.echo(f"  {name:7} {cron:12} {outcome}")
    if not remove:
        click.echo("Airflow shows them as DAGs; run one now: python run.py trigger retrain")


@main.command("trigger")
@click.argument("name", type=click.Choice(SCHEDULED))
@click.option(
    "--conf", "conf", help="Hyper-parameter overrides for this run as JSON, e.g. '{\"epochs\": 5}'."
)
@click.pass_obj
def trigger_command(obj: dict[str, Any], name: str, conf: str | None) -> None:
    """Run a scheduled pipeline now on Airflow (retrain: with hyper-parameter overrides).

    \b
    Examples:
      python run.py trigger retrain --conf '{"epochs": 5, "learning_rate": 0.0003}'
      python run.py trigger ingest
    Same as: airflow dags trigger <dag id> --conf '...' (the DAG ids: python run.py schedule)
    """
    import json

    from clearsight.config import TrainingParameters, with_run_overrides
    from stack.orchestration import PipelineRunError, trigger
    from stack.preflight import ServiceDownError

    overrides: dict[str, Any] = {}
    if conf:
        try:
            _, overrides = with_run_overrides(TrainingParameters(), conf)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--conf") from None
        if name != "retrain":
            raise click.BadParameter(
                "only the retrain chain takes overrides (its training)", param_hint="--conf"
            )
    try:
        run = trigger(f"{name}-schedule", overrides, echo=click.echo)
    except (ServiceDownError, PipelineRunError) as error:
        raise PreconditionError(str(error)) from None
    click.echo(f"Run {run.name} {run.status.value} (Airflow run {run.orchestrator_run_id}).")
    if overrides:
        click.echo(f"  with overrides {json.dumps(overrides)}")


if __name__ == "__main__":
    try:
        main(standalone_mode=True)
    finally:
        sys.stdout.flush()
