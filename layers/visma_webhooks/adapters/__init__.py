"""Adapters: the domain's ports onto AWS (``aws``: SQS; ``notification_state``: each
notification's lease, stages and history; ``resource_store``: each resource's lease,
watermark and fingerprint; ``budget_store``: each tenant's shared Visma budget;
``outcome_store``: reading the history back) and onto Visma (``visma_connect``: tokens;
``visma_http``: fetches, feedback, write-backs)."""
