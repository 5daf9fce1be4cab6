"""Sub-commands of the ``d365-anaplan`` CLI: each module has ``configure_parser(parser)`` and ``run(args)``."""
