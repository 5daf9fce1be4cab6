"""The flows' steps with I/O: each function is what one Lambda does, wiring configuration, both systems'
clients, S3 staging and the run ledger around the pure logic in :mod:`d365_anaplan.flows`.

Handlers (``functions/<name>/app.py``) parse their event and call exactly one function here.
"""
