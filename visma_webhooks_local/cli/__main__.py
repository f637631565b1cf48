"""``python -m visma_webhooks_local.cli``, as the console script."""

from visma_webhooks_local.cli import main

main()
