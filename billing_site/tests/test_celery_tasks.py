"""
A worker finds every task by autodiscovery: each name in the beat schedule and each task the code enqueues is
registered in a fresh process that starts the way `celery -A billing_site worker` does (no test has imported the
task modules for it).
"""
import ast
import json
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
APPS = ("accounts", "billing", "usage", "billing_site")

WORKER_REGISTRY = """
import json, django
django.setup()
from billing_site.celery import app
app.loader.import_default_modules()  # what the worker does at start-up: runs autodiscovery
print(json.dumps(sorted(app.tasks)))
"""


def worker_registered_task_names() -> set[str]:
    result = subprocess.run([sys.executable, "-c", WORKER_REGISTRY], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={"DJANGO_SETTINGS_MODULE": "billing_site.settings",
                                              "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def _source_files():
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "tests" not in path.parts and "migrations" not in path.parts:
                yield path


def defined_task_names() -> dict[str, str]:
    """function name -> registered task name, for every @shared_task in the project's code."""
    names = {}
    for path in _source_files():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                call = decorator if isinstance(decorator, ast.Call) else None
                target = call.func if call else decorator
                if getattr(target, "id", getattr(target, "attr", "")) != "shared_task":
                    continue
                pinned = [k.value.value for k in (call.keywords if call else []) if k.arg == "name"]
                names[node.name] = pinned[0] if pinned else f"{module}.{node.name}"
    return names


def enqueued_function_names() -> set[str]:
    """Tasks the project's code sends: receivers of `.delay(...)` / `.apply_async(...)`, and the first argument of
    `task_send(task, ...)` (billing_site.celery: the send that never raises, used everywhere work is also a row)."""
    names = set()
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            if (isinstance(node.func, ast.Attribute) and node.func.attr in ("delay", "apply_async")
                    and isinstance(node.func.value, ast.Name)):
                names.add(node.func.value.id)
            elif (isinstance(node.func, ast.Name) and node.func.id == "task_send" and node.args
                    and isinstance(node.args[0], ast.Name)):
                names.add(node.args[0].id)
    return names


def test_a_worker_registers_every_scheduled_and_enqueued_task():
    defined = defined_task_names()
    enqueued = enqueued_function_names()
    assert len(enqueued) >= 5, f"the scan found only {enqueued}: it is broken"
    assert enqueued <= set(defined), f"enqueued but not a shared_task: {enqueued - set(defined)}"
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    needed = scheduled | {defined[name] for name in enqueued}

    registered = worker_registered_task_names()

    assert needed - registered == set()
    # Every task the code defines, not only the ones named above (a task only staff trigger is still a task).
    assert set(defined.values()) - registered == set()


def test_moved_back_office_tasks_keep_their_public_names():
    from billing.backoffice import tasks

    assert tasks.reconcile_task.name == "billing.tasks_backoffice.reconcile_task"
    assert tasks.refund_requests_resume_stuck_task.name == "billing.tasks_backoffice.refund_requests_resume_stuck_task"
    assert tasks.refund_request_execute_task.name == "billing.tasks_backoffice.refund_request_execute_task"


def test_tasks_are_found_by_discovery_not_a_list_of_imports():
    assert not hasattr(settings, "CELERY_IMPORTS")
    assert not (ROOT / "billing" / "tasks_backoffice.py").exists()
