"""The mapping assistant (dev/ops tooling, not deployed): ``d365-anaplan map propose`` and ``map explain``.

* :mod:`.metadata` reads what both systems reveal (through the layer's public client methods);
* :mod:`.propose` turns that metadata into a draft configuration, a reason and a confidence per choice, and
  the list of what it could not decide (pure: no I/O);
* :mod:`.explain` shows what one F&O GL line or one Anaplan export row becomes, through the flows' own code.
"""
