"""Adapters: the domain's ports onto AWS (``aws``: SQS; ``dynamodb``: stage guards and resource
fingerprints; ``outcome_store``: each notification's history) and onto Visma (``visma_connect``:
tokens; ``visma_http``: fetches, feedback, write-backs)."""
