"""Anaplan: auth (Basic, CA certificate v1/v2, OAuth device grant), Integration API v2 client, tasks.

* :mod:`.client` — :class:`~.client.AnaplanClient` (``from_config(cfg, resolver=, token_cache=)``): metadata by
  name, ``upload_for_import``/``upload_file`` (streamed gzip chunks), ``start_import|export|process``,
  ``check_task`` (one poll for a Step Functions loop), ``download_file|dump|process_dump`` (to a writer),
  ``cancel_task``, ``list_items``.
  A facade over :mod:`.transport` (send with auth, limiter, retries on :mod:`d365_anaplan.retry`; pages; parse;
  status -> named error), :mod:`.tasks` (start, poll, cancel; outcome and row counts) and :mod:`.upload`
  (chunked upload and download, header check).
* :mod:`.auth` — authenticators, :class:`~.auth.TokenManager` (token reuse across Lambdas, refresh lock),
  device-grant bootstrap (``start_device_authorization``, ``poll_device_token``), ``build_authenticator``.
* :mod:`.tokens` — the :class:`~.tokens.TokenCache` protocol (DynamoDB+KMS implementation in ``ledger``).
* :mod:`.limits` — client-side rate limiter, ``Retry-After`` parsing, backoff, poll intervals.
* :mod:`.models` — pydantic models of Anaplan's payloads.
"""
