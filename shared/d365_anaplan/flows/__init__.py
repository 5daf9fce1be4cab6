"""Pure logic of both flows (no I/O: functions take iterables or text/byte streams and return values).

* :mod:`.records` - the records passed between the clients and the flows (GLLine, PlanRow, ...).
* :mod:`.calendar` - close calendar (periods due), manual period ranges, fiscal-year arithmetic.
* :mod:`.periods` - period labels in the Anaplan model's format and their exact inverse.
* :mod:`.money` - strict amount parsing, bounds, currency precision, plain formatting.
* :mod:`.textsafe` - code checks, free-text neutralisation and the CSV dialect of our files.
* :mod:`.actuals` - GL lines -> rows of the Anaplan actuals import file, with totals.
* :mod:`.alignment` - do referenced accounts/dimension values exist on the other side; fail or map policy.
* :mod:`.plans` - Anaplan plan export (bytes) -> validated PlanRow stream with counters.
* :mod:`.journal` - PlanRow -> F&O journals, vouchers and lines with idempotency keys; batching.
* :mod:`.reconcile` - compare totals of two sides; raise ReconciliationFailed with the top differences.
"""
