"""The local stack, the embedded Visma sandbox and the ``visma-webhooks`` CLI (not used in Lambda)."""
