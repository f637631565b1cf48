"""Adapters: the domain's ports onto AWS (``aws``: SQS; ``dynamodb``: stage guards and the
outcome history) and onto Visma (``visma_http``: tokens, fetches, feedback, write-backs)."""
