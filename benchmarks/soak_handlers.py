"""The soak's counting handler: every run appends one line to a file of its process.

Lines go to ``$SOAK_EFFECTS_DIR/effects-<pid>.jsonl`` with one ``write`` on an
``O_APPEND`` descriptor, so a line either is there whole or not at all, even when the
process is killed; the soak counts runs across every processor process it started.

Importing the module also tags this process's Visma requests: ``soak-pid/<pid>`` is
appended to the Visma client's User-Agent (the processor imports its handler modules
before it makes the client), so that the soak's Visma server can tell which processor
process posted each feedback. A feedback posted twice is then acceptable only when the
earlier post came from a process the soak killed before it could record the post.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from visma_webhooks.adapters import visma_http
from visma_webhooks.notification_handlers import PermanentError, handler

EFFECTS_ENV = "SOAK_EFFECTS_DIR"
PID_TAG = "soak-pid/"

if PID_TAG not in visma_http.USER_AGENT:  # the module is reloaded once per function instance
    visma_http.USER_AGENT = f"{visma_http.USER_AGENT} {PID_TAG}{os.getpid()}"
_lock = threading.Lock()
_fd: dict[int, int] = {}  # pid → descriptor (a forked child opens its own file)


def _descriptor() -> int:
    directory = os.environ.get(EFFECTS_ENV)
    if not directory:
        raise PermanentError(f"{EFFECTS_ENV} is not set: nowhere to count effects")
    pid = os.getpid()
    with _lock:
        if pid not in _fd:
            path = os.path.join(directory, f"effects-{pid}.jsonl")
            _fd[pid] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        return _fd[pid]


# unchanged=True: the soak names each resource from several notifications, and it counts
# effects per notification; without it every notification but the first of a resource
# would be skipped as unchanged, and "each effect exactly once" could not be checked.
@handler("*", name="soak-counter", unchanged=True)
def count(notification: Any, resource: Any, context: Any) -> str:
    line = {
        "id": notification.notification_id,
        "tenant": notification.tenant_id,
        "event": notification.event,
        "resource": notification.resource_path,
        "fetched": resource is not None,
        # The state received: the soak checks that it never goes back in time per resource.
        "modified": resource.get("lastModifiedDateTime") if isinstance(resource, dict) else None,
        "deleted": notification.deleted,
        "pid": os.getpid(),
        "at": time.time(),
    }
    os.write(_descriptor(), (json.dumps(line) + "\n").encode())
    return "counted"
