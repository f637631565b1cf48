"""The domain: what happens to a notification, free of boto3 and requests.

In the order a notification meets them: ``signature`` (is the delivery Visma's?),
``parsing`` and ``models`` (the delivery becomes :class:`~.models.Notification` items),
``resources`` (which Visma resource an item names), ``ingest`` (the webhook endpoint's
logic), ``queueing`` (the queue's messages), ``processing`` (one queued notification, with
exactly-once effects); ``errors`` and ``settings`` serve them all.
"""
