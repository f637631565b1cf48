"""``make soak``: the reliability run of the whole pipeline, with a summary and a non-zero exit on any loss.

What it does (``python -m benchmarks.soak [--notifications 2000] [--kills 6] [--seed N]
[--record]``):

* Runs a Visma server in this process on loopback (the embedded sandbox with extra
  faults, :class:`~benchmarks.soak.visma.FaultyVisma`): 20 % of calls, the token
  endpoint included, answer a 5xx, a 429 (``Retry-After: 1``) or time out (the server
  holds the request until the client has given up, and then does not act on it); 1 % of
  the resources are refused for good (403, ``refused-*`` ids), 1 % are gone (404,
  ``missing-*`` ids: deletions), and 0.5 % are in an outage (always 503) until "Visma is
  fixed".
* Starts ``visma-webhooks local --no-processor`` as a subprocess against it, and runs the
  processor loop in separate ``visma-webhooks process`` subprocesses, with the counting
  handler :mod:`benchmarks.soak_handlers` (registered with ``unchanged=True``: several
  notifications name one resource, and each must be counted).
* Sends the notifications signed, in grouped legacy arrays (1 to 20 items) and single
  dispatcher deliveries; every request is delivered twice (about a third of the pairs at
  the same instant, the rest with the copy later in the stream), interleaved with forged
  requests (bad, missing or misplaced signatures: 401) and malformed ones (400/413).
* Kills a processor process with SIGKILL at random points mid-batch (half of them within
  milliseconds of its handler counting an effect, the others up to 150 ms later) and
  starts a new one.
* Once the queue is drained and nothing is in flight: checks the invariants (below),
  "fixes Visma" (no more faults or outage), runs ``visma-webhooks replay`` and checks that
  the DLQ drains to success.
* Then the mass update (``--mass-update 300``; :mod:`~benchmarks.soak.mass_update`): one
  tenant's notifications at once against ``--calls-per-window`` calls per
  ``--window-seconds`` (at least 3 windows at the floor), two other tenants' changes mixed
  in; none dead-lettered, no "gave up", feedback once each, a final outcome each, no stale
  state per resource, and the other tenants' latency within three batch times.

Invariants (each one is a line of the summary; any violation exits 1):

* every request got the answer it should (202 with every item accepted, 401, 400/413);
* every valid notification got exactly one feedback with the right ``isSuccess``
  (403 → false, 404 → true). Two kinds of extra feedback are told apart rather than forbidden:
  a post made by a process that was then killed before it could record it is repeated by
  the next attempt (Visma's feedback endpoint has no idempotency key, so no client can
  avoid that; every such repeat must come from a killed process), and a notification one
  of whose copies failed on its last receive and went to the DLQ had a "gave up" notice
  (``isSuccess: false``) posted then, which the success after the replay supersedes. The
  last feedback of each notification must be the right one;
* every handler effect happened exactly once: each notification whose resource exists
  was counted at least once with its document, each deletion (404) with none and
  ``deleted=True``, and every count but the last came from a process killed before the
  run could be recorded (the crash window that no handler outside a transaction with the
  dedup table can close); 403 notifications ran no handler, outage ones none before the
  fix;
* the DLQ holds only what was designed to fail: copies of valid notifications that used
  up their receives on transient failures (every outage notification, both copies, and
  the few that the 20 % fault rate and the kills pushed past ``--max-receive-count``);
  nothing forged, malformed or 403;
* ``visma-webhooks replay`` after the fix drains the DLQ, and every replayed notification
  ends with a success feedback (or its 403 failure);
* no forged or malformed notification was processed, fetched, queued or answered;
* lost (a valid notification without its final outcome and feedback) is 0.

The figures go to the screen and to ``build/soak/soak-results.json``; ``--record`` also
updates the committed ``benchmarks/soak-results.json``. Logs, the handler's effect files and
``violations.json`` go to the work directory: a temp dir, removed when the run passes,
unless ``--workdir`` names one.

Modules: :mod:`~benchmarks.soak.plan` (settings, notifications), :mod:`~benchmarks.soak.traffic`
(requests, senders), :mod:`~benchmarks.soak.mass_update` (the mass-update phase), :mod:`~benchmarks.soak.visma` (the faulty Visma),
:mod:`~benchmarks.soak.workers` (processes, kills), :mod:`~benchmarks.soak.phases` (the run),
:mod:`~benchmarks.soak.invariants` (judging), :mod:`~benchmarks.soak.report` (figures, summary),
:mod:`~benchmarks.soak.cli` (``python -m benchmarks.soak``).
"""
