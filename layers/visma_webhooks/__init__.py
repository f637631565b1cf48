"""The runtime package: everything the Lambda functions import, and nothing else.

The data path: a webhook delivery is verified and parsed into notifications
(:mod:`.domain.signature`, :mod:`.domain.parsing`), each is queued (:mod:`.domain.ingest`,
:mod:`.domain.queueing`, :mod:`.adapters.aws`), processed once (:mod:`.domain.processing`,
:mod:`.adapters.dynamodb`) with its resource from Visma (:mod:`.adapters.visma_http`), and
handed to the notification handlers (:mod:`.notification_handlers`).
"""
